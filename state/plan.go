package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/groupsync/groupsync/connectors"
)

// nameKey is the stored name key of the group name column col (groups.name_key, computed
// in Go at ingest by connectors.NormalizeName): the one place plan SQL compares group names,
// which it does by stored key and never by normalizing in SQL.
func nameKey(col string) string { return col + "_key" }

// planTx is a link or plan transaction whose statements are named and timed: each is
// logged at debug level with its rows and duration, so a slow plan shows which statement
// it spends its time in (BenchmarkPlan -v prints the same figures).
type planTx struct {
	pgx.Tx
	log *slog.Logger
}

// planStep is one named statement of a plan transaction with its arguments.
type planStep struct {
	name string
	sql  string
	args []any
}

// step runs one named statement.
func (t planTx) step(ctx context.Context, name, sql string, args ...any) error {
	start := time.Now()
	tag, err := t.Exec(ctx, sql, args...)
	if t.log.Enabled(ctx, slog.LevelDebug) {
		t.log.LogAttrs(ctx, slog.LevelDebug, "plan statement", slog.String("step", name),
			slog.Int64("rows", tag.RowsAffected()), slog.Duration("duration", time.Since(start)))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// steps runs statements in order, stopping at the first that fails.
func (t planTx) steps(ctx context.Context, steps []planStep) error {
	for _, st := range steps {
		if err := t.step(ctx, st.name, st.sql, st.args...); err != nil {
			return err
		}
	}
	return nil
}

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
	// DeletePolicy is the flow's delete_groups (never, archive or delete). Under never, the
	// target group of a deleted source group is released (unlinked), so a source group
	// recreated under the same name can adopt it instead of conflicting with it forever.
	DeletePolicy string
	// Keeping are the targets that keep a deleted source group's target group whatever the
	// policy says, because they cannot archive or delete it (DevRev has no group delete):
	// their groups are released as under never, or a recreated source group would be a
	// name_conflict for good.
	Keeping []string
}

// LinkFlow resolves every in-scope source group to its counterpart in each target: config
// links first, then existing links, then adoption by name (InvariantOneLinkPerTargetGroup).
// Links to target groups that have since been deleted are dropped so the group is created
// again. Groups left unlinked are the ones to create.
func (s *Store) LinkFlow(ctx context.Context, in LinkInput) error {
	if err := checkConfigLinks(in.ConfigLinks); err != nil {
		return fmt.Errorf("state: links of flow %q: %w", in.Flow, err)
	}
	return pgx.BeginFunc(ctx, s.pool, func(ptx pgx.Tx) error {
		if err := s.checkFence(ctx, ptx); err != nil {
			return err
		}
		tx := planTx{Tx: ptx, log: s.logger}
		// One link per in-scope source group.
		if err := tx.step(ctx, "link_source", `
			INSERT INTO links (link_id, system, external_id, flow, created_by_run)
			SELECT nextval('link_id_seq'), $1, g.external_id, $2, $3
			  FROM groups g
			 WHERE g.system = $1 AND g.external_id = ANY($4::text[])
			   AND NOT EXISTS (SELECT 1 FROM links l WHERE l.system = $1 AND l.external_id = g.external_id)
			ON CONFLICT DO NOTHING`, in.Source, in.Flow, in.RunID, in.ScopeIDs); err != nil {
			return fmt.Errorf("state: link source groups of flow %q: %w", in.Flow, err)
		}
		if err := applyConfigLinks(ctx, tx, in); err != nil {
			return err
		}
		for _, target := range in.Targets {
			if err := linkTarget(ctx, tx, in, target); err != nil {
				return fmt.Errorf("state: link flow %q to %s: %w", in.Flow, target, err)
			}
		}
		return nil
	})
}

// checkConfigLinks refuses a configuration that points two source groups at one target
// group, or one source group at two groups of one target.
func checkConfigLinks(cls []ConfigLink) error {
	byTarget := map[[2]string]string{}
	bySource := map[[2]string]string{}
	for _, cl := range cls {
		t := [2]string{cl.TargetSystem, cl.TargetID}
		if prev, ok := byTarget[t]; ok && prev != cl.SourceID {
			return fmt.Errorf("links %s → %s/%s and %s → %s/%s point two source groups at one target group",
				prev, cl.TargetSystem, cl.TargetID, cl.SourceID, cl.TargetSystem, cl.TargetID)
		}
		byTarget[t] = cl.SourceID
		src := [2]string{cl.SourceID, cl.TargetSystem}
		if prev, ok := bySource[src]; ok && prev != cl.TargetID {
			return fmt.Errorf("links %s → %s/%s and %s → %s/%s point one source group at two groups of %s",
				cl.SourceID, cl.TargetSystem, prev, cl.SourceID, cl.TargetSystem, cl.TargetID, cl.TargetSystem)
		}
		bySource[src] = cl.TargetID
	}
	return nil
}

// applyConfigLinks makes the flow's configured links, refusing one whose target group
// another flow configured for a different source group (the two flows would take the
// group from each other on every run).
func applyConfigLinks(ctx context.Context, tx planTx, in LinkInput) error {
	// Links this flow no longer configures are ordinary links from now on.
	sys, ids := make([]string, len(in.ConfigLinks)), make([]string, len(in.ConfigLinks))
	for i, cl := range in.ConfigLinks {
		sys[i], ids[i] = cl.TargetSystem, cl.TargetID
	}
	if err := tx.step(ctx, "release_config_links", `
		UPDATE links SET configured_by_flow = NULL
		 WHERE configured_by_flow = $1
		   AND (system, external_id) NOT IN (SELECT * FROM unnest($2::text[], $3::text[]))`, in.Flow, sys, ids); err != nil {
		return fmt.Errorf("state: release unconfigured links of flow %q: %w", in.Flow, err)
	}
	for _, cl := range in.ConfigLinks {
		what := fmt.Sprintf("config link %s → %s/%s", cl.SourceID, cl.TargetSystem, cl.TargetID)
		var otherFlow, otherSource string
		err := tx.QueryRow(ctx, `
			SELECT ol.configured_by_flow,
			       coalesce((SELECT o.system || '/' || o.external_id FROM links o
			                  WHERE o.link_id = ol.link_id AND o.system <> ol.system
			                  ORDER BY o.system, o.external_id LIMIT 1), '?')
			  FROM links ol
			 WHERE ol.system = $3 AND ol.external_id = $4 AND ol.configured_by_flow <> $5
			   AND ol.link_id IS DISTINCT FROM (SELECT link_id FROM links WHERE system = $1 AND external_id = $2)`,
			in.Source, cl.SourceID, cl.TargetSystem, cl.TargetID, in.Flow).Scan(&otherFlow, &otherSource)
		switch {
		case err == nil:
			return fmt.Errorf("state: %s of flow %q: flow %q links %s to the same target group; one target group stands for one source group",
				what, in.Flow, otherFlow, otherSource)
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("state: check %s: %w", what, err)
		}
		if err := tx.step(ctx, "config_link_unlink", `
			DELETE FROM links l USING links sl
			 WHERE sl.system = $1 AND sl.external_id = $2
			   AND l.system = $3 AND l.link_id = sl.link_id AND l.external_id <> $4`,
			in.Source, cl.SourceID, cl.TargetSystem, cl.TargetID); err != nil {
			return fmt.Errorf("state: apply %s: %w", what, err)
		}
		if err := tx.step(ctx, "config_link", `
			INSERT INTO links (link_id, system, external_id, flow, created_by_run, configured_by_flow)
			SELECT sl.link_id, $3, $4, $5, $6, $5 FROM links sl WHERE sl.system = $1 AND sl.external_id = $2
			ON CONFLICT (system, external_id) DO UPDATE
			   SET link_id = excluded.link_id, flow = excluded.flow, configured_by_flow = excluded.configured_by_flow`,
			in.Source, cl.SourceID, cl.TargetSystem, cl.TargetID, in.Flow, in.RunID); err != nil {
			return fmt.Errorf("state: apply %s: %w", what, err)
		}
	}
	return nil
}

// linkTarget drops the links of one target that stand for nothing any more and adopts
// same-named target groups. Adoption (InvariantOneLinkPerTargetGroup) takes only an
// unlinked, live, non-archived group, and only when exactly one source group claims its
// name in this target: two claimants are a name conflict the plan reports, never a link
// that moves between them from run to run.
func linkTarget(ctx context.Context, tx planTx, in LinkInput, target string) error {
	// A link whose target group was deleted remotely no longer stands for anything.
	if err := tx.step(ctx, "drop_stale_links", `
		DELETE FROM links l USING groups g
		 WHERE l.system = $1 AND g.system = l.system AND g.external_id = l.external_id
		   AND g.deleted_at IS NOT NULL`, target); err != nil {
		return fmt.Errorf("drop stale links: %w", err)
	}
	if in.DeletePolicy == "never" || slices.Contains(in.Keeping, target) {
		if err := tx.step(ctx, "release_deleted_sources", `
			DELETE FROM links tl USING links sl, groups sg
			 WHERE sg.system = $1 AND sg.external_id = ANY($3::text[]) AND sg.deleted_at IS NOT NULL
			   AND sl.system = sg.system AND sl.external_id = sg.external_id
			   AND tl.system = $2 AND tl.link_id = sl.link_id AND tl.configured_by_flow IS NULL`,
			in.Source, target, in.ScopeIDs); err != nil {
			return fmt.Errorf("release groups of deleted source groups: %w", err)
		}
	}
	if err := stageNameClaims(ctx, tx, in.Flow, in.Source, target, in.ScopeIDs, false); err != nil {
		return err
	}
	if err := tx.step(ctx, "adopt", fmt.Sprintf(`
		INSERT INTO links (link_id, system, external_id, flow, created_by_run)
		SELECT DISTINCT ON (sl.link_id) sl.link_id, $2, tg.external_id, $4, $5
		  FROM groups sg
		  JOIN links sl ON sl.system = sg.system AND sl.external_id = sg.external_id
		  JOIN name_claims nc ON nc.key = %s AND nc.n = 1
		  JOIN groups tg ON tg.system = $2 AND tg.deleted_at IS NULL AND tg.state <> 'archived' AND %s = nc.key
		 WHERE sg.system = $1 AND sg.external_id = ANY($3::text[]) AND sg.deleted_at IS NULL
		   AND NOT EXISTS (SELECT 1 FROM links x WHERE x.system = $2 AND x.link_id = sl.link_id)
		   AND NOT EXISTS (SELECT 1 FROM links x WHERE x.system = $2 AND x.external_id = tg.external_id)
		 ORDER BY sl.link_id, tg.external_id
		ON CONFLICT DO NOTHING`, nameKey("sg.name"), nameKey("tg.name")),
		in.Source, target, in.ScopeIDs, in.Flow, in.RunID); err != nil {
		return fmt.Errorf("adopt same-named groups: %w", err)
	}
	return nil
}

// stageNameClaims fills two temporary tables for one target: name_claims, how many live
// source groups not linked in the target claim each name key there (this flow's in-scope
// groups, and the groups other flows into the same target linked from their sources), and
// name_taken, the name keys of the live, non-archived target groups some link holds.
func stageNameClaims(ctx context.Context, tx planTx, flow, source, target string, scopeIDs []string, deleting bool) error {
	steps := []planStep{
		{"drop_name_claims", `DROP TABLE IF EXISTS name_claims, name_taken`, nil},
		{"name_claims", fmt.Sprintf(`
			CREATE TEMP TABLE name_claims ON COMMIT DROP AS
			SELECT %s AS key, count(*) AS n
			  FROM (SELECT sg.name_key, sl.link_id
			          FROM groups sg
			          JOIN links sl ON sl.system = sg.system AND sl.external_id = sg.external_id
			         WHERE sg.system = $1 AND sg.external_id = ANY($3::text[]) AND sg.deleted_at IS NULL
			        UNION
			        SELECT sg.name_key, sl.link_id
			          FROM flows f
			          JOIN links sl ON sl.system = f.source AND sl.flow = f.name
			          JOIN groups sg ON sg.system = sl.system AND sg.external_id = sl.external_id AND sg.deleted_at IS NULL
			         WHERE f.name <> $4 AND $2 = ANY(f.targets)) c
			 WHERE NOT EXISTS (SELECT 1 FROM links x WHERE x.system = $2 AND x.link_id = c.link_id)
			 GROUP BY 1`, nameKey("c.name")), []any{source, target, scopeIDs, flow}},
		// With deleting, a group this plan deletes (its in-scope source group is gone) does
		// not hold its name: it is deleted before creates are pushed (pushOrder), so a group
		// recreated under the same name is created in the same run.
		{"name_taken", fmt.Sprintf(`
			CREATE TEMP TABLE name_taken ON COMMIT DROP AS
			SELECT DISTINCT %s AS key
			  FROM links tl
			  JOIN groups tg ON tg.system = tl.system AND tg.external_id = tl.external_id
			 WHERE tl.system = $1 AND tg.deleted_at IS NULL AND tg.state <> 'archived'
			   AND NOT ($4 AND NOT coalesce(tg.is_system, false) AND EXISTS (
			       SELECT 1 FROM links sl JOIN groups sg ON sg.system = sl.system AND sg.external_id = sl.external_id
			        WHERE sl.link_id = tl.link_id AND sl.system = $2 AND sg.external_id = ANY($3::text[])
			          AND sg.deleted_at IS NOT NULL))`, nameKey("tg.name")),
			[]any{target, source, scopeIDs, deleting}},
		{"analyze_name_claims", `ANALYZE name_claims`, nil},
		{"analyze_name_taken", `ANALYZE name_taken`, nil},
	}
	if err := tx.steps(ctx, steps); err != nil {
		return fmt.Errorf("stage name claims: %w", err)
	}
	return nil
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
	// IncompleteGroups is how many source groups the plan was told it could not know whole
	// (PlanInput.IncompleteSourceGroups).
	IncompleteGroups int
}

// PlanFlow diffs the desired state (the source's in-scope groups and members) against each
// target's mirror state and stores the result as change rows of the run, all set-based. A
// change the target cannot make is stored skipped/unsupported; a member without a target
// account skipped/no_account.
func (s *Store) PlanFlow(ctx context.Context, in PlanInput) (PlanStats, error) {
	stats := PlanStats{TargetMembers: map[string]int64{}, IncompleteGroups: len(in.IncompleteSourceGroups)}
	err := pgx.BeginFunc(ctx, s.pool, func(ptx pgx.Tx) error {
		if err := s.checkFence(ctx, ptx); err != nil {
			return err
		}
		tx := planTx{Tx: ptx, log: s.logger}
		if err := lockRun(ctx, tx, in.RunID); err != nil {
			return err
		}
		if err := tx.steps(ctx, planSetup); err != nil {
			return err
		}
		if err := stageSource(ctx, tx, in); err != nil {
			return err
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
		return storeChanges(ctx, tx, in.MaxAttempts)
	})
	if err != nil {
		return stats, fmt.Errorf("state: plan flow %q run %d: %w", in.Flow, in.RunID, err)
	}
	return stats, nil
}

// lockRun refuses to plan for a run that does not exist and holds the run row FOR KEY
// SHARE until the plan commits, so it cannot be deleted (or its id changed) meanwhile.
// changes.run_id is not a foreign key (migration 017): its check was one query per
// inserted change; this is the same check and lock, once per plan.
func lockRun(ctx context.Context, tx planTx, runID int64) error {
	var found bool
	err := tx.QueryRow(ctx, `SELECT true FROM runs WHERE id = $1 FOR KEY SHARE`, runID).Scan(&found)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("run %d does not exist", runID)
	case err != nil:
		return fmt.Errorf("lock run %d: %w", runID, err)
	}
	return nil
}

// stageSource stages the desired members of each linked in-scope source group by
// target-side email (plan_src), and the links whose source group is not known whole
// (plan_unsure): named incomplete by the pull, or with a member whose identity did not
// resolve (no inline email and no live account with one); members whose account is
// tombstoned are left out. Stored emails are normalized at ingest, so they are compared
// as they are.
func stageSource(ctx context.Context, tx planTx, in PlanInput) error {
	ovSource, ovTarget := overrideArrays(in.Overrides)
	incomplete := in.IncompleteSourceGroups
	if incomplete == nil {
		incomplete = []string{}
	}
	steps := []planStep{
		// Members without an email are kept apart (keyed by account) so each is reported.
		{"plan_src", `CREATE TEMP TABLE plan_src ON COMMIT DROP AS
			SELECT DISTINCT ON (sl.link_id, k.key)
			       sl.link_id, sg.external_id AS sgid, m.account_id AS source_account_id, k.email
			  FROM groups sg
			  JOIN links sl ON sl.system = sg.system AND sl.external_id = sg.external_id
			  JOIN memberships m ON m.system = sg.system AND m.group_id = sg.external_id
			                    AND m.deleted_at IS NULL AND m.member_type NOT LIKE 'group%'
			  LEFT JOIN accounts a ON a.system = m.system AND a.external_id = m.account_id
			  CROSS JOIN LATERAL (SELECT coalesce(nullif(m.email, ''), a.email, '') AS email) e
			  LEFT JOIN unnest($3::text[], $4::text[]) AS ov(source_email, target_email) ON ov.source_email = e.email
			  CROSS JOIN LATERAL (SELECT coalesce(ov.target_email, e.email) AS email) k0
			  CROSS JOIN LATERAL (SELECT k0.email,
			                             CASE WHEN k0.email = '' THEN 'account:' || m.account_id ELSE k0.email END AS key) k
			 WHERE sg.system = $1 AND sg.external_id = ANY($2::text[]) AND sg.deleted_at IS NULL
			   -- A tombstoned account (deleted or deactivated at the source, InvariantAccountsAreFresh)
			   -- is known not to belong anywhere: not desired, and not an unresolved member either.
			   AND a.deleted_at IS NULL
			 ORDER BY sl.link_id, k.key, m.account_id`, []any{in.Source, in.ScopeIDs, ovSource, ovTarget}},
		{"index_plan_src", `CREATE INDEX ON plan_src (link_id, email)`, nil},
		// Only the columns later steps join on.
		{"analyze_plan_src", `ANALYZE plan_src (link_id, email)`, nil},
		{"plan_unsure", `CREATE TEMP TABLE plan_unsure ON COMMIT DROP AS
			SELECT link_id FROM plan_src WHERE email = ''
			UNION
			SELECT sl.link_id FROM links sl WHERE sl.system = $1 AND sl.external_id = ANY($2::text[])`,
			[]any{in.Source, incomplete}},
		{"analyze_plan_unsure", `ANALYZE plan_unsure`, nil},
	}
	if err := tx.steps(ctx, steps); err != nil {
		return fmt.Errorf("stage source members: %w", err)
	}
	return nil
}

// stagePairs unlinks the archived target groups of live source groups where the target
// cannot restore a group (InvariantArchivedIsNotGone: a new group is created instead, an
// archived one is never taken back by name), then stages plan_pairs (each in-scope source
// group with its linked target group) and plan_tgt (the linked target groups' members).
func stagePairs(ctx context.Context, tx planTx, in PlanInput, t PlanTarget) error {
	if !t.Caps.RestoreGroup {
		if err := tx.step(ctx, "unlink_archived", `
			DELETE FROM links tl USING links sl, groups sg, groups tg
			 WHERE sg.system = $1 AND sg.external_id = ANY($2::text[]) AND sg.deleted_at IS NULL
			   AND sl.system = sg.system AND sl.external_id = sg.external_id
			   AND tl.system = $3 AND tl.link_id = sl.link_id
			   AND tg.system = tl.system AND tg.external_id = tl.external_id
			   AND tg.deleted_at IS NULL AND tg.state = 'archived'`, in.Source, in.ScopeIDs, t.System); err != nil {
			return fmt.Errorf("unlink archived groups: %w", err)
		}
	}
	deleting := in.DeletePolicy == "delete" && t.Caps.DeleteGroup
	if err := stageNameClaims(ctx, tx, in.Flow, in.Source, t.System, in.ScopeIDs, deleting); err != nil {
		return err
	}
	stage := []planStep{
		{"drop_plan_pairs", `DROP TABLE IF EXISTS plan_pairs, plan_tgt`, nil},
		// conflict: the group would be created, but its name key is held by a linked
		// target group or claimed by another source group (InvariantOneLinkPerTargetGroup).
		{"plan_pairs", fmt.Sprintf(`CREATE TEMP TABLE plan_pairs ON COMMIT DROP AS
		SELECT sl.link_id, sg.external_id AS sgid, sg.name, sg.description, sg.visibility,
		       sg.deleted_at IS NOT NULL AS source_gone,
		       tl.external_id AS tgid, tg.name AS tname, tg.description AS tdesc, tg.visibility AS tvis,
		       tg.state AS tstate, coalesce(tg.state = 'archived', false) AS tarchived,
		       coalesce(tg.membership_managed, false) AS managed,
		       coalesce(tg.is_system, false) AS is_system,
		       (tg.external_id IS NOT NULL AND tg.deleted_at IS NULL) AS target_live,
		       (tl.external_id IS NOT NULL AND tg.external_id IS NULL) AS target_unknown,
		       (tl.external_id IS NULL AND (nt.key IS NOT NULL OR coalesce(nc.n, 0) > 1)) AS conflict
		  FROM groups sg
		  JOIN links sl ON sl.system = sg.system AND sl.external_id = sg.external_id
		  LEFT JOIN links tl ON tl.system = $3 AND tl.link_id = sl.link_id
		  LEFT JOIN groups tg ON tg.system = tl.system AND tg.external_id = tl.external_id
		  LEFT JOIN name_taken nt ON nt.key = %[1]s
		  LEFT JOIN name_claims nc ON nc.key = %[1]s
		 WHERE sg.system = $1 AND sg.external_id = ANY($2::text[])`, nameKey("sg.name")),
			[]any{in.Source, in.ScopeIDs, t.System}},
		{"plan_tgt", `CREATE TEMP TABLE plan_tgt ON COMMIT DROP AS
		SELECT p.link_id, m.account_id, coalesce(nullif(m.email, ''), a.email, '') AS email
		  FROM plan_pairs p
		  JOIN memberships m ON m.system = $1 AND m.group_id = p.tgid AND m.deleted_at IS NULL
		                    AND m.member_type NOT LIKE 'group%'
		  LEFT JOIN accounts a ON a.system = m.system AND a.external_id = m.account_id AND a.deleted_at IS NULL
		 WHERE p.target_live AND NOT p.source_gone`, []any{t.System}},
		{"index_plan_tgt", `CREATE INDEX ON plan_tgt (link_id, email)`, nil},
		{"analyze_plan_pairs", `ANALYZE plan_pairs`, nil},
		{"analyze_plan_tgt", `ANALYZE plan_tgt`, nil},
	}
	if err := tx.steps(ctx, stage); err != nil {
		return fmt.Errorf("stage pairs: %w", err)
	}
	return nil
}

// planColumns are the change columns every plan step sets; the rest take their defaults.
const planColumns = `run_id, flow, target_system, operation, link_id, source_system,
	source_group_id, target_group_id, account_email, source_account_id, target_account_id, payload, status, reason,
	last_error`

// planInsert stages one plan step's changes in plan_changes; storeChanges writes them to
// changes once, attempts carried.
const planInsert = `INSERT INTO plan_changes (` + planColumns + `) `

// planSetup prepares a plan transaction. The plan sorts and hashes whole plans: with the
// default 4MB work_mem they spill to disk from about 50k changes. JIT compilation pays
// only for long analytical queries; here it costs a fixed few hundred ms as soon as a
// plan's estimated cost crosses jit_above_cost, which makes big plans dearer per change.
// Both are SET LOCAL: they end with the transaction (nothing relies on session state).
//
// plan_changes stages the run's changes. Its ids and intents come from the same default
// and generated expression as changes' (LIKE … INCLUDING DEFAULTS, GENERATED), so each
// change has the id and intent it would have had written straight to changes: the steps
// write a temporary table (no WAL, no indexes, no foreign key check), and changes gets
// each row once, its carried attempts already in place, instead of an INSERT and then an
// UPDATE that rewrote every carried row.
var planSetup = []planStep{
	{"plan_settings", `SELECT set_config('work_mem', '64MB', true), set_config('jit', 'off', true)`, nil},
	{"plan_changes", `CREATE TEMP TABLE plan_changes (LIKE changes INCLUDING DEFAULTS INCLUDING GENERATED) ON COMMIT DROP`, nil},
}

// planTarget stores one target's changes and returns the number of members its linked
// groups hold (the denominator of the removal percentage).
func planTarget(ctx context.Context, tx planTx, in PlanInput, t PlanTarget) (int64, error) {
	if err := stagePairs(ctx, tx, in, t); err != nil {
		return 0, err
	}
	// Each step's own arguments follow the common four ($1 run, $2 flow, $3 target, $4 source).
	args := []any{in.RunID, in.Flow, t.System, in.Source}
	for _, st := range append(groupSteps(in, t.Caps), memberSteps(in, t.Caps)...) {
		if err := tx.step(ctx, st.name, st.sql, append(append([]any{}, args...), st.args...)...); err != nil {
			return 0, fmt.Errorf("plan %w", err)
		}
	}
	var n int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM plan_tgt`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count target members: %w", err)
	}
	return n, nil
}

// groupSteps plan the group changes: create (or a visible name_conflict), update, restore
// and archive/delete.
func groupSteps(in PlanInput, c connectors.Capabilities) []planStep {
	deleteOp, canDelete := "delete_group", c.DeleteGroup
	if in.DeletePolicy == "archive" {
		deleteOp, canDelete = "archive_group", c.ArchiveGroup
	}
	return []planStep{
		{"create", planInsert + `
			SELECT $1, $2, $3, 'create_group', link_id, $4, sgid, NULL, NULL, NULL, NULL,
			       jsonb_build_object('name', name, 'description', description, 'visibility', visibility),
			       CASE WHEN target_unknown OR NOT $5 THEN 'skipped' WHEN conflict THEN 'failed' ELSE 'planned' END,
			       CASE WHEN target_unknown THEN 'linked_group_missing' WHEN NOT $5 THEN 'unsupported'
			            WHEN conflict THEN 'name_conflict' END,
			       CASE WHEN conflict AND NOT target_unknown AND $5 THEN
			            'name_conflict: another source group or flow claims a target group of this name; link one explicitly (links:) or rename one' END
			  FROM plan_pairs
			 WHERE NOT source_gone AND NOT target_live AND ($6 OR target_unknown)`, []any{c.CreateGroup, in.CreateGroups}},
		{"update", planInsert + `
			SELECT $1, $2, $3, 'update_group', link_id, $4, sgid, tgid, NULL, NULL, NULL,
			       -- A source without a description leaves the target's own in place.
			       jsonb_build_object('name', name,
			                          'description', CASE WHEN description = '' THEN coalesce(tdesc, '') ELSE description END,
			                          'visibility', visibility,
			                          'old_name', tname, 'old_description', tdesc, 'old_visibility', tvis),
			       CASE WHEN NOT $5 OR is_system THEN 'skipped' ELSE 'planned' END,
			       CASE WHEN NOT $5 THEN 'unsupported' WHEN is_system THEN 'system_group' END, NULL
			  FROM plan_pairs
			 WHERE NOT source_gone AND target_live
			   AND (tname IS DISTINCT FROM name
			        OR ($6 AND description <> '' AND tdesc IS DISTINCT FROM description)
			        OR ($7 AND visibility <> ''
			            AND tvis IS DISTINCT FROM CASE WHEN visibility = 'hidden' AND NOT $8 THEN 'private' ELSE visibility END))`,
			[]any{c.UpdateGroup, c.Description, c.Visibility, c.HiddenVisibility}},
		// InvariantArchivedIsNotGone: a live source group brings its archived target back.
		{"restore", planInsert + `
			SELECT $1, $2, $3, 'restore_group', link_id, $4, sgid, tgid, NULL, NULL, NULL,
			       jsonb_build_object('name', name), 'planned', NULL, NULL
			  FROM plan_pairs
			 WHERE NOT source_gone AND target_live AND tarchived AND $5`, []any{c.RestoreGroup}},
		{"delete", planInsert + `
			SELECT $1, $2, $3, $5, link_id, $4, sgid, tgid, NULL, NULL, NULL,
			       jsonb_build_object('name', tname),
			       CASE WHEN NOT $6 OR is_system THEN 'skipped' ELSE 'planned' END,
			       CASE WHEN NOT $6 THEN 'unsupported' WHEN is_system THEN 'system_group' END, NULL
			  FROM plan_pairs
			 WHERE source_gone AND target_live AND $7
			   AND NOT ($5 = 'archive_group' AND tstate = 'archived')`, []any{deleteOp, canDelete, in.DeletePolicy != "never"}},
	}
}

// memberSteps plan the member changes. A removal is planned only on positive knowledge
// (InvariantRemovalsOnlyOnPositiveKnowledge): in a group whose source is not known whole
// (plan_unsure) each would-be removal is stored skipped/source_incomplete, additions go on.
func memberSteps(in PlanInput, c connectors.Capabilities) []planStep {
	canCreate := c.CreateGroup && in.CreateGroups
	// $6: members of a group this run creates are planned too (pointed at it once created).
	const wanted = `NOT p.source_gone AND (p.target_live OR (p.tgid IS NULL AND $6 AND NOT p.conflict))`
	const missing = `NOT EXISTS (SELECT 1 FROM plan_tgt t WHERE t.link_id = s.link_id AND t.email = s.email AND s.email <> '')`
	const extra = `t.email <> '' AND NOT EXISTS (SELECT 1 FROM plan_src s WHERE s.link_id = t.link_id AND s.email = t.email)`
	return []planStep{
		// A member's target account is the first live account with its email. Resolved
		// for the plan's emails as one set, the planner picks a hash join over the
		// target's accounts for a big plan and an index probe per email for a small one,
		// instead of a probe (and a sort) per member whatever the size.
		{"add", planInsert + `
			SELECT $1, $2, $3, 'add_member', s.link_id, $4, s.sgid, p.tgid, s.email, s.source_account_id, ta.external_id,
			       NULL,
			       CASE WHEN s.email = '' OR ta.external_id IS NULL THEN 'skipped' ELSE 'planned' END,
			       CASE WHEN s.email = '' THEN 'no_email' WHEN ta.external_id IS NULL THEN 'no_account' END, NULL
			  FROM plan_src s
			  JOIN plan_pairs p ON p.link_id = s.link_id
			  LEFT JOIN (SELECT a.email, min(a.external_id) AS external_id
			               FROM accounts a
			              WHERE a.system = $3 AND a.deleted_at IS NULL
			                AND a.email IN (SELECT email FROM plan_src WHERE email <> '')
			              GROUP BY a.email) ta ON ta.email = s.email AND s.email <> ''
			 WHERE $5 AND NOT p.managed AND ` + wanted + ` AND ` + missing, []any{c.AddMember, canCreate}},
		// A group-level reason (the target cannot write members at all, or computes this
		// group's membership itself) is one row per group with the member count, not one
		// row per member every run.
		{"add_group_skips", planInsert + `
			SELECT $1, $2, $3, 'add_member', s.link_id, $4, s.sgid, p.tgid, NULL, NULL, NULL,
			       jsonb_build_object('members', count(*)), 'skipped',
			       CASE WHEN NOT $5 THEN 'unsupported' ELSE 'membership_managed' END, NULL
			  FROM plan_src s
			  JOIN plan_pairs p ON p.link_id = s.link_id
			 WHERE (NOT $5 OR p.managed) AND ` + wanted + ` AND ` + missing + `
			 GROUP BY s.link_id, s.sgid, p.tgid, p.managed`, []any{c.AddMember, canCreate}},
		{"remove", planInsert + `
			SELECT $1, $2, $3, 'remove_member', t.link_id, $4, p.sgid, p.tgid, t.email, NULL, t.account_id, NULL,
			       CASE WHEN u.link_id IS NULL THEN 'planned' ELSE 'skipped' END,
			       CASE WHEN u.link_id IS NOT NULL THEN 'source_incomplete' END, NULL
			  FROM plan_tgt t
			  JOIN plan_pairs p ON p.link_id = t.link_id
			  LEFT JOIN plan_unsure u ON u.link_id = t.link_id
			 WHERE $6 AND $5 AND NOT p.managed AND ` + extra, []any{c.RemoveMember, in.Mirror}},
		{"remove_group_skips", planInsert + `
			SELECT $1, $2, $3, 'remove_member', t.link_id, $4, p.sgid, p.tgid, NULL, NULL, NULL,
			       jsonb_build_object('members', count(*)), 'skipped',
			       CASE WHEN NOT $5 THEN 'unsupported' ELSE 'membership_managed' END, NULL
			  FROM plan_tgt t
			  JOIN plan_pairs p ON p.link_id = t.link_id
			 WHERE $6 AND (NOT $5 OR p.managed) AND ` + extra + `
			 GROUP BY t.link_id, p.sgid, p.tgid, p.managed`, []any{c.RemoveMember, in.Mirror}},
	}
}

// storeChanges writes the staged changes to changes, each planned change with the attempts
// of its intent (InvariantAttemptsBelongToAnIntent): those of the intent's latest attempted
// row (failed or applied), when that row failed and belongs to the intent's current
// presence in the flow's pushed plans (change_intents.since_run_id). An intent that left a
// pushed plan, or was applied, starts again at 0; previews' rows were never attempted, so
// they neither reset nor inflate the count. A change that used up its attempts is failed
// for good with reason max_attempts and its last error: reported every run, not retried.
// One index probe per planned change, whatever the flow's history.
//
// The latest attempted row may be one of this run's own (a name_conflict create is failed
// with no attempts, and shadows older rows of its intent): so the changes that are not
// planned go in first, and the planned ones, which look up what precedes them, see them
// exactly as they did when every step wrote straight to changes. Each statement reads
// plan_changes once; the planned rows go in in id order, so the primary key grows at its
// right edge rather than splitting pages all over.
func storeChanges(ctx context.Context, tx planTx, maxAttempts int) error {
	return tx.steps(ctx, []planStep{
		// Row count and status only: enough for the planner to hash change_intents for a
		// big plan (and probe it per change for a small one); the whole table's statistics
		// would cost several times as much.
		{"analyze_plan_changes", `ANALYZE plan_changes (status)`, nil},
		{"store_unplanned", `
		INSERT INTO changes (id, attempts, ` + planColumns + `)
		SELECT id, attempts, ` + planColumns + ` FROM plan_changes WHERE status <> 'planned'`, nil},
		{"store_planned", `
		INSERT INTO changes (id, attempts, ` + planColumns + `)
		SELECT n.id, coalesce(c.attempts, n.attempts),
		       n.run_id, n.flow, n.target_system, n.operation, n.link_id, n.source_system, n.source_group_id,
		       n.target_group_id, n.account_email, n.source_account_id, n.target_account_id, n.payload,
		       CASE WHEN c.attempts >= $1 THEN 'failed' ELSE n.status END,
		       CASE WHEN c.attempts >= $1 THEN 'max_attempts' ELSE n.reason END,
		       CASE WHEN c.attempts IS NULL THEN n.last_error ELSE c.last_error END
		  FROM plan_changes n
		  LEFT JOIN change_intents ci ON ci.flow = n.flow AND ci.intent = n.intent
		  LEFT JOIN LATERAL (SELECT p.attempts, p.last_error
		                       FROM (SELECT p.attempts, p.last_error, p.status, p.run_id
		                               FROM changes p
		                              WHERE ci.intent IS NOT NULL AND p.flow = n.flow AND p.intent = n.intent
		                                AND p.status IN ('failed', 'applied') AND p.id < n.id
		                              ORDER BY p.id DESC LIMIT 1) p
		                      WHERE p.status = 'failed' AND p.attempts > 0 AND p.run_id >= ci.since_run_id) c ON true
		 WHERE n.status = 'planned'
		 ORDER BY n.id`, []any{maxAttempts}},
	})
}

// RecordIntents records that run's plan is being pushed for targets: each of its intents
// is present as of the run (since the run, if it was not present in the flow's previous
// pushed plan), and the intents of those targets that the run no longer plans have left.
// The engine calls it for a run that pushes (after the guard let it through) and for a
// stored plan that apply pushes; previews never call it.
func (s *Store) RecordIntents(ctx context.Context, flow string, runID int64, targets []string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.checkFence(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO change_intents (flow, intent, target_system, since_run_id, seen_run_id)
			SELECT DISTINCT ON (intent) flow, intent, target_system, run_id, run_id
			  FROM changes WHERE run_id = $1 AND target_system = ANY($2::text[])
			 ORDER BY intent
			ON CONFLICT (flow, intent) DO UPDATE
			   SET seen_run_id = greatest(change_intents.seen_run_id, excluded.seen_run_id)`, runID, targets); err != nil {
			return fmt.Errorf("state: record intents of run %d: %w", runID, err)
		}
		if _, err := tx.Exec(ctx, `
			DELETE FROM change_intents WHERE flow = $1 AND target_system = ANY($2::text[]) AND seen_run_id < $3`,
			flow, targets, runID); err != nil {
			return fmt.Errorf("state: retire intents of flow %q: %w", flow, err)
		}
		return nil
	})
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
// is empty) to status with reason. It returns how many moved. A nil ops is "all", like an
// empty one (cardinality of a NULL array is NULL, which would match nothing).
func (s *Store) SetPlannedStatus(ctx context.Context, runID int64, ops []string, status, reason string) (int64, error) {
	if ops == nil {
		ops = []string{}
	}
	tag, err := s.fencedExec(ctx, `
		UPDATE changes SET status = $2, reason = $3, updated_at = now()
		 WHERE run_id = $1 AND status = 'planned'
		   AND (coalesce(cardinality($4::text[]), 0) = 0 OR operation = ANY($4::text[]))`,
		runID, status, reason, ops)
	if err != nil {
		return 0, fmt.Errorf("state: set planned changes of run %d to %s: %w", runID, status, err)
	}
	return tag.RowsAffected(), nil
}

