-- The audit log's seq becomes the table's rowid (INTEGER PRIMARY KEY). Declared BIGINT PRIMARY
-- KEY it was not: SQLite kept a unique index on seq beside the rowid table, a second B-tree that
-- every record was inserted into and every commit flushed a page of, and reading the head went
-- through that index to the table. The table is rebuilt with the same rows.
CREATE TABLE audit_log_0009 (
  seq INTEGER PRIMARY KEY,
  time BIGINT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  key_uri TEXT NOT NULL,
  digest BLOB,
  result TEXT NOT NULL,
  request_id TEXT NOT NULL,
  detail BLOB,
  signature BLOB,
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL,
  tree BLOB,
  subject TEXT NOT NULL DEFAULT ''
);
INSERT INTO audit_log_0009 (seq, time, actor, action, key_uri, digest, result, request_id, detail, signature, prev_hash, hash, tree, subject)
  SELECT seq, time, actor, action, key_uri, digest, result, request_id, detail, signature, prev_hash, hash, tree, subject
  FROM audit_log ORDER BY seq;
DROP TABLE audit_log;
ALTER TABLE audit_log_0009 RENAME TO audit_log;
CREATE INDEX audit_log_subject ON audit_log (subject, seq) WHERE subject <> '';
