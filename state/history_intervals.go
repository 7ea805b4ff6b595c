package state

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// History intervals (migration 021). The open interval of a membership is its live
// memberships row (valid_from, opened_by, opened_run), and of a group's (name, visibility)
// its live groups row; closing one copies it into membership_history or group_history.
// Every statement here runs in the transaction that changes the mirror row, over the set
// that transaction classified, so history and mirror cannot disagree, and a merge that
// changed nothing writes nothing here either (every statement is driven by its delta).

type runIDKey struct{}

// WithRunID returns ctx saying that the merges and writes made with it belong to run id:
// the history intervals they open or close name the run. The engine sets it for a run's
// pulls; a pull without it (a lookup, a test) records intervals without a run.
func WithRunID(ctx context.Context, id int64) context.Context {
	return context.WithValue(ctx, runIDKey{}, id)
}

// runArg is the run of ctx as a statement argument: an int64, or nil (NULL) outside a run.
func runArg(ctx context.Context) any {
	if id, ok := ctx.Value(runIDKey{}).(int64); ok && id > 0 {
		return id
	}
	return nil
}

// closedMembership is the SELECT list (after the target columns of membership_history)
// copying live memberships row m into a closed interval ending now(); closedBy and
// closedRun are SQL expressions. The row's own opened_* win; a row a merge inserted has
// none, and its run is the history_pulls row of the transaction that inserted it (p).
func closedMembership(closedBy, closedRun string) string {
	return `INSERT INTO membership_history (system, group_id, member_id, member_email_key, valid_from, valid_to,
		opened_by, opened_run, closed_by, closed_run)
	SELECT m.system, m.group_id, m.account_id, coalesce(nullif(m.email, ''), a.email, ''),
		coalesce(m.valid_from, m.first_seen_at), now(), coalesce(m.opened_by, 'observed'), coalesce(m.opened_run, p.run_id),
		` + closedBy + `, ` + closedRun
}

// membershipOrigin joins m's account (for the email key) and its inserting pull.
const membershipOrigin = `
	LEFT JOIN accounts a ON a.system = m.system AND a.external_id = m.account_id
	LEFT JOIN history_pulls p ON m.valid_from IS NULL AND p.system = m.system AND p.at = m.first_seen_at`

// closedGroup is closedMembership for a group's (name, visibility) interval, from row g.
func closedGroup(closedBy, closedRun string) string {
	return `INSERT INTO group_history (system, group_id, name, visibility, valid_from, valid_to,
		opened_by, opened_run, closed_by, closed_run)
	SELECT g.system, g.external_id, g.name, g.visibility, coalesce(g.valid_from, g.first_seen_at), now(),
		coalesce(g.opened_by, 'observed'), coalesce(g.opened_run, p.run_id), ` + closedBy + `, ` + closedRun + `
	  FROM groups g
	  LEFT JOIN history_pulls p ON g.valid_from IS NULL AND p.system = g.system AND p.at = g.first_seen_at`
}

