-- opstatus schema 10 (PostgreSQL: its migration 12): operation lists filtered by a
-- creation-time window that lies further back than it is wide (P6: a day a week ago).
-- The store lists such a window through this index (op_list_window): a covering range
-- scan of the window's (created_at, number) entries, the page's numbers sorted out of
-- them, then the page's rows by operations_number, where SQLite sorted the window's
-- whole rows before. It replaces operations_created, whose (tenant_id, created_at) it
-- leads with, so a write maintains as many indexes as before.
DROP INDEX operations_created;
CREATE INDEX operations_created_number ON operations (tenant_id, created_at, number);
