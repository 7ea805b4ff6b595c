package state

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/groupsync/groupsync/connectors"
)

// ConfigLink is an explicit source ↔ target pair from a flow's configuration.
type ConfigLink struct {
	SourceID     string
	TargetSystem string
	TargetID     string
}

// LinkInput is what LinkFlow needs.
type LinkInput struct {
	RunID   int64
	Flow    string
	Source  string
	Targets []string
	// ScopeIDs are the in-scope source group ids (live or tombstoned).
	ScopeIDs    []string
	ConfigLinks []ConfigLink
}

// LinkFlow resolves every in-scope source group to its counterpart in each target: config
// links first, then existing links, then a live target group with the same normalized name
// (adopted, never duplicated). Links to target groups that have since been deleted are
// dropped so the group is created again. Groups left unlinked are the ones to create.
func (s *Store) LinkFlow(ctx context.Context, in LinkInput) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// One link per in-scope source group.
		if _, err := tx.Exec(ctx, `
			INSERT INTO links (link_id, system, external_id, flow, created_by_run)
			SELECT nextval('link_id_seq'), $1, g.external_id, $2, $3
			  FROM groups g
			 WHERE g.system = $1 AND g.external_id = ANY($4::text[])
			   AND NOT EXISTS (SELECT 1 FROM links l WHERE l.system = $1 AND l.external_id = g.external_id)
			ON CONFLICT DO NOTHING`, in.Source, in.Flow, in.RunID, in.ScopeIDs); err != nil {
			return fmt.Errorf("state: link source groups of flow %q: %w", in.Flow, err)
		}
		for _, cl := range in.ConfigLinks {
			if _, err := tx.Exec(ctx, `
				DELETE FROM links l USING links sl
				 WHERE sl.system = $1 AND sl.external_id = $2
				   AND l.system = $3 AND l.link_id = sl.link_id AND l.external_id <> $4`,
				in.Source, cl.SourceID, cl.TargetSystem, cl.TargetID); err != nil {
				return fmt.Errorf("state: apply config link %s → %s/%s: %w", cl.SourceID, cl.TargetSystem, cl.TargetID, err)
			}
			if _, err := tx.Exec(ctx, `
				INSERT INTO links (link_id, system, external_id, flow, created_by_run)
				SELECT sl.link_id, $3, $4, $5, $6 FROM links sl WHERE sl.system = $1 AND sl.external_id = $2
				ON CONFLICT (system, external_id) DO UPDATE SET link_id = excluded.link_id, flow = excluded.flow`,
				in.Source, cl.SourceID, cl.TargetSystem, cl.TargetID, in.Flow, in.RunID); err != nil {
				return fmt.Errorf("state: apply config link %s → %s/%s: %w", cl.SourceID, cl.TargetSystem, cl.TargetID, err)
			}
		}
		for _, target := range in.Targets {
			// A link whose target group was deleted remotely no longer stands for anything.
			if _, err := tx.Exec(ctx, `
				DELETE FROM links l USING groups g
				 WHERE l.system = $1 AND g.system = l.system AND g.external_id = l.external_id
				   AND g.deleted_at IS NOT NULL`, target); err != nil {
				return fmt.Errorf("state: drop stale links of %s: %w", target, err)
			}
			// Same name means the same stored key (groups.name_key, computed in Go at
			// ingest by connectors.NormalizeName): SQL compares keys, never normalizes.
			if _, err := tx.Exec(ctx, `
				INSERT INTO links (link_id, system, external_id, flow, created_by_run)
				SELECT DISTINCT ON (sl.link_id) sl.link_id, $2, tg.external_id, $4, $5
				  FROM groups sg
				  JOIN links sl ON sl.system = sg.system AND sl.external_id = sg.external_id
				  JOIN groups tg ON tg.system = $2 AND tg.deleted_at IS NULL AND tg.name_key = sg.name_key
				 WHERE sg.system = $1 AND sg.external_id = ANY($3::text[]) AND sg.deleted_at IS NULL
				   AND NOT EXISTS (SELECT 1 FROM links x WHERE x.system = $2 AND x.link_id = sl.link_id)
				   AND NOT EXISTS (SELECT 1 FROM links x WHERE x.system = $2 AND x.external_id = tg.external_id)
				 ORDER BY sl.link_id, tg.external_id
				ON CONFLICT DO NOTHING`,
				in.Source, target, in.ScopeIDs, in.Flow, in.RunID); err != nil {
				return fmt.Errorf("state: adopt same-named groups in %s: %w", target, err)
			}
		}
		return nil
	})
}

