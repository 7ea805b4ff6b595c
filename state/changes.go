package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/groupsync/groupsync/connectors"
)

// Change statuses.
const (
	ChangePlanned  = "planned"
	ChangeInFlight = "in_flight"
	ChangeApplied  = "applied"
	ChangeFailed   = "failed"
	ChangeSkipped  = "skipped"
	ChangeBlocked  = "blocked"
)

// Change is one planned write to a target.
type Change struct {
	ID              int64
	RunID           int64
	Flow            string
	TargetSystem    string
	Operation       string
	LinkID          int64
	SourceSystem    string
	SourceGroupID   string
	TargetGroupID   string
	AccountEmail    string
	SourceAccountID string
	TargetAccountID string
	Payload         GroupPayload
	Status          string
	Reason          string
	Attempts        int
	LastError       string
}

// GroupPayload is the group side of a create/update/delete change.
type GroupPayload struct {
	Name           string `json:"name"`
	Description    string `json:"description"`
	Visibility     string `json:"visibility"`
	OldName        string `json:"old_name,omitempty"`
	OldDescription string `json:"old_description,omitempty"`
	OldVisibility  string `json:"old_visibility,omitempty"`
	// Members is the member count of a group-level member change (a skip for a reason
	// that holds for the whole group).
	Members int `json:"members,omitempty"`
}

const changeColumns = `id, run_id, flow, target_system, operation, coalesce(link_id, 0), coalesce(source_system, ''),
	coalesce(source_group_id, ''), coalesce(target_group_id, ''), coalesce(account_email, ''),
	coalesce(source_account_id, ''), coalesce(target_account_id, ''), payload, status, coalesce(reason, ''),
	attempts, coalesce(last_error, '')`

func scanChange(row pgx.Row) (Change, error) {
	var c Change
	var payload []byte
	err := row.Scan(&c.ID, &c.RunID, &c.Flow, &c.TargetSystem, &c.Operation, &c.LinkID, &c.SourceSystem,
		&c.SourceGroupID, &c.TargetGroupID, &c.AccountEmail, &c.SourceAccountID, &c.TargetAccountID, &payload,
		&c.Status, &c.Reason, &c.Attempts, &c.LastError)
	if err != nil {
		return c, err
	}
	if len(payload) > 0 {
		if err := json.Unmarshal(payload, &c.Payload); err != nil {
			return c, fmt.Errorf("change %d payload: %w", c.ID, err)
		}
	}
	return c, nil
}

// ChangeFilter selects a run's changes.
type ChangeFilter struct {
	RunID        int64
	TargetSystem string // "" = all
	Operation    string // "" = all
	Status       string // "" = all
	// AfterID pages through results (keyset): only ids above it.
	AfterID int64
	Limit   int
}

