-- One normalizer (DESIGN.md invariant 6): keys are computed in Go at ingest
-- (connectors.NormalizeName / NormalizeEmail) and stored; SQL compares them and never
-- normalizes.
--
-- groups.name_key is nullable only until each existing row's next merge: the group merge
-- classifies a row whose stored key differs from the stream's (NULL included) as updated
-- and writes the key then. Computing it here would need the normalizer in SQL, which is
-- what this migration removes. A NULL key never matches in adoption (NULL = x is not
-- true), so a row not yet re-merged is simply not adopted by name until its system's next
-- pull, which every run does before linking.
ALTER TABLE groups ADD COLUMN name_key text;
CREATE INDEX groups_system_name_key_idx ON groups (system, name_key) WHERE deleted_at IS NULL;
COMMENT ON COLUMN groups.name_key IS 'connectors.NormalizeName(name): every Unicode space as one space, trimmed, runs collapsed, zero-width characters dropped, NFC, lower-cased. Same-named groups are adopted by comparing it. NULL only for rows not merged since migration 007.';

-- accounts.checked_at says how old what the mirror knows of an account is: the engine
-- re-reads accounts a plan relies on once this is older than accounts.max_age. Existing
-- rows count as read at migration time (a constant default: no table rewrite), so they
-- are re-read within one max_age instead of all at once on the first run.
ALTER TABLE accounts ADD COLUMN checked_at timestamptz NOT NULL DEFAULT now();
COMMENT ON COLUMN accounts.checked_at IS 'When groupsync last read this account from its system (a listing, a by-id or an email lookup), whether or not it had changed. Accounts a plan relies on are re-read when this is older than accounts.max_age.';

COMMENT ON COLUMN accounts.email IS 'connectors.NormalizeEmail of the email (Unicode spaces trimmed, NFC, lower-cased), the cross-system matching key; empty when the system did not reveal it.';
COMMENT ON COLUMN memberships.email IS 'connectors.NormalizeEmail of the email when the API returned it inline with the membership (Airtable, DevRev), so no account lookup is needed; empty otherwise. When it disagrees with the account row, the account is re-read.';
