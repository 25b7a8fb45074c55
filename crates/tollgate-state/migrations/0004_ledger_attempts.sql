-- Every upstream attempt of a request, as JSON: [{"provider", "model", "outcome", "ms"}].
ALTER TABLE ledger ADD COLUMN attempts TEXT;
