package state

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/groupsync/groupsync/connectors"
)

// Reverts. `groupsync revert RUN` plans the inverse of run RUN's applied changes as the
// changes of a run of its own (trigger revert, runs.reverts_run_id = RUN): each inverse
// change names the change it undoes (changes.reverts_change_id). Parts the world has
// moved since are stored skipped with the reason, so the plan lists them:
//
//   - group_gone: the target group was deleted (or, for the inverse of a delete, cannot be
//     brought back);
//   - group_archived: a member change in a group archived since;
//   - account_gone: the target account was deleted or deactivated since;
//   - superseded_by_run N: a later run N applied a change to the same member (or group);
//   - renamed_since: the group's name is no longer the one the run wrote;
//   - already_member, already_removed, already_reverted: the target already is as the
//     revert would make it;
//   - delete_groups_never: a created group is left, the flow's policy being never;
//   - group_reverted: a member of a group whose creation the revert undoes;
//   - unsupported, membership_managed, system_group: as for any plan;
//   - target_unavailable: the target is no longer one of the flow's, or was not read.
//
// A revert run is reviewed, guarded and applied like any stored plan: its changes are
// ordinary changes, so apply pushes them through the same push path, fenced by the lease.

// RevertInput is what PlanRevert needs.
type RevertInput struct {
	// RunID is the revert run; Of the run whose applied changes it undoes.
	RunID int64
	Of    int64
	Flow  string
	// Targets are the targets read this run with what each can do. Changes of Of in other
	// targets are skipped target_unavailable.
	Targets []PlanTarget
	// DeletePolicy is the flow's delete_groups: a group Of created is archived (archive),
	// deleted (delete) or left (never).
	DeletePolicy string
}

// RevertStats are the figures the guard needs of a revert plan.
type RevertStats struct {
	// Reverted counts Of's applied changes the plan considered.
	Reverted int64
	// TargetMembers counts, per target, the live members of the groups the revert removes
	// members from (the denominator of the removal percentage).
	TargetMembers map[string]int64
}

// AppliedChanges counts a run's applied changes: what a revert of it would undo.
func (s *Store) AppliedChanges(ctx context.Context, runID int64) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM changes WHERE run_id = $1 AND status = 'applied'`,
		runID).Scan(&n); err != nil {
		return 0, fmt.Errorf("state: applied changes of run %d: %w", runID, err)
	}
	return n, nil
}

// PlanRevert stores the inverse of run in.Of's applied changes as changes of run in.RunID,
// set-based, in one transaction fenced by the run's lease.
func (s *Store) PlanRevert(ctx context.Context, in RevertInput) (RevertStats, error) {
	stats := RevertStats{TargetMembers: map[string]int64{}}
	names, keys, err := s.revertNameKeys(ctx, in.Of)
	if err != nil {
		return stats, err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(ptx pgx.Tx) error {
		if err := s.checkFence(ctx, ptx); err != nil {
			return err
		}
		tx := planTx{Tx: ptx, log: s.logger}
		if err := lockRun(ctx, tx, in.RunID); err != nil {
			return err
		}
		if err := tx.steps(ctx, revertStage(in, names, keys)); err != nil {
			return err
		}
		for _, t := range in.Targets {
			if err := tx.steps(ctx, revertTargetSteps(in, t)); err != nil {
				return fmt.Errorf("target %s: %w", t.System, err)
			}
		}
		return revertCount(ctx, tx, in, &stats)
	})
	if err != nil {
		return stats, fmt.Errorf("state: plan revert of run %d as run %d: %w", in.Of, in.RunID, err)
	}
	return stats, nil
}

// revertNameKeys returns the group names run of wrote with their name keys, normalized
// here in Go (the one normalizer): the plan compares them with the target groups' stored
// keys to tell a group renamed since.
func (s *Store) revertNameKeys(ctx context.Context, of int64) ([]string, []string, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT DISTINCT payload->>'name' FROM changes
		 WHERE run_id = $1 AND status = 'applied' AND payload ? 'name'
		   AND operation IN ('create_group', 'update_group', 'restore_group')`, of)
	if err != nil {
		return nil, nil, fmt.Errorf("state: group names of run %d: %w", of, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, nil, fmt.Errorf("state: group names of run %d: %w", of, err)
	}
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = connectors.NormalizeName(n)
	}
	return names, keys, nil
}

