-- The spend counters and the ledger, as first released. Never edit an applied migration:
-- add a new file.
CREATE TABLE IF NOT EXISTS budget_spend (
    budget TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    spent_picos BIGINT NOT NULL,
    PRIMARY KEY (budget, period_start)
);
CREATE TABLE IF NOT EXISTS ledger (
    request_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    key TEXT,
    tenant TEXT,
    model TEXT NOT NULL,
    provider TEXT,
    upstream_model TEXT,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cost_picos BIGINT NOT NULL,
    status BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL,
    ttft_ms BIGINT,
    estimated BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ledger_at ON ledger (at_ms);
CREATE INDEX IF NOT EXISTS ledger_key_at ON ledger (key, at_ms);
CREATE INDEX IF NOT EXISTS ledger_model_at ON ledger (model, at_ms);
