-- memberships (system, account_id) served no query of the engine or the views (they reach
-- memberships by group, and accounts by their own key), while every first load paid for
-- maintaining it: a second index on the largest table.
DROP INDEX IF EXISTS memberships_system_account_idx;
