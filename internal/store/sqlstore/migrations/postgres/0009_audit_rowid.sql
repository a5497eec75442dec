-- SQLite's 0009 makes the audit log's seq its rowid. PostgreSQL's table is a heap with one
-- B-tree on seq either way: nothing to change.
SELECT 1;
