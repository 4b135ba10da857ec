-- opstatus schema 11 (SQLite only): a counter that every change of a key or token
-- moves, in the changing transaction. The key cache's epoch (SqliteStore.auth_epoch)
-- was PRAGMA data_version, which moves on every commit: under a stream of reports
-- each request read its key again (P2 profile, docs/benchmarks.md). Now a moved
-- data_version costs one read of this row, and the cache holds until a key changes,
-- by this process or any other on the file (the triggers run in every one). A new
-- key needs no move: refusals are never cached.
CREATE TABLE key_changes (
    id integer PRIMARY KEY CHECK (id = 1),
    n  integer NOT NULL
);
INSERT INTO key_changes (id, n) VALUES (1, 0);
CREATE TRIGGER api_keys_updated AFTER UPDATE ON api_keys
BEGIN
    UPDATE key_changes SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
BEGIN
    UPDATE key_changes SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER tokens_updated AFTER UPDATE ON tokens
BEGIN
    UPDATE key_changes SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER tokens_deleted AFTER DELETE ON tokens
BEGIN
    UPDATE key_changes SET n = n + 1 WHERE id = 1;
END;
