-- A cascade's tiers as JSON, and what the request would have cost on its last tier alone
-- (the baseline its savings are measured against).
ALTER TABLE ledger ADD COLUMN cascade TEXT;
ALTER TABLE ledger ADD COLUMN baseline_picos BIGINT;
