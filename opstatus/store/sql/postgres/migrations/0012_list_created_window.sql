-- opstatus schema 12 (SQLite: its migration 10): operation lists filtered by a
-- creation-time window that lies further back than it is wide (P6: a day a week ago).
-- Walking operations_number_created down from the newest number tests and skips every
-- entry newer than the window (~140,000 at 1M operations); the store lists such a
-- window through this index instead (op_list_window): an index-only range scan of the
-- window's (created_at, number) entries, the page's numbers sorted out of them, then
-- the page's rows by number (309 pages in EXPLAIN ANALYZE at 1M against 697). It
-- replaces operations_created, whose (tenant_id, created_at) it leads with, so a write
-- maintains as many indexes as before.
DROP INDEX operations_created;
CREATE INDEX operations_created_number ON operations (tenant_id, created_at, number);