// LinkedGroupIDs returns the live target group ids linked to in-scope source groups: the
// groups whose members the engine pulls from that target.
func (s *Store) LinkedGroupIDs(ctx context.Context, source, target string, scopeIDs []string) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT tl.external_id
		  FROM links sl
		  JOIN links tl ON tl.link_id = sl.link_id AND tl.system = $2
		  JOIN groups tg ON tg.system = tl.system AND tg.external_id = tl.external_id AND tg.deleted_at IS NULL
		 WHERE sl.system = $1 AND sl.external_id = ANY($3::text[])
		 ORDER BY tl.external_id`, source, target, scopeIDs)
	if err != nil {
		return nil, fmt.Errorf("state: linked groups of %s in %s: %w", source, target, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("state: linked groups of %s in %s: %w", source, target, err)
	}
	return ids, nil
}

// PlanTarget is one target of a plan and what it can do.
type PlanTarget struct {
	System string
	Caps   connectors.Capabilities
}

// PlanInput is what PlanFlow needs.
type PlanInput struct {
	RunID    int64
	Flow     string
	Source   string
	ScopeIDs []string
	Targets  []PlanTarget
	// Overrides map a normalized source email to a normalized target email.
	Overrides map[string]string
	// Mirror removes target members absent at the source; false is add_only.
	Mirror       bool
	CreateGroups bool
	// DeletePolicy is never, archive or delete.
	DeletePolicy string
	// MaxAttempts is how many attempts a failing change gets across runs.
	MaxAttempts int
	// IncompleteSourceGroups are in-scope source groups the engine could not know whole in
	// this run: their member listing failed or answered 404, or a member's account lookup
	// failed. No member is removed from their target groups (removals only on positive
	// knowledge); additions proceed.
	IncompleteSourceGroups []string
}

// PlanStats are the figures the guard needs.
type PlanStats struct {
	// SourceGroups and SourceMembers count the live in-scope source groups and their members.
	SourceGroups  int64
	SourceMembers int64
	// TargetMembers counts, per target, the members of the linked target groups.
	TargetMembers map[string]int64
}

// PlanFlow diffs the desired state (the source's in-scope groups and members) against each
// target's mirror state and stores the result as change rows of the run, all set-based. A
// change the target cannot make is stored skipped/unsupported; a member without a target
// account skipped/no_account.
func (s *Store) PlanFlow(ctx context.Context, in PlanInput) (PlanStats, error) {
	stats := PlanStats{TargetMembers: map[string]int64{}}
	ovSource, ovTarget := make([]string, 0, len(in.Overrides)), make([]string, 0, len(in.Overrides))
	for k, v := range in.Overrides {
		ovSource, ovTarget = append(ovSource, k), append(ovTarget, v)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The desired members of each linked in-scope source group, by target-side email.
		// Members without an email are kept apart (keyed by account) so each is reported.
		if _, err := tx.Exec(ctx, `
			CREATE TEMP TABLE plan_src ON COMMIT DROP AS
			SELECT DISTINCT ON (sl.link_id, k.key)
			       sl.link_id, sg.external_id AS sgid, m.account_id AS source_account_id, k.email
			  FROM groups sg
			  JOIN links sl ON sl.system = sg.system AND sl.external_id = sg.external_id
			  JOIN memberships m ON m.system = sg.system AND m.group_id = sg.external_id
			                    AND m.deleted_at IS NULL AND m.member_type NOT LIKE 'group%'
			  LEFT JOIN accounts a ON a.system = m.system AND a.external_id = m.account_id
			  CROSS JOIN LATERAL (SELECT lower(btrim(coalesce(nullif(m.email, ''), a.email, ''))) AS email) e
			  LEFT JOIN unnest($3::text[], $4::text[]) AS ov(source_email, target_email) ON ov.source_email = e.email
			  CROSS JOIN LATERAL (SELECT coalesce(ov.target_email, e.email) AS email) k0
			  CROSS JOIN LATERAL (SELECT k0.email,
			                             CASE WHEN k0.email = '' THEN 'account:' || m.account_id ELSE k0.email END AS key) k
			 WHERE sg.system = $1 AND sg.external_id = ANY($2::text[]) AND sg.deleted_at IS NULL
			 ORDER BY sl.link_id, k.key, m.account_id`, in.Source, in.ScopeIDs, ovSource, ovTarget); err != nil {
			return fmt.Errorf("stage source members: %w", err)
		}
		for _, q := range []string{`CREATE INDEX ON plan_src (link_id, email)`, `ANALYZE plan_src`} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("index source members: %w", err)
			}
		}
		if err := tx.QueryRow(ctx, `
			SELECT (SELECT count(*) FROM groups WHERE system = $1 AND external_id = ANY($2::text[]) AND deleted_at IS NULL),
			       (SELECT count(*) FROM plan_src)`, in.Source, in.ScopeIDs).Scan(&stats.SourceGroups, &stats.SourceMembers); err != nil {
			return fmt.Errorf("count source: %w", err)
		}
		for _, t := range in.Targets {
			n, err := planTarget(ctx, tx, in, t)
			if err != nil {
				return fmt.Errorf("target %s: %w", t.System, err)
			}
			stats.TargetMembers[t.System] = n
		}
		return carryAttempts(ctx, tx, in.RunID, in.MaxAttempts)
	})
	if err != nil {
		return stats, fmt.Errorf("state: plan flow %q run %d: %w", in.Flow, in.RunID, err)
	}
	return stats, nil
}

// planTarget stores one target's changes and returns the number of members its linked
// groups hold (the denominator of the removal percentage).
func planTarget(ctx context.Context, tx pgx.Tx, in PlanInput, t PlanTarget) (int64, error) {
	stage := []string{
		`DROP TABLE IF EXISTS plan_pairs, plan_tgt`,
		`CREATE TEMP TABLE plan_pairs ON COMMIT DROP AS
		SELECT sl.link_id, sg.external_id AS sgid, sg.name, sg.description, sg.visibility,
		       sg.deleted_at IS NOT NULL AS source_gone,
		       tl.external_id AS tgid, tg.name AS tname, tg.description AS tdesc, tg.visibility AS tvis,
		       tg.state AS tstate, coalesce(tg.membership_managed, false) AS managed,
		       coalesce(tg.is_system, false) AS is_system,
		       (tg.external_id IS NOT NULL AND tg.deleted_at IS NULL) AS target_live,
		       (tl.external_id IS NOT NULL AND tg.external_id IS NULL) AS target_unknown
		  FROM groups sg
		  JOIN links sl ON sl.system = sg.system AND sl.external_id = sg.external_id
		  LEFT JOIN links tl ON tl.system = $3 AND tl.link_id = sl.link_id
		  LEFT JOIN groups tg ON tg.system = tl.system AND tg.external_id = tl.external_id
		 WHERE sg.system = $1 AND sg.external_id = ANY($2::text[])`,
		`CREATE TEMP TABLE plan_tgt ON COMMIT DROP AS
		SELECT p.link_id, m.account_id, lower(btrim(coalesce(nullif(m.email, ''), a.email, ''))) AS email
		  FROM plan_pairs p
		  JOIN memberships m ON m.system = $1 AND m.group_id = p.tgid AND m.deleted_at IS NULL
		                    AND m.member_type NOT LIKE 'group%'
		  LEFT JOIN accounts a ON a.system = m.system AND a.external_id = m.account_id
		 WHERE p.target_live AND NOT p.source_gone`,
		`CREATE INDEX ON plan_tgt (link_id, email)`,
		`ANALYZE plan_pairs`,
		`ANALYZE plan_tgt`,
	}
	stageArgs := [][]any{nil, {in.Source, in.ScopeIDs, t.System}, {t.System}, nil, nil, nil}
	for i, q := range stage {
		if _, err := tx.Exec(ctx, q, stageArgs[i]...); err != nil {
			return 0, fmt.Errorf("stage pairs: %w", err)
		}
	}
	c := t.Caps
	canCreate := c.CreateGroup && in.CreateGroups
	deleteOp, canDelete := "delete_group", c.DeleteGroup
	if in.DeletePolicy == "archive" {
		deleteOp, canDelete = "archive_group", c.ArchiveGroup
	}
	const insert = `INSERT INTO changes (run_id, flow, target_system, operation, link_id, source_system,
		source_group_id, target_group_id, account_email, source_account_id, target_account_id, payload, status, reason) `
	args := []any{in.RunID, in.Flow, t.System, in.Source}
	steps := []struct{ name, sql string }{
		{"create", insert + `
			SELECT $1, $2, $3, 'create_group', link_id, $4, sgid, NULL, NULL, NULL, NULL,
			       jsonb_build_object('name', name, 'description', description, 'visibility', visibility),
			       CASE WHEN target_unknown OR NOT $5 THEN 'skipped' ELSE 'planned' END,
			       CASE WHEN target_unknown THEN 'linked_group_missing' WHEN NOT $5 THEN 'unsupported' END
			  FROM plan_pairs
			 WHERE NOT source_gone AND NOT target_live AND ($6 OR target_unknown)`},
		{"update", insert + `
			SELECT $1, $2, $3, 'update_group', link_id, $4, sgid, tgid, NULL, NULL, NULL,
			       -- A source without a description leaves the target's own in place.
			       jsonb_build_object('name', name,
			                          'description', CASE WHEN description = '' THEN coalesce(tdesc, '') ELSE description END,
			                          'visibility', visibility,
			                          'old_name', tname, 'old_description', tdesc, 'old_visibility', tvis),
			       CASE WHEN NOT $5 OR is_system THEN 'skipped' ELSE 'planned' END,
			       CASE WHEN NOT $5 THEN 'unsupported' WHEN is_system THEN 'system_group' END
			  FROM plan_pairs
			 WHERE NOT source_gone AND target_live
			   AND (tname IS DISTINCT FROM name
			        OR ($6 AND description <> '' AND tdesc IS DISTINCT FROM description)
			        OR ($7 AND visibility <> ''
			            AND tvis IS DISTINCT FROM CASE WHEN visibility = 'hidden' AND NOT $8 THEN 'private' ELSE visibility END))`},
		{"delete", insert + `
			SELECT $1, $2, $3, $5, link_id, $4, sgid, tgid, NULL, NULL, NULL,
			       jsonb_build_object('name', tname),
			       CASE WHEN NOT $6 OR is_system THEN 'skipped' ELSE 'planned' END,
			       CASE WHEN NOT $6 THEN 'unsupported' WHEN is_system THEN 'system_group' END
			  FROM plan_pairs
			 WHERE source_gone AND target_live AND $7
			   AND NOT ($5 = 'archive_group' AND tstate = 'archived')`},
		{"add", insert + `
			SELECT $1, $2, $3, 'add_member', s.link_id, $4, s.sgid, p.tgid, s.email, s.source_account_id, ta.external_id,
			       NULL,
			       CASE WHEN s.email = '' OR ta.external_id IS NULL THEN 'skipped' ELSE 'planned' END,
			       CASE WHEN s.email = '' THEN 'no_email' WHEN ta.external_id IS NULL THEN 'no_account' END
			  FROM plan_src s
			  JOIN plan_pairs p ON p.link_id = s.link_id
			  LEFT JOIN LATERAL (SELECT a.external_id FROM accounts a
			                      WHERE a.system = $3 AND a.email = s.email AND s.email <> '' AND a.deleted_at IS NULL
			                      ORDER BY a.external_id LIMIT 1) ta ON true
			 WHERE $5 AND NOT p.managed AND NOT p.source_gone AND (p.target_live OR (p.tgid IS NULL AND $6))
			   AND NOT EXISTS (SELECT 1 FROM plan_tgt t WHERE t.link_id = s.link_id AND t.email = s.email AND s.email <> '')`},
		// A group-level reason (the target cannot write members at all, or computes this
		// group's membership itself) is one row per group with the member count, not one
		// row per member every run.
		{"add_group_skips", insert + `
			SELECT $1, $2, $3, 'add_member', s.link_id, $4, s.sgid, p.tgid, NULL, NULL, NULL,
			       jsonb_build_object('members', count(*)), 'skipped',
			       CASE WHEN NOT $5 THEN 'unsupported' ELSE 'membership_managed' END
			  FROM plan_src s
			  JOIN plan_pairs p ON p.link_id = s.link_id
			 WHERE (NOT $5 OR p.managed) AND NOT p.source_gone AND (p.target_live OR (p.tgid IS NULL AND $6))
			   AND NOT EXISTS (SELECT 1 FROM plan_tgt t WHERE t.link_id = s.link_id AND t.email = s.email AND s.email <> '')
			 GROUP BY s.link_id, s.sgid, p.tgid, p.managed`},
		{"remove", insert + `
			SELECT $1, $2, $3, 'remove_member', t.link_id, $4, p.sgid, p.tgid, t.email, NULL, t.account_id,
			       NULL, 'planned', NULL
			  FROM plan_tgt t
			  JOIN plan_pairs p ON p.link_id = t.link_id
			 WHERE $6 AND $5 AND NOT p.managed AND t.email <> ''
			   AND NOT EXISTS (SELECT 1 FROM plan_src s WHERE s.link_id = t.link_id AND s.email = t.email)`},
		{"remove_group_skips", insert + `
			SELECT $1, $2, $3, 'remove_member', t.link_id, $4, p.sgid, p.tgid, NULL, NULL, NULL,
			       jsonb_build_object('members', count(*)), 'skipped',
			       CASE WHEN NOT $5 THEN 'unsupported' ELSE 'membership_managed' END
			  FROM plan_tgt t
			  JOIN plan_pairs p ON p.link_id = t.link_id
			 WHERE $6 AND (NOT $5 OR p.managed) AND t.email <> ''
			   AND NOT EXISTS (SELECT 1 FROM plan_src s WHERE s.link_id = t.link_id AND s.email = t.email)
			 GROUP BY t.link_id, p.sgid, p.tgid, p.managed`},
	}
	extra := map[string][]any{
		"create":             {c.CreateGroup, in.CreateGroups},
		"update":             {c.UpdateGroup, c.Description, c.Visibility, c.HiddenVisibility},
		"delete":             {deleteOp, canDelete, in.DeletePolicy != "never"},
		"add":                {c.AddMember, canCreate},
		"add_group_skips":    {c.AddMember, canCreate},
		"remove":             {c.RemoveMember, in.Mirror},
		"remove_group_skips": {c.RemoveMember, in.Mirror},
	}
	for _, st := range steps {
		if _, err := tx.Exec(ctx, st.sql, append(append([]any{}, args...), extra[st.name]...)...); err != nil {
			return 0, fmt.Errorf("plan %s: %w", st.name, err)
		}
	}
	var n int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM plan_tgt`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count target members: %w", err)
	}
	return n, nil
}

