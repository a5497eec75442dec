CREATE TABLE pid_credentials (
  id TEXT PRIMARY KEY,
  subject_id TEXT NOT NULL,
  format TEXT NOT NULL,
  key_uri TEXT NOT NULL,
  list INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  issued BIGINT NOT NULL,
  expires BIGINT NOT NULL,
  revoked_at BIGINT NOT NULL DEFAULT 0,
  UNIQUE (list, idx)
);
CREATE INDEX pid_credentials_subject ON pid_credentials (subject_id);
CREATE INDEX pid_credentials_revoked ON pid_credentials (list, revoked_at);
