-- One counter for every change to api_keys. `MAX(revision) + 1` could hand two concurrent
-- changes the same number on PostgreSQL, and a gateway polling between them would miss the
-- second; an UPDATE of this row serialises them.
CREATE TABLE IF NOT EXISTS key_revision (
    id BIGINT PRIMARY KEY,
    revision BIGINT NOT NULL
);
INSERT INTO key_revision (id, revision)
    SELECT 1, COALESCE(MAX(revision), 0) FROM api_keys;