// carryAttempts gives each planned change the attempts of the same change's latest earlier
// row when that one failed, and fails for good a change that used up its attempts: a change
// that keeps failing is reported, not retried forever.
func carryAttempts(ctx context.Context, tx pgx.Tx, runID int64, maxAttempts int) error {
	_, err := tx.Exec(ctx, `
		UPDATE changes c
		   SET attempts = prev.attempts, last_error = prev.last_error,
		       status = CASE WHEN prev.attempts >= $2 THEN 'failed' ELSE c.status END,
		       reason = CASE WHEN prev.attempts >= $2 THEN 'max_attempts' ELSE c.reason END
		  FROM (SELECT DISTINCT ON (n.id) n.id, p.attempts, p.last_error, p.status
		          FROM changes n
		          JOIN changes p ON p.flow = n.flow AND p.target_system = n.target_system
		                        AND p.operation = n.operation
		                        AND p.link_id IS NOT DISTINCT FROM n.link_id
		                        AND p.account_email IS NOT DISTINCT FROM n.account_email
		                        AND p.run_id < n.run_id
		         WHERE n.run_id = $1 AND n.status = 'planned'
		         ORDER BY n.id, p.id DESC) prev
		 WHERE c.id = prev.id AND prev.status = 'failed'`, runID, maxAttempts)
	if err != nil {
		return fmt.Errorf("carry attempts: %w", err)
	}
	return nil
}

