-- Emails a target system was asked for by email (FindAccountByEmail) and did not have. The
-- engine does not ask for such an email again until accounts.lookup_miss_ttl has passed, so
-- source members without an account in a target cost one lookup per TTL, not one per run.
-- The rows are a cache of answers and nothing more: deleting them makes the next run ask
-- again, and a run of chosen groups (sync --once --group) always asks.
CREATE TABLE account_misses (
    system    text NOT NULL REFERENCES systems (name),
    email     text NOT NULL,
    missed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (system, email)
);

COMMENT ON TABLE account_misses IS 'Emails a target system was asked for and did not have; not asked again until accounts.lookup_miss_ttl has passed since missed_at. A cache: delete rows to make the next run ask again.';
COMMENT ON COLUMN account_misses.email IS 'The normalized email asked for (as stored in accounts.email).';
COMMENT ON COLUMN account_misses.missed_at IS 'When the system last answered that it has no account with this email.';