// Changes returns a page of a run's changes ordered by id.
func (s *Store) Changes(ctx context.Context, f ChangeFilter) ([]Change, error) {
	if f.Limit <= 0 {
		f.Limit = 500
	}
	rows, err := s.pool.Query(ctx, `SELECT `+changeColumns+` FROM changes
		WHERE run_id = $1 AND ($2 = '' OR target_system = $2) AND ($3 = '' OR operation = $3)
		  AND ($4 = '' OR status = $4) AND id > $5
		ORDER BY id LIMIT $6`, f.RunID, f.TargetSystem, f.Operation, f.Status, f.AfterID, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("state: changes of run %d: %w", f.RunID, err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		c, err := scanChange(rows)
		if err != nil {
			return nil, fmt.Errorf("state: changes of run %d: %w", f.RunID, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: changes of run %d: %w", f.RunID, err)
	}
	return out, nil
}

// ChangeCount is the number of a run's changes with one (target, operation, status, reason).
type ChangeCount struct {
	TargetSystem string
	Operation    string
	Status       string
	Reason       string
	Count        int64
}

// ChangeCounts summarizes a run's changes.
func (s *Store) ChangeCounts(ctx context.Context, runID int64) ([]ChangeCount, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT target_system, operation, status, coalesce(reason, ''), count(*)
		  FROM changes WHERE run_id = $1
		 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`, runID)
	if err != nil {
		return nil, fmt.Errorf("state: change counts of run %d: %w", runID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ChangeCount, error) {
		var c ChangeCount
		err := r.Scan(&c.TargetSystem, &c.Operation, &c.Status, &c.Reason, &c.Count)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("state: change counts of run %d: %w", runID, err)
	}
	return out, nil
}

// GroupWrite is a create_group or restore_group change of a run as a member change of the
// same group sees it: whether it is still to land, and the target group it made.
type GroupWrite struct {
	Status string
	// TargetGroupID is the group created, adopted or restored ("" until a create lands).
	TargetGroupID string
}

// Pending reports whether the group write is still to be settled by this push.
func (g GroupWrite) Pending() bool { return g.Status == ChangePlanned || g.Status == ChangeInFlight }

// GroupWrites returns, by link, run's create_group and restore_group changes on target
// among the given links (at most one per link: a link's target group is either missing or
// archived). A create records its group on its own row in the transaction that marks it
// applied, so a row read here that is no longer pending carries the group id too.
func (s *Store) GroupWrites(ctx context.Context, runID int64, target string, linkIDs []int64) (map[int64]GroupWrite, error) {
	rows, err := s.pool.Query(ctx, `SELECT link_id, status, coalesce(target_group_id, '') FROM changes
		WHERE run_id = $1 AND target_system = $2 AND operation IN ('create_group', 'restore_group')
		  AND link_id = ANY($3)`, runID, target, linkIDs)
	if err != nil {
		return nil, fmt.Errorf("state: group writes of run %d: %w", runID, err)
	}
	out := map[int64]GroupWrite{}
	var link int64
	var g GroupWrite
	_, err = pgx.ForEachRow(rows, []any{&link, &g.Status, &g.TargetGroupID}, func() error {
		out[link] = g
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: group writes of run %d: %w", runID, err)
	}
	return out, nil
}

// MarkInFlight records that the changes are about to be sent: a crash between here and
// the outcome leaves them in_flight, and the next run reconciles before retrying.
func (s *Store) MarkInFlight(ctx context.Context, ids []int64) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("state: mark changes in flight: %w", err)
	}
	// Once asked, the mark lands or fails as a whole: a cancellation (SIGTERM) arriving
	// mid-statement could let the UPDATE commit while reporting failure, leaving changes
	// in flight that were never sent.
	ctx = context.WithoutCancel(ctx)
	db, end, err := s.beginFenced(ctx)
	if err != nil {
		return err
	}
	defer func() { err = end(err) }()
	_, err = db.Exec(ctx, `UPDATE changes SET status = 'in_flight', attempts = attempts + 1, updated_at = now()
		WHERE id = ANY($1)`, ids)
	if err != nil {
		return fmt.Errorf("state: mark changes in flight: %w", err)
	}
	return nil
}

// MarkFailed records a failed attempt, and the failure on the target record's sync
// metadata where there is one.
func (s *Store) MarkFailed(ctx context.Context, ids []int64, reason, lastError string) error {
	lastError = strings.ToValidUTF8(strings.ReplaceAll(lastError, "\x00", ""), "?")
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.checkFence(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE changes SET status = 'failed', reason = nullif($2, ''), last_error = $3,
			updated_at = now() WHERE id = ANY($1)`, ids, reason, lastError); err != nil {
			return fmt.Errorf("state: mark changes failed: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE groups g SET last_sync_out_status = 'failed', last_sync_out_date = now(),
			last_sync_out_error = $2
			  FROM changes c WHERE c.id = ANY($1) AND g.system = c.target_system AND g.external_id = c.target_group_id
			   AND c.operation IN ('update_group', 'archive_group', 'delete_group')`, ids, lastError); err != nil {
			return fmt.Errorf("state: record failed sync out: %w", err)
		}
		return nil
	})
}

// ReconcileInterrupted fails the flow's changes left in_flight by a run that died between
// sending and recording. Retrying them blindly could duplicate a create; instead the next
// run's fresh pull shows what happened (a created group is adopted by name, an added
// member is already there) and plans only what is still missing. It also closes the
// flow's runs still marked running: the caller holds the flow's lease, so such a run's
// process died (kill -9) or lost the database before it could record its end, and would
// otherwise look alive forever.
func (s *Store) ReconcileInterrupted(ctx context.Context, flow string) (_ int64, err error) {
	db, end, err := s.beginFenced(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { err = end(err) }()
	tag, err := db.Exec(ctx, `UPDATE changes SET status = 'failed', reason = 'interrupted',
		last_error = 'interrupted between send and record; reconciled by the next pull', updated_at = now()
		WHERE flow = $1 AND status = 'in_flight'`, flow)
	if err != nil {
		return 0, fmt.Errorf("state: reconcile interrupted changes of flow %q: %w", flow, err)
	}
	if _, err := db.Exec(ctx, `UPDATE runs SET status = 'failed', finished_at = now(),
		error = 'interrupted: the run ended without recording its outcome (process killed or database lost)'
		WHERE flow = $1 AND status = 'running'`, flow); err != nil {
		return 0, fmt.Errorf("state: close interrupted runs of flow %q: %w", flow, err)
	}
	return tag.RowsAffected(), nil
}

// ErrLinkConflict is returned by RecordGroupWritten when the target group is already linked
// to another mirror group: push never moves a link (DESIGN invariant 1), so the write is
// not recorded and the change is reported as a name_conflict.
var ErrLinkConflict = errors.New("target group is linked to another mirror group")

// RecordGroupWritten stores a group the engine created or updated in a target, links it,
// points the run's pending member changes of that link at it, and marks the change applied.
// It never re-points a link row of another link_id: if g is linked elsewhere nothing is
// recorded and the error wraps ErrLinkConflict. A create replaces this link's row for the
// target only when that row's group is no longer live and active (archived or gone: the
// create gives the link a new group); a live one is a conflict too.
func (s *Store) RecordGroupWritten(ctx context.Context, c Change, g connectors.Group) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.checkFence(ctx, tx); err != nil {
			return err
		}
		if err := writtenGroupHistory(ctx, tx, Change{TargetSystem: c.TargetSystem, TargetGroupID: g.ID, RunID: c.RunID},
			g.Name, string(g.Visibility)); err != nil {
			return err
		}
		if err := upsertWrittenGroup(ctx, tx, c, g); err != nil {
			return err
		}
		if err := linkWrittenGroup(ctx, tx, c, g.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			UPDATE changes SET target_group_id = $4
			 WHERE run_id = $1 AND link_id = $2 AND target_system = $3 AND target_group_id IS NULL`,
			c.RunID, c.LinkID, c.TargetSystem, g.ID); err != nil {
			return fmt.Errorf("state: point changes at group %s/%s: %w", c.TargetSystem, g.ID, err)
		}
		return markApplied(ctx, tx, []int64{c.ID})
	})
}

// RecordGroupRestored stores a group the engine brought back from the archive as active,
// with the same rules as RecordGroupWritten.
func (s *Store) RecordGroupRestored(ctx context.Context, c Change, g connectors.Group) error {
	if g.State == "" || g.State == "archived" {
		// The restore call succeeded: the group is active whatever the answer's body said.
		g.State = "active"
		g.Hash = ""
	}
	return s.RecordGroupWritten(ctx, c, g)
}

func upsertWrittenGroup(ctx context.Context, tx pgx.Tx, c Change, g connectors.Group) error {
	hash := hashOr(g.Hash, g.ID, g.Name, g.Description, string(g.Visibility), g.State, string(g.Raw))
	if _, err := tx.Exec(ctx, `
		INSERT INTO groups (system, external_id, name, description, visibility, state, membership_managed,
		                    is_system, remote_created_at, remote_modified_at, raw, hash, origin_system,
		                    external_reference, last_sync_out_status, last_sync_out_date, name_key,
		                    valid_from, opened_by, opened_run)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'succeeded', now(), $15,
		        now(), 'written', $16)
		ON CONFLICT (system, external_id) DO UPDATE
		   SET name = excluded.name, name_key = excluded.name_key, description = excluded.description, visibility = excluded.visibility,
		       state = excluded.state, raw = excluded.raw, hash = excluded.hash, deleted_at = NULL,
		       updated_at = now(), origin_system = excluded.origin_system,
		       external_reference = excluded.external_reference,
		       last_sync_out_status = 'succeeded', last_sync_out_date = now(), last_sync_out_error = NULL`,
		c.TargetSystem, g.ID, g.Name, g.Description, string(g.Visibility), g.State, g.MembershipManaged,
		g.System, timeOrNull(g.CreatedAt), timeOrNull(g.ModifiedAt), rawText(g.Raw), hash,
		c.SourceSystem, c.SourceGroupID, connectors.NormalizeName(g.Name), c.RunID); err != nil {
		return fmt.Errorf("state: record group %s/%s: %w", c.TargetSystem, g.ID, err)
	}
	return nil
}

// linkWrittenGroup links the target group id to the change's link. The upsert only touches
// a row of the same link (WHERE links.link_id = excluded.link_id); no affected row means
// the group belongs to another link, and the caller's transaction rolls back.
func linkWrittenGroup(ctx context.Context, tx pgx.Tx, c Change, groupID string) error {
	if c.Operation == "create_group" {
		if _, err := tx.Exec(ctx, `
			DELETE FROM links l
			 WHERE l.link_id = $1 AND l.system = $2 AND l.external_id <> $3
			   AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.system = l.system AND g.external_id = l.external_id
			                      AND g.deleted_at IS NULL AND g.state IS DISTINCT FROM 'archived')`,
			c.LinkID, c.TargetSystem, groupID); err != nil {
			return fmt.Errorf("state: unlink the archived group of link %d in %s: %w", c.LinkID, c.TargetSystem, err)
		}
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO links (link_id, system, external_id, flow, created_by_run) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (system, external_id) DO UPDATE SET link_id = excluded.link_id
		 WHERE links.link_id = excluded.link_id`,
		c.LinkID, c.TargetSystem, groupID, c.Flow, c.RunID)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		// UNIQUE (link_id, system): this link already holds another live group in the target.
		return fmt.Errorf("state: link group %s/%s to link %d: the link holds another live group there: %w",
			c.TargetSystem, groupID, c.LinkID, ErrLinkConflict)
	}
	if err != nil {
		return fmt.Errorf("state: link group %s/%s: %w", c.TargetSystem, groupID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("state: link group %s/%s to link %d: %w", c.TargetSystem, groupID, c.LinkID, ErrLinkConflict)
	}
	return nil
}

// RecordGroupDeleted marks a target group archived or tombstoned after the engine removed it.
func (s *Store) RecordGroupDeleted(ctx context.Context, c Change, archived bool) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.checkFence(ctx, tx); err != nil {
			return err
		}
		q := `UPDATE groups SET deleted_at = now(), updated_at = now(), last_sync_out_status = 'succeeded',
			last_sync_out_date = now(), last_sync_out_error = NULL WHERE system = $1 AND external_id = $2`
		if archived {
			q = `UPDATE groups SET state = 'archived', updated_at = now(), last_sync_out_status = 'succeeded',
				last_sync_out_date = now(), last_sync_out_error = NULL WHERE system = $1 AND external_id = $2`
		}
		if !archived {
			if err := deletedGroupHistory(ctx, tx, c); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, q, c.TargetSystem, c.TargetGroupID); err != nil {
			return fmt.Errorf("state: record group %s/%s removed: %w", c.TargetSystem, c.TargetGroupID, err)
		}
		return markApplied(ctx, tx, []int64{c.ID})
	})
}

// RecordMembersAdded stores memberships the engine added (added_by_run set, so the mirror
// knows groupsync made them) and marks the changes applied. The system's live membership
// count moves by the rows that became live, so a later no-op pull need not recount.
func (s *Store) RecordMembersAdded(ctx context.Context, cs []Change) error {
	return s.recordMembers(ctx, cs, `
		WITH src AS (
			SELECT c.target_system AS system, c.target_group_id AS group_id, c.target_account_id AS account_id,
			       coalesce(c.account_email, '') AS email, c.run_id, c.source_system, c.source_group_id
			  FROM changes c
			  JOIN groups g ON g.system = c.target_system AND g.external_id = c.target_group_id
			 WHERE c.id = ANY($1)
		), live_before AS (
			SELECT 1 FROM memberships m JOIN src USING (system, group_id, account_id) WHERE m.deleted_at IS NULL
		), upserted AS (
			INSERT INTO memberships (system, group_id, account_id, member_type, role, email, added_by_run,
			                         origin_system, external_reference, last_sync_out_status, last_sync_out_date,
			                         valid_from, opened_by, opened_run)
			SELECT system, group_id, account_id, 'user', 'member', email, run_id, source_system, source_group_id,
			       'succeeded', now(), now(), 'written', run_id
			  FROM src
			ON CONFLICT (system, group_id, account_id) DO UPDATE
			   SET deleted_at = NULL, added_by_run = excluded.added_by_run, updated_at = now(),
			       -- A tombstoned row opens a new interval, written by this run; a live one
			       -- (the member was already there) keeps the interval it is in.
			       valid_from = CASE WHEN memberships.deleted_at IS NULL THEN memberships.valid_from ELSE now() END,
			       opened_by = CASE WHEN memberships.deleted_at IS NULL THEN memberships.opened_by ELSE 'written' END,
			       opened_run = CASE WHEN memberships.deleted_at IS NULL THEN memberships.opened_run ELSE excluded.opened_run END,
			       origin_system = excluded.origin_system, external_reference = excluded.external_reference,
			       last_sync_out_status = 'succeeded', last_sync_out_date = now(), last_sync_out_error = NULL
			RETURNING 1
		)
		SELECT (SELECT count(*) FROM upserted) - (SELECT count(*) FROM live_before)`)
}

// RecordMembersRemoved tombstones memberships the engine removed and marks the changes applied.
func (s *Store) RecordMembersRemoved(ctx context.Context, cs []Change) error {
	return s.recordMembers(ctx, cs, `
		WITH `+removedMembersHistory()+`, gone AS (
			UPDATE memberships m SET deleted_at = now(), updated_at = now(), last_sync_out_status = 'succeeded',
			       last_sync_out_date = now(), last_sync_out_error = NULL
			  FROM changes c
			 WHERE c.id = ANY($1) AND m.system = c.target_system AND m.group_id = c.target_group_id
			   AND m.account_id = c.target_account_id AND m.deleted_at IS NULL
			RETURNING 1
		)
		SELECT -count(*) FROM gone`)
}

// recordMembers runs sql, which returns how much the live membership count of the batch's
// system moved, keeps systems.membership_count in step and marks the changes applied.
func (s *Store) recordMembers(ctx context.Context, cs []Change, sql string) error {
	ids := make([]int64, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.checkFence(ctx, tx); err != nil {
			return err
		}
		var delta int64
		if err := tx.QueryRow(ctx, sql, ids).Scan(&delta); err != nil {
			return fmt.Errorf("state: record member changes: %w", err)
		}
		if delta != 0 && len(cs) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE systems SET membership_count = membership_count + $2 WHERE name = $1`,
				cs[0].TargetSystem, delta); err != nil {
				return fmt.Errorf("state: count member changes: %w", err)
			}
		}
		return markApplied(ctx, tx, ids)
	})
}

