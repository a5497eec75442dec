-- The audit log's Merkle tree (RFC 6962 hashing): each record keeps the tree hashes it adds, and
-- the latest signed checkpoint is kept apart from the records, so that cutting records off the
-- tail leaves a checkpoint that names more records than there are.
ALTER TABLE audit_log ADD COLUMN tree BYTEA;
CREATE TABLE audit_checkpoint (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq BIGINT NOT NULL,
  checkpoint BYTEA NOT NULL
);