// revertStage stages rv_src: each applied change of the reverted run with the target's
// state now (group, account, membership) and the first later run that applied a change
// to the same member, or to the same group for a group change. Later changes are found
// through the run id range (changes_run_id_idx) and grouped once, not looked up per change.
func revertStage(in RevertInput, names, keys []string) []planStep {
	targets := make([]string, len(in.Targets))
	for i, t := range in.Targets {
		targets[i] = t.System
	}
	return []planStep{
		{"revert_later", `CREATE TEMP TABLE rv_later ON COMMIT DROP AS
			SELECT target_system, target_group_id, coalesce(target_account_id, '') AS acct, min(run_id) AS run_id
			  FROM changes
			 WHERE run_id > $1 AND status = 'applied' AND target_group_id IS NOT NULL
			 GROUP BY 1, 2, 3`, []any{in.Of}},
		{"revert_src", `CREATE TEMP TABLE rv_src ON COMMIT DROP AS
			SELECT c.id, c.target_system, c.operation, c.link_id, c.source_system, c.source_group_id,
			       c.target_group_id, c.account_email, c.source_account_id, c.target_account_id, c.payload,
			       (tg.external_id IS NOT NULL AND tg.deleted_at IS NULL) AS group_live,
			       coalesce(tg.state = 'archived', false) AS group_archived,
			       coalesce(tg.membership_managed, false) AS managed, coalesce(tg.is_system, false) AS is_system,
			       tg.name AS tname, tg.description AS tdesc, tg.visibility AS tvis,
			       (tg.name_key IS NOT DISTINCT FROM nk.key) AS same_name,
			       (a.external_id IS NOT NULL AND a.deleted_at IS NULL) AS account_live,
			       (m.account_id IS NOT NULL) AS member_live,
			       l.run_id AS later_run
			  FROM changes c
			  LEFT JOIN groups tg ON tg.system = c.target_system AND tg.external_id = c.target_group_id
			  LEFT JOIN accounts a ON a.system = c.target_system AND a.external_id = c.target_account_id
			  LEFT JOIN memberships m ON m.system = c.target_system AND m.group_id = c.target_group_id
			                         AND m.account_id = c.target_account_id AND m.deleted_at IS NULL
			  LEFT JOIN unnest($2::text[], $3::text[]) AS nk(name, key) ON nk.name = c.payload->>'name'
			  LEFT JOIN rv_later l ON l.target_system = c.target_system AND l.target_group_id = c.target_group_id
			                      AND l.acct = coalesce(c.target_account_id, '')
			 WHERE c.run_id = $1 AND c.status = 'applied'`, []any{in.Of, names, keys}},
		{"analyze_revert_src", `ANALYZE rv_src`, nil},
		{"revert_unavailable", revertInsert + `
			SELECT $1, $2, target_system, ` + revertInverse + `, link_id, source_system, source_group_id,
			       target_group_id, account_email, source_account_id, target_account_id, payload,
			       'skipped', 'target_unavailable', id
			  FROM rv_src WHERE NOT target_system = ANY($3::text[])`, []any{in.RunID, in.Flow, targets}},
	}
}

// revertColumns are the change columns a revert sets; the rest take their defaults.
const revertColumns = `run_id, flow, target_system, operation, link_id, source_system, source_group_id,
	target_group_id, account_email, source_account_id, target_account_id, payload, status, reason, reverts_change_id`

const revertInsert = `INSERT INTO changes (` + revertColumns + `) `

// revertInverse is the operation that undoes rv_src's: the inverse of a create is the
// flow's deletion, decided by the group step; here (a skip) it is named delete_group.
const revertInverse = `CASE operation WHEN 'add_member' THEN 'remove_member' WHEN 'remove_member' THEN 'add_member'
	WHEN 'create_group' THEN 'delete_group' WHEN 'delete_group' THEN 'create_group'
	WHEN 'archive_group' THEN 'restore_group' WHEN 'restore_group' THEN 'archive_group' ELSE operation END`

// revertWhy is the skip reason every inverse shares, most telling first; NULL when none.
const revertWhy = `CASE WHEN NOT group_live THEN 'group_gone'
	WHEN later_run IS NOT NULL THEN 'superseded_by_run ' || later_run END`

// revertStep is one inverse statement: sel is the select list up to the status, ops the
// original operations it undoes, why the skip reason (NULL to plan the change) after the
// ones every inverse shares (revertWhy).
func revertStep(sel, ops, why string) string {
	return revertInsert + `SELECT ` + sel + `, s.status, s.reason, rv_src.id
		  FROM rv_src
		 CROSS JOIN LATERAL (SELECT coalesce(` + revertWhy + `, ` + why + `) AS reason) r
		 CROSS JOIN LATERAL (SELECT CASE WHEN r.reason IS NULL THEN 'planned' ELSE 'skipped' END AS status, r.reason) s
		 WHERE rv_src.target_system = $3 AND rv_src.operation IN (` + ops + `)`
}

