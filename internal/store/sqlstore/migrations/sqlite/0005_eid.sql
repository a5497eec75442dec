-- eID means (issue 19): how each person's identity was proofed, the life of their eID means,
-- their roles, a pending activation code (hashed) and their passkeys. Persons made before this
-- migration were created by an operator at the command line: they keep the substantial level.
ALTER TABLE persons ADD COLUMN proofing TEXT NOT NULL DEFAULT 'substantial';
ALTER TABLE persons ADD COLUMN proofed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE persons ADD COLUMN proofed_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE persons ADD COLUMN document_number TEXT NOT NULL DEFAULT '';
ALTER TABLE persons ADD COLUMN document_expiry TEXT NOT NULL DEFAULT '';
ALTER TABLE persons ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE persons ADD COLUMN roles TEXT NOT NULL DEFAULT 'null';
ALTER TABLE credentials ADD COLUMN activation_hash BLOB;
ALTER TABLE credentials ADD COLUMN activation_expires BIGINT NOT NULL DEFAULT 0;
CREATE TABLE passkeys (
  id BLOB PRIMARY KEY,
  subject_id TEXT NOT NULL REFERENCES persons(subject_id),
  name TEXT NOT NULL,
  level TEXT NOT NULL,
  record BLOB NOT NULL,
  created BIGINT NOT NULL,
  last_used BIGINT NOT NULL
);
CREATE INDEX passkeys_subject ON passkeys(subject_id);
