-- Reports group by team or user over a time range (the `ledger_at` index); nothing looks a
-- team or user up on its own, and each index costs every ledger insert.
DROP INDEX IF EXISTS ledger_team_at;
DROP INDEX IF EXISTS ledger_user_at;