// recordPull notes that this merge transaction, which inserted rows, belongs to ctx's run:
// the rows it inserted carry first_seen_at = now() and no run of their own (a first load
// is one COPY that history does not widen), and the intervals they open find their run
// here. Nothing is written outside a run or when nothing was inserted.
func recordPull(ctx context.Context, tx pgx.Tx, system string, inserted int64) error {
	run := runArg(ctx)
	if run == nil || inserted == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO history_pulls (system, at, run_id) VALUES ($1, now(), $2)
		ON CONFLICT (system, at) DO NOTHING`, system, run); err != nil {
		return fmt.Errorf("record the pull's run for history: %w", err)
	}
	return nil
}

// membershipMergeHistory runs before a membership merge writes its delta (of deltaRows
// rows): it closes the intervals of the memberships the delta tombstones, as observed by
// ctx's run. The intervals it revives are opened by the merge's own update of those rows
// (reopenedMembership), so that a revival writes its row once.
func membershipMergeHistory(ctx context.Context, tx pgx.Tx, system, delta string, deltaRows int64) error {
	if deltaRows == 0 {
		return nil // a no-op merge: not even a round trip
	}
	_, err := tx.Exec(ctx, closedMembership(`'observed'`, `$2::bigint`)+`
	  FROM `+delta+` d
	  JOIN memberships m ON m.system = $1 AND m.group_id = d.group_id AND m.account_id = d.account_id AND m.deleted_at IS NULL`+
		membershipOrigin+`
	 WHERE d.op = 'tombstoned'`,
		system, runArg(ctx))
	if err != nil {
		return fmt.Errorf("record membership history: %w", err)
	}
	return nil
}

// groupMoved says that delta row d changes the name or visibility of groups row g.
const groupMoved = `(d.op = 'updated' AND (g.name, g.visibility) IS DISTINCT FROM (d.name, d.visibility))`

// reopenedGroup is the SET list that a group merge's update of groups row g from delta row
// d (updated or revived) adds: a revival, or a new name or visibility, opens an interval
// observed by run (an SQL expression). It reads g as it was before the update.
func reopenedGroup(run string) string {
	return reopened("g", `(d.op = 'revived' OR `+groupMoved+`)`, run)
}

// reopened is the SET list opening a new interval of row alias, observed by run, where
// cond holds, and keeping the row's interval elsewhere.
func reopened(alias, cond, run string) string {
	return `valid_from = CASE WHEN ` + cond + ` THEN now() ELSE ` + alias + `.valid_from END,
		opened_by = CASE WHEN ` + cond + ` THEN 'observed' ELSE ` + alias + `.opened_by END,
		opened_run = CASE WHEN ` + cond + ` THEN ` + run + ` ELSE ` + alias + `.opened_run END`
}

// reopenedMembership is the SET list that a membership merge's update of its delta row d
// (updated or revived) adds to the update of memberships row m: a revived row opens a new
// interval, observed by run (an SQL expression); an updated one keeps its interval.
func reopenedMembership(run string) string {
	return reopened("m", `d.op = 'revived'`, run)
}

// groupMergeHistory runs before a group merge writes its delta: a tombstoned group closes
// its (name, visibility) interval and its members' intervals; an update that changes name
// or visibility closes the old interval. The merge's own update of the row opens the new
// one, as it does a revived group's (reopenedGroup).
func groupMergeHistory(ctx context.Context, tx pgx.Tx, system, delta string, deltaRows int64) error {
	if deltaRows == 0 {
		return nil // a no-op merge: not even a round trip
	}
	_, err := tx.Exec(ctx, `
WITH members_closed AS (
	`+closedMembership(`'observed'`, `$2::bigint`)+`
	  FROM `+delta+` d
	  JOIN memberships m ON m.system = $1 AND m.group_id = d.external_id AND m.deleted_at IS NULL`+
		membershipOrigin+`
	 WHERE d.op = 'tombstoned'
	RETURNING 1
)
`+closedGroup(`'observed'`, `$2::bigint`)+`
  JOIN `+delta+` d ON d.external_id = g.external_id
 WHERE g.system = $1 AND g.deleted_at IS NULL AND (d.op = 'tombstoned' OR `+groupMoved+`)`,
		system, runArg(ctx))
	if err != nil {
		return fmt.Errorf("record group history: %w", err)
	}
	return nil
}

// writtenGroupHistory runs before the engine stores a group it wrote (RecordGroupWritten):
// when the stored group was gone, or its name or visibility changes, the old interval closes
// and a new one opens, written by the change's run. A group new to the mirror opens its
// interval in the insert itself (upsertWrittenGroup).
func writtenGroupHistory(ctx context.Context, tx pgx.Tx, c Change, name, visibility string) error {
	const moved = `(g.deleted_at IS NOT NULL OR (g.name, g.visibility) IS DISTINCT FROM ($3, $4))`
	_, err := tx.Exec(ctx, `
WITH closed AS (
	`+closedGroup(`'written'`, `$5::bigint`)+`
	 WHERE g.system = $1 AND g.external_id = $2 AND g.deleted_at IS NULL AND `+moved+`
	RETURNING 1
)
UPDATE groups g SET valid_from = now(), opened_by = 'written', opened_run = $5::bigint
 WHERE g.system = $1 AND g.external_id = $2 AND `+moved,
		c.TargetSystem, c.TargetGroupID, name, visibility, c.RunID)
	if err != nil {
		return fmt.Errorf("state: record history of group %s/%s: %w", c.TargetSystem, c.TargetGroupID, err)
	}
	return nil
}

// deletedGroupHistory closes the (name, visibility) interval of a group the engine deleted.
func deletedGroupHistory(ctx context.Context, tx pgx.Tx, c Change) error {
	if _, err := tx.Exec(ctx, closedGroup(`'written'`, `$3::bigint`)+`
	 WHERE g.system = $1 AND g.external_id = $2 AND g.deleted_at IS NULL`,
		c.TargetSystem, c.TargetGroupID, c.RunID); err != nil {
		return fmt.Errorf("state: record history of group %s/%s: %w", c.TargetSystem, c.TargetGroupID, err)
	}
	return nil
}

// removedMembersHistory is the CTE (for RecordMembersRemoved, $1 the change ids) closing the
// intervals of the live memberships the changes removed, written by each change's run.
func removedMembersHistory() string {
	return `closed AS (
			` + closedMembership(`'written'`, `c.run_id`) + `
			  FROM changes c
			  JOIN memberships m ON m.system = c.target_system AND m.group_id = c.target_group_id
			   AND m.account_id = c.target_account_id AND m.deleted_at IS NULL` + membershipOrigin + `
			 WHERE c.id = ANY($1)
			RETURNING 1
		)`
}

// HistoryPruneBatch is how many closed intervals one pruning statement deletes: each batch
// is its own short transaction, so pruning a large backlog never holds locks for long
// (nothing else writes closed intervals, and merges only insert into the tables).
const HistoryPruneBatch = 10000

// PruneHistory deletes the closed intervals (membership_history, group_history) that
// ended more than retention ago, batch rows per statement (HistoryPruneBatch when batch is
// 0), until none are left; open intervals are the live mirror rows and are never pruned.
// It returns how many intervals went.
func (s *Store) PruneHistory(ctx context.Context, retention time.Duration, batch int) (int64, error) {
	if retention <= 0 {
		return 0, fmt.Errorf("state: prune history: retention %s must be positive", retention)
	}
	if batch <= 0 {
		batch = HistoryPruneBatch
	}
	var total int64
	for _, table := range []string{"membership_history", "group_history"} {
		n, err := s.pruneIntervals(ctx, table, retention, batch)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// pruneIntervals deletes table's old intervals batch by batch. The cutoff is taken once, so
// the loop ends even while new intervals close. Each DELETE finds its rows by the valid_to
// index and deletes them by ctid (a TID scan).
func (s *Store) pruneIntervals(ctx context.Context, table string, retention time.Duration, batch int) (int64, error) {
	var cutoff time.Time
	if err := s.pool.QueryRow(ctx, `SELECT now() - make_interval(secs => $1)`, retention.Seconds()).Scan(&cutoff); err != nil {
		return 0, fmt.Errorf("state: prune %s: read the clock: %w (%s)", table, err, unreachableHint)
	}
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM `+table+` WHERE ctid = ANY(ARRAY(
			SELECT ctid FROM `+table+` WHERE valid_to < $1 LIMIT $2))`, cutoff, batch)
		if err != nil {
			return total, fmt.Errorf("state: prune %s older than %s: %w", table, cutoff.Format(time.RFC3339), err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}
