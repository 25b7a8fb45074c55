-- `GET /admin/requests/{id}` looks a request up by its id.
CREATE INDEX IF NOT EXISTS ledger_request ON ledger (request_id);
