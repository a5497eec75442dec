CREATE TABLE clients (
  id TEXT PRIMARY KEY,
  secret_hash BYTEA,
  redirect_uris TEXT NOT NULL,
  grant_types TEXT NOT NULL,
  response_types TEXT NOT NULL,
  scopes TEXT NOT NULL,
  token_endpoint_auth_method TEXT NOT NULL,
  jwks BYTEA,
  jwks_uri TEXT NOT NULL,
  require_par INTEGER NOT NULL,
  sector_identifier TEXT NOT NULL,
  organization_id TEXT NOT NULL,
  created BIGINT NOT NULL
);
CREATE TABLE persons (
  subject_id TEXT PRIMARY KEY,
  personal_number TEXT NOT NULL UNIQUE,
  given_name TEXT NOT NULL,
  family_name TEXT NOT NULL,
  birth_date TEXT NOT NULL,
  email TEXT UNIQUE,
  official INTEGER NOT NULL,
  created BIGINT NOT NULL
);
CREATE TABLE credentials (
  subject_id TEXT PRIMARY KEY REFERENCES persons(subject_id),
  password_hash TEXT NOT NULL,
  totp_seed_sealed BYTEA,
  failed_attempts INTEGER NOT NULL,
  locked_until BIGINT NOT NULL,
  updated BIGINT NOT NULL
);
CREATE TABLE organizations (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  identifier TEXT NOT NULL UNIQUE,
  created BIGINT NOT NULL
);
CREATE TABLE key_records (
  uri TEXT PRIMARY KEY,
  purpose TEXT NOT NULL,
  owner TEXT NOT NULL,
  algorithm TEXT NOT NULL,
  state TEXT NOT NULL,
  created BIGINT NOT NULL
);
CREATE TABLE certificates (
  ca TEXT NOT NULL,
  serial TEXT NOT NULL,
  subject TEXT NOT NULL,
  key_uri TEXT NOT NULL,
  profile TEXT NOT NULL,
  der BYTEA NOT NULL,
  not_before BIGINT NOT NULL,
  not_after BIGINT NOT NULL,
  revoked INTEGER NOT NULL,
  revoked_at BIGINT NOT NULL,
  revocation_reason INTEGER NOT NULL,
  PRIMARY KEY (ca, serial)
);
CREATE TABLE crl_numbers (
  ca TEXT PRIMARY KEY,
  n BIGINT NOT NULL
);
CREATE TABLE transactions (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  actor TEXT NOT NULL,
  organization_id TEXT NOT NULL,
  subject_id TEXT NOT NULL,
  digests TEXT NOT NULL,
  format TEXT NOT NULL,
  level TEXT NOT NULL,
  state TEXT NOT NULL,
  created BIGINT NOT NULL,
  completed BIGINT NOT NULL
);
CREATE INDEX transactions_actor ON transactions(actor);
CREATE TABLE audit_log (
  seq BIGINT PRIMARY KEY,
  time BIGINT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  key_uri TEXT NOT NULL,
  digest BYTEA,
  result TEXT NOT NULL,
  request_id TEXT NOT NULL,
  detail BYTEA,
  signature BYTEA,
  prev_hash BYTEA NOT NULL,
  hash BYTEA NOT NULL
);