// ReleaseBlocked moves a blocked run's changes back to planned, for apply.
func (s *Store) ReleaseBlocked(ctx context.Context, runID int64) (int64, error) {
	tag, err := s.fencedExec(ctx, `
		UPDATE changes SET status = 'planned', reason = NULL, updated_at = now()
		 WHERE run_id = $1 AND status = 'blocked'`, runID)
	if err != nil {
		return 0, fmt.Errorf("state: release blocked changes of run %d: %w", runID, err)
	}
	return tag.RowsAffected(), nil
}

// PlanDifference is how two runs' actionable changes differ: counts of the items only one
// of them has, and a few of each, described without emails.
type PlanDifference struct {
	OnlyA, OnlyB         int64
	ExamplesA, ExamplesB []string
}

// Empty reports whether the two plans agree item for item.
func (d PlanDifference) Empty() bool { return d.OnlyA == 0 && d.OnlyB == 0 }

// planDiffExamples is how many differing items of each side PlanDiff describes.
const planDiffExamples = 3

// PlanDiff compares the actionable changes (planned or blocked) of two runs item by item,
// payload included (InvariantApplyPushesWhatWasPreviewed): target, operation, groups,
// member (email and target account) and the payload without the target's old values
// (name, description, visibility). A group made private or renamed since the plan is a
// difference. apply uses it to refuse a stored plan that a fresh plan no longer agrees with.
func (s *Store) PlanDiff(ctx context.Context, runA, runB int64) (PlanDifference, error) {
	var d PlanDifference
	rows, err := s.pool.Query(ctx, `
		WITH k AS (
			SELECT run_id, target_system, operation, coalesce(source_group_id, '') AS sg, coalesce(target_group_id, '') AS tg,
			       coalesce(account_email, '') AS email, coalesce(target_account_id, '') AS acct,
			       coalesce(payload - 'old_name' - 'old_description' - 'old_visibility', 'null'::jsonb) AS payload
			  FROM changes WHERE run_id IN ($1, $2) AND status IN ('planned', 'blocked')
		), a AS (SELECT target_system, operation, sg, tg, email, acct, payload FROM k WHERE run_id = $1
		         EXCEPT ALL SELECT target_system, operation, sg, tg, email, acct, payload FROM k WHERE run_id = $2),
		   b AS (SELECT target_system, operation, sg, tg, email, acct, payload FROM k WHERE run_id = $2
		         EXCEPT ALL SELECT target_system, operation, sg, tg, email, acct, payload FROM k WHERE run_id = $1),
		   both_sides AS (SELECT 'a' AS side, * FROM a UNION ALL SELECT 'b', * FROM b),
		   numbered AS (SELECT *, row_number() OVER (PARTITION BY side ORDER BY target_system, operation, sg, acct) AS rn,
		                       count(*) OVER (PARTITION BY side) AS n
		                  FROM both_sides)
		SELECT side, n, target_system, operation, sg, acct, payload::text FROM numbered WHERE rn <= $3
		 ORDER BY side, rn`, runA, runB, planDiffExamples)
	if err != nil {
		return d, fmt.Errorf("state: compare plans of runs %d and %d: %w", runA, runB, err)
	}
	defer rows.Close()
	for rows.Next() {
		var side, target, op, sg, acct, payload string
		var n int64
		if err := rows.Scan(&side, &n, &target, &op, &sg, &acct, &payload); err != nil {
			return d, fmt.Errorf("state: compare plans of runs %d and %d: %w", runA, runB, err)
		}
		item := fmt.Sprintf("%s %s of source group %s", target, op, sg)
		if acct != "" {
			item += " for account " + acct
		}
		if payload != "null" {
			item += " " + payload
		}
		if side == "a" {
			d.OnlyA, d.ExamplesA = n, append(d.ExamplesA, item)
		} else {
			d.OnlyB, d.ExamplesB = n, append(d.ExamplesB, item)
		}
	}
	if err := rows.Err(); err != nil {
		return d, fmt.Errorf("state: compare plans of runs %d and %d: %w", runA, runB, err)
	}
	return d, nil
}
