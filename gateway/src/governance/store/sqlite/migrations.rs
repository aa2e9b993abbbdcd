//! The schema, as numbered migrations applied in order (see `SqliteStore::open`).

pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL);
CREATE TABLE teams (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name TEXT NOT NULL, created_ms INTEGER NOT NULL, UNIQUE (org_id, name));
CREATE TABLE users (
    id TEXT PRIMARY KEY, team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    email TEXT NOT NULL UNIQUE, name TEXT, created_ms INTEGER NOT NULL);
CREATE TABLE devices (
    id TEXT PRIMARY KEY, team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id TEXT REFERENCES users(id) ON DELETE SET NULL, hostname TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_hash TEXT NOT NULL,
    previous_hash TEXT, previous_expires_ms INTEGER,
    owner_kind TEXT NOT NULL CHECK (owner_kind IN ('user', 'device', 'team')), owner_id TEXT NOT NULL,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('active', 'blocked')), expires_ms INTEGER,
    policy TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE budgets (
    id TEXT PRIMARY KEY, scope_kind TEXT NOT NULL, scope_id TEXT NOT NULL,
    window TEXT NOT NULL, rolling INTEGER NOT NULL, limit_usd REAL NOT NULL,
    soft_fraction REAL NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE rate_limits (
    id TEXT PRIMARY KEY, scope_kind TEXT NOT NULL, scope_id TEXT NOT NULL,
    rpm INTEGER, tpm INTEGER, concurrency INTEGER, created_ms INTEGER NOT NULL);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, request_id TEXT NOT NULL,
    org_id TEXT, team_id TEXT, user_id TEXT, device_id TEXT, key_id TEXT, app TEXT,
    provider TEXT, model TEXT, status INTEGER NOT NULL, cost_micros INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    record TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
-- Every index is paid for on each audit append, the write that runs at request rate.
-- Time and key cover the hot reads (usage reports, budget rebuilds over the current
-- window, per-key queries); team/user filters scan the time range.
CREATE INDEX audit_ts ON audit (ts_ms);
CREATE INDEX audit_key_ts ON audit (key_id, ts_ms);
CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE routing_entries (
    kind TEXT NOT NULL CHECK (kind IN ('provider', 'alias')), name TEXT NOT NULL,
    body TEXT NOT NULL, updated_ms INTEGER NOT NULL, PRIMARY KEY (kind, name));
"#,
    ),
    (
        3,
        r#"
-- One record per request id. A spill import interrupted after a commit (kill -9) used to
-- import those records again on restart; imports now skip what is already stored, found
-- by request id. A spilled record was never committed from the queue (it went to the
-- spill file instead, or its batch failed), so only imported records can be repeated:
-- the unique index covers those alone, and a write from the queue maintains no index
-- for it (it evaluates the partial index's WHERE, nothing more). `imported`: NULL for
-- records from before this migration (found by time instead), 0 from the queue, 1 from
-- a spill file.
ALTER TABLE audit ADD COLUMN imported INTEGER;
CREATE UNIQUE INDEX audit_imported_request_id ON audit (request_id) WHERE imported = 1;
-- Databases from before may already hold duplicates (which cannot be deleted without
-- breaking the chain): each request id keeps its first record with dup_seq 0, later ones
-- get dup_seq = their own seq, and spend and usage count only dup_seq 0. New records
-- always have dup_seq 0.
ALTER TABLE audit ADD COLUMN dup_seq INTEGER NOT NULL DEFAULT 0;
UPDATE audit SET dup_seq = seq WHERE seq NOT IN (SELECT MIN(seq) FROM audit GROUP BY request_id);
-- The optional seal (governance.audit.hmac_key): a MAC per record and one on the head.
ALTER TABLE audit ADD COLUMN mac TEXT;
ALTER TABLE audit_head ADD COLUMN mac TEXT;
ALTER TABLE audit_head ADD COLUMN sealed_from INTEGER;
"#,
    ),
];