// TargetGuardCounts are the planned destructive changes of one target.
type TargetGuardCounts struct {
	Removals  int64
	Deletions int64
}

// GuardCounts counts each target's planned removals and deletions in a run.
func (s *Store) GuardCounts(ctx context.Context, runID int64) (map[string]TargetGuardCounts, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT target_system,
		       count(*) FILTER (WHERE operation = 'remove_member'),
		       count(*) FILTER (WHERE operation IN ('archive_group', 'delete_group'))
		  FROM changes WHERE run_id = $1 AND status = 'planned'
		 GROUP BY target_system`, runID)
	if err != nil {
		return nil, fmt.Errorf("state: guard counts of run %d: %w", runID, err)
	}
	defer rows.Close()
	out := map[string]TargetGuardCounts{}
	for rows.Next() {
		var sys string
		var c TargetGuardCounts
		if err := rows.Scan(&sys, &c.Removals, &c.Deletions); err != nil {
			return nil, fmt.Errorf("state: guard counts of run %d: %w", runID, err)
		}
		out[sys] = c
	}
	return out, rows.Err()
}

// SetPlannedStatus moves a run's planned changes (of the given operations, or all when ops
// is empty) to status with reason. It returns how many moved.
func (s *Store) SetPlannedStatus(ctx context.Context, runID int64, ops []string, status, reason string) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE changes SET status = $2, reason = $3, updated_at = now()
		 WHERE run_id = $1 AND status = 'planned' AND (cardinality($4::text[]) = 0 OR operation = ANY($4::text[]))`,
		runID, status, reason, ops)
	if err != nil {
		return 0, fmt.Errorf("state: set planned changes of run %d to %s: %w", runID, status, err)
	}
	return tag.RowsAffected(), nil
}

