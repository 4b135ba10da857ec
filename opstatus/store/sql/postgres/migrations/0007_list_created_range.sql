-- opstatus schema 7: operation lists filtered by a creation-time range (P6, issue #7).
-- The list query orders by number and filters created_at; PostgreSQL walks
-- operations_number backwards and, without created_at in that index, fetches every
-- row newer than the range from the heap only to drop it (a window a week back in a
-- million operations: ~140,000 rows). With created_at as a key column the range is
-- tested on the index entries instead (7x fewer pages in EXPLAIN ANALYZE at 1M).
-- SQLite plans that query through operations_created and a sort, so it needs none.
CREATE INDEX operations_number_created ON operations (tenant_id, number, created_at);