// MarkApplied marks changes applied without a mirror write (e.g. an update that changed
// nothing the mirror models).
func (s *Store) MarkApplied(ctx context.Context, ids []int64) (err error) {
	db, end, err := s.beginFenced(ctx)
	if err != nil {
		return err
	}
	defer func() { err = end(err) }()
	return markApplied(ctx, db, ids)
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func markApplied(ctx context.Context, db execer, ids []int64) error {
	if _, err := db.Exec(ctx, `UPDATE changes SET status = 'applied', applied_at = now(), updated_at = now(),
		last_error = NULL WHERE id = ANY($1)`, ids); err != nil {
		return fmt.Errorf("state: mark changes applied: %w", err)
	}
	return nil
}

// RecordSourceSyncOut stamps each source group of the run with the outcome of pushing it:
// failed if any of its changes failed, else succeeded.
func (s *Store) RecordSourceSyncOut(ctx context.Context, runID int64) (err error) {
	db, end, err := s.beginFenced(ctx)
	if err != nil {
		return err
	}
	defer func() { err = end(err) }()
	_, err = db.Exec(ctx, `
		UPDATE groups g SET last_sync_out_status = r.status, last_sync_out_date = now(), last_sync_out_error = r.err
		  FROM (SELECT source_system, source_group_id,
		               CASE WHEN bool_or(status = 'failed') THEN 'failed' ELSE 'succeeded' END AS status,
		               max(last_error) FILTER (WHERE status = 'failed') AS err
		          FROM changes WHERE run_id = $1 AND status IN ('applied', 'failed')
		         GROUP BY 1, 2) r
		 WHERE g.system = r.source_system AND g.external_id = r.source_group_id`, runID)
	if err != nil {
		return fmt.Errorf("state: record sync out of run %d: %w", runID, err)
	}
	return nil
}

// PruneSkipped deletes the skipped changes of the flow's earlier runs but reverts'. A skip
// (no_account, unsupported) is re-planned by every run while its cause lasts, so only the
// latest run's skips carry information; keeping every run's would grow the table without
// bound. A revert is planned once: its skips are the only record of what it left.
func (s *Store) PruneSkipped(ctx context.Context, flow string, beforeRun int64) (_ int64, err error) {
	db, end, err := s.beginFenced(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { err = end(err) }()
	tag, err := db.Exec(ctx, `DELETE FROM changes WHERE flow = $1 AND run_id < $2 AND status = 'skipped'
		AND run_id NOT IN (SELECT id FROM runs WHERE flow = $1 AND trigger = 'revert')`, flow, beforeRun)
	if err != nil {
		return 0, fmt.Errorf("state: prune skipped changes of flow %q: %w", flow, err)
	}
	return tag.RowsAffected(), nil
}