// ReleaseBlocked moves a blocked run's changes back to planned, for apply.
func (s *Store) ReleaseBlocked(ctx context.Context, runID int64) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE changes SET status = 'planned', reason = NULL, updated_at = now()
		 WHERE run_id = $1 AND status = 'blocked'`, runID)
	if err != nil {
		return 0, fmt.Errorf("state: release blocked changes of run %d: %w", runID, err)
	}
	return tag.RowsAffected(), nil
}

// PlanDiff compares the actionable changes (planned or blocked) of two runs by subject:
// how many only the first has and how many only the second has. apply uses it to refuse a
// stored plan that a fresh plan no longer agrees with.
func (s *Store) PlanDiff(ctx context.Context, runA, runB int64) (onlyA, onlyB int64, err error) {
	const keys = `SELECT target_system, operation, coalesce(source_group_id, ''), coalesce(target_group_id, ''),
		coalesce(account_email, '') FROM changes WHERE run_id = $1 AND status IN ('planned', 'blocked')`
	err = s.pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM (`+keys+` EXCEPT `+strings.Replace(keys, "$1", "$2", 1)+`) a),
		       (SELECT count(*) FROM (`+strings.Replace(keys, "$1", "$2", 1)+` EXCEPT `+keys+`) b)`,
		runA, runB).Scan(&onlyA, &onlyB)
	if err != nil {
		return 0, 0, fmt.Errorf("state: compare plans of runs %d and %d: %w", runA, runB, err)
	}
	return onlyA, onlyB, nil
}
