-- Fresh accounts (DESIGN.md, InvariantAccountsAreFresh): accounts.checked_at is now kept by
-- the engine's by-id re-reads and email lookups (state.RecordAccounts), and a failed write
-- to an account sets it to -infinity so the next run reads the account again. Listings
-- (AccountMerge) leave it alone on unchanged rows: an unchanged record costs no write.
COMMENT ON COLUMN accounts.checked_at IS 'When groupsync last read this account from its system by id or by email (RecordAccounts), whether or not it had changed; -infinity when a write to it failed and it must be read again. Accounts a plan relies on are re-read when this is older than accounts.max_age.';
COMMENT ON COLUMN accounts.deleted_at IS 'Tombstone: set when a read by id no longer returned the account, or returned it inactive (connectors.AccountInactive: deactivated, deleted, blocked, inactive, terminated); cleared when it comes back active. Members with a tombstoned account are neither added anywhere nor counted as unresolved.';
