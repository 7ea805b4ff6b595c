package state

import "log/slog"

// LogValue logs merge counts under snake_case keys: without it slog prints the struct's Go
// field names (Inserted, Tombstoned), which no other key in the log looks like.
func (c MergeCounts) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int64("inserted", c.Inserted), slog.Int64("updated", c.Updated),
		slog.Int64("unchanged", c.Unchanged), slog.Int64("tombstoned", c.Tombstoned),
		slog.Int64("revived", c.Revived), slog.Int64("orphaned", c.Orphaned))
}