// revertTargetSteps store one target's inverse changes: groups first, so the members of a
// group whose creation is undone are known (group_reverted). Each step's own arguments
// follow the common three ($1 run, $2 flow, $3 target).
func revertTargetSteps(in RevertInput, t PlanTarget) []planStep {
	c := t.Caps
	deleteOp, canDelete := "delete_group", c.DeleteGroup
	if in.DeletePolicy == "archive" {
		deleteOp, canDelete = "archive_group", c.ArchiveGroup
	}
	args := func(more ...any) []any { return append([]any{in.RunID, in.Flow, t.System}, more...) }
	const groupCols = `link_id, source_system, source_group_id, target_group_id, NULL, NULL, NULL`
	const namePayload = `jsonb_build_object('name', coalesce(tname, payload->>'name'))`
	return []planStep{
		// A group the run created is removed as the flow removes groups (delete_groups).
		{"revert_create", revertStep(`$1, $2, $3, $4::text, `+groupCols+`, `+namePayload, `'create_group'`,
			`CASE WHEN $6::text = 'never' THEN 'delete_groups_never' WHEN NOT $5 THEN 'unsupported'
			      WHEN is_system THEN 'system_group' WHEN NOT same_name THEN 'renamed_since'
			      WHEN $4::text = 'archive_group' AND group_archived THEN 'already_reverted' END`),
			args(deleteOp, canDelete, in.DeletePolicy)},
		// An update is undone with the values it replaced, recorded in its payload (old_*);
		// the target's values now become the inverse's old_*, so it can be undone in turn.
		{"revert_update", revertStep(`$1, $2, $3, 'update_group', `+groupCols+`,
			jsonb_build_object('name', payload->>'old_name',
			                   'description', coalesce(payload->>'old_description', tdesc, ''),
			                   'visibility', coalesce(nullif(payload->>'old_visibility', ''), tvis, ''),
			                   'old_name', tname, 'old_description', tdesc, 'old_visibility', tvis)`, `'update_group'`,
			`CASE WHEN NOT $4 THEN 'unsupported' WHEN is_system THEN 'system_group'
			      WHEN coalesce(payload->>'old_name', '') = '' THEN 'unrevertable'
			      WHEN NOT same_name THEN 'renamed_since' END`),
			args(c.UpdateGroup)},
		// An archive is undone by a restore and the other way round; a deleted group
		// cannot be brought back (group_gone).
		{"revert_archive_restore", revertStep(`$1, $2, $3, `+revertInverse+`, `+groupCols+`, `+namePayload,
			`'archive_group', 'restore_group', 'delete_group'`,
			`CASE WHEN operation = 'delete_group' THEN 'group_gone'
			      WHEN operation = 'archive_group' AND NOT $4 THEN 'unsupported'
			      WHEN operation = 'restore_group' AND NOT $5 THEN 'unsupported'
			      WHEN (operation = 'archive_group') <> group_archived THEN 'already_reverted' END`),
			args(c.RestoreGroup, c.ArchiveGroup)},
		{"revert_members", revertStep(`$1, $2, $3, `+revertInverse+`, link_id, source_system, source_group_id,
			target_group_id, account_email, source_account_id, target_account_id, NULL`,
			`'add_member', 'remove_member'`,
			`CASE WHEN group_archived THEN 'group_archived' WHEN NOT account_live THEN 'account_gone'
			      WHEN managed THEN 'membership_managed'
			      WHEN operation = 'add_member' AND NOT $5 THEN 'unsupported'
			      WHEN operation = 'remove_member' AND NOT $4 THEN 'unsupported'
			      WHEN operation = 'add_member' AND NOT member_live THEN 'already_removed'
			      WHEN operation = 'remove_member' AND member_live THEN 'already_member'
			      WHEN operation = 'add_member' AND EXISTS (
			           SELECT 1 FROM changes g WHERE g.run_id = $1 AND g.target_system = $3
			              AND g.target_group_id = rv_src.target_group_id AND g.status = 'planned'
			              AND g.operation IN ('archive_group', 'delete_group')) THEN 'group_reverted' END`),
			args(c.AddMember, c.RemoveMember)},
	}
}

// revertCount counts what the plan considered and, per target, the live members of the
// groups it removes members from.
func revertCount(ctx context.Context, tx planTx, in RevertInput, stats *RevertStats) error {
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM rv_src`).Scan(&stats.Reverted); err != nil {
		return fmt.Errorf("count reverted changes: %w", err)
	}
	for _, t := range in.Targets {
		var n int64
		if err := tx.QueryRow(ctx, `
			SELECT count(*) FROM memberships m
			 WHERE m.system = $2 AND m.deleted_at IS NULL
			   AND m.group_id IN (SELECT target_group_id FROM changes
			                       WHERE run_id = $1 AND target_system = $2 AND operation = 'remove_member' AND status = 'planned')`,
			in.RunID, t.System).Scan(&n); err != nil {
			return fmt.Errorf("count members of %s: %w", t.System, err)
		}
		stats.TargetMembers[t.System] = n
	}
	return nil
}
