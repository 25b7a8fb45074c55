-- Who made each request, keys managed through the admin API, and sent alerts.
ALTER TABLE ledger ADD COLUMN team TEXT;
ALTER TABLE ledger ADD COLUMN end_user TEXT;
ALTER TABLE ledger ADD COLUMN session_id TEXT;
ALTER TABLE ledger ADD COLUMN tags TEXT;
CREATE INDEX IF NOT EXISTS ledger_team_at ON ledger (team, at_ms);
CREATE INDEX IF NOT EXISTS ledger_user_at ON ledger (end_user, at_ms);
-- Virtual keys created through the admin API. `revision` grows with every change, so
-- gateways sharing the database notice one by reading its maximum.
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    display TEXT NOT NULL,
    tenant TEXT NOT NULL,
    team TEXT,
    created_ms BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_ms BIGINT,
    budget_picos BIGINT,
    budget_period TEXT,
    rpm BIGINT,
    tpm BIGINT
);
-- One row per alert sent: the primary key is the alert's identity (what, which threshold,
-- which period), so a replica or a restart does not send it twice.
CREATE TABLE IF NOT EXISTS alerts_sent (
    alert TEXT PRIMARY KEY,
    at_ms BIGINT NOT NULL
);
