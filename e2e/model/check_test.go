package model

import (
	"slices"
	"sort"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/simkit"
)

// check compares every target with the model after the runs settled, then the mirror's
// links and the last runs' changes.
func (w *world) check(step int) {
	for _, tn := range targetNames {
		w.checkTarget(step, w.m.targets[tn])
	}
	w.checkLinks(step)
	w.checkChanges(step)
}

// snapshotByID is a target simulator's groups by id.
func (w *world) snapshotByID(t string) map[string]simkit.GroupState {
	out := map[string]simkit.GroupState{}
	for _, g := range w.org.Systems[t].Sim.Snapshot() {
		out[g.ID] = g
	}
	return out
}

// checkTarget checks one target: every group the model knows is there (none lost, none
// deleted that the policy keeps), a source group's target group has its name and members,
// and no other group exists (no duplicate, by normalized name or otherwise).
func (w *world) checkTarget(step int, t *targetModel) {
	snap := w.snapshotByID(t.name)
	known := map[string]bool{}
	for _, tg := range t.groups {
		if tg.id != "" {
			known[tg.id] = true
		}
	}
	for _, tg := range t.groups {
		if tg.id == "" && !w.learnID(step, t, tg, snap, known) {
			continue
		}
		g, ok := snap[tg.id]
		switch {
		case !ok:
			w.errorf(step, "%s: group %s (%q) is gone; the model keeps it (owner %s)", t.name, tg.id, tg.name, ownerName(tg))
			continue
		case g.Archived != tg.archived:
			w.errorf(step, "%s: group %q archived=%v, want %v", t.name, tg.name, g.Archived, tg.archived)
		}
		if o := tg.owner; o != nil && o.live {
			if g.Name != o.name {
				w.errorf(step, "%s: group %s is named %+q, want %+q (source group %s)", t.name, tg.id, g.Name, o.name, o.id)
			}
			w.checkMembers(step, t.name, o, g)
		}
	}
	byKey := map[string][]string{}
	for id, g := range snap {
		if !known[id] {
			w.errorf(step, "%s: unexpected group %s %+q (duplicate or lost link)", t.name, id, g.Name)
		}
		if !g.Archived {
			byKey[key(g.Name)] = append(byKey[key(g.Name)], id)
		}
	}
	for k, ids := range byKey {
		if len(ids) > 1 {
			w.errorf(step, "%s: %d live groups share the normalized name %q: %v", t.name, len(ids), k, ids)
		}
	}
}

func ownerName(tg *tgroup) string {
	if tg.owner == nil {
		return "none"
	}
	return tg.owner.flow.name + "/" + tg.owner.id
}

// learnID finds a group the model expects to have been created: the one live group of
// that name the model does not know yet.
func (w *world) learnID(step int, t *targetModel, tg *tgroup, snap map[string]simkit.GroupState, known map[string]bool) bool {
	var ids []string
	for id, g := range snap {
		if !known[id] && !g.Archived && key(g.Name) == key(tg.name) {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		w.errorf(step, "%s: %d new groups named %+q, want 1 (for %s)", t.name, len(ids), tg.name, ownerName(tg))
		return false
	}
	tg.id, known[ids[0]] = ids[0], true
	return true
}

// checkMembers compares a target group's members with its source group under the flow's
// membership mode, for the people whose membership the model knows.
func (w *world) checkMembers(step int, t string, g *sgroup, tg simkit.GroupState) {
	got := map[string]bool{}
	for _, e := range tg.MemberEmails {
		k := w.m.person(t, e)
		if k == "" {
			w.errorf(step, "%s: group %q holds %+q, whom the model does not know", t, g.name, e)
			continue
		}
		if w.m.rereadEveryRun && w.m.accounts[t][k].state == acctDeleted {
			// Every simulator takes a deleted account out of its groups, so this add was
			// the engine's, through an account it should have re-read and tombstoned.
			w.errorf(step, "%s: group %q holds %+q, whose account was deleted", t, g.name, e)
		}
		got[k] = true
	}
	want := w.m.desired(g, t)
	var missing, extra []string
	for _, k := range w.m.keys {
		if !w.m.care(g.flow, t, k) {
			continue
		}
		switch {
		case want[k] && !got[k]:
			missing = append(missing, k)
		case got[k] && !want[k] && g.flow.membership == config.MembershipMirror:
			extra = append(extra, k)
		}
	}
	if len(missing)+len(extra) > 0 {
		w.errorf(step, "%s: group %q (%s, %s): missing %v, extra %v; the last run's changes for them: %v",
			t, g.name, g.flow.name, g.flow.membership, missing, extra, w.memberChanges(g, t, append(missing, extra...)))
	}
}

// memberChanges describes the member changes of the flow's last run for these people in
// one group and target: what the engine decided about them, for the failure message.
func (w *world) memberChanges(g *sgroup, t string, people []string) []string {
	rows, err := w.store.Pool().Query(w.t.Context(), `
		SELECT operation || ' ' || coalesce(account_email, '') || ' ' || status || coalesce(' (' || reason || ')', '') ||
		       coalesce(': ' || last_error, '')
		  FROM changes
		 WHERE run_id = (SELECT max(id) FROM runs WHERE flow = $1) AND target_system = $2
		   AND source_group_id = $3 AND account_email = ANY($4::text[])
		 ORDER BY 1`, g.flow.name, t, g.id, people)
	if err != nil {
		return []string{err.Error()}
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return []string{err.Error()}
		}
		out = append(out, s)
	}
	return out
}

// memberSnapshot is, per target and target group id, who is a member now.
func (w *world) memberSnapshot() map[string]map[string]map[string]bool {
	out := map[string]map[string]map[string]bool{}
	for _, tn := range targetNames {
		out[tn] = map[string]map[string]bool{}
		for id, g := range w.snapshotByID(tn) {
			out[tn][id] = map[string]bool{}
			for _, e := range g.MemberEmails {
				if k := w.m.person(tn, e); k != "" {
					out[tn][id][k] = true
				}
			}
		}
	}
	return out
}

// checkKept checks, after a run with faults, that no member the model keeps was removed:
// whoever was in a source group's target group and still belongs there (mirror), or was
// there at all (add_only), still is.
func (w *world) checkKept(step int, before map[string]map[string]map[string]bool) {
	after := w.memberSnapshot()
	for _, tn := range targetNames {
		for _, tg := range w.m.targets[tn].groups {
			g := tg.owner
			if tg.id == "" || g == nil || !g.live {
				continue
			}
			want := w.m.desired(g, tn)
			for k := range before[tn][tg.id] {
				keep := want[k] || (g.flow.membership == config.MembershipAddOnly && w.m.accounts[tn][k].state == acctLive)
				if keep && !after[tn][tg.id][k] {
					w.errorf(step, "%s: a run with faults removed %s from %q, whom the model keeps", tn, k, g.name)
				}
			}
		}
	}
}

// checkLinks checks the mirror's links table: no link holds two groups of one system, no
// group is in two links, and each source group's link holds exactly the target group the
// model says stands for it (none for a name conflict).
func (w *world) checkLinks(step int) {
	ctx, db := w.t.Context(), w.store.Pool()
	var bad int
	if err := db.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM (SELECT 1 FROM links GROUP BY link_id, system HAVING count(*) > 1) a)
		     + (SELECT count(*) FROM (SELECT 1 FROM links GROUP BY system, external_id HAVING count(*) > 1) b)`).Scan(&bad); err != nil {
		w.t.Fatalf("seed %d: links: %v", w.seed, err)
	}
	if bad != 0 {
		w.errorf(step, "links: %d links hold two groups of one system or groups in two links", bad)
	}
	for _, f := range w.m.flows {
		for _, g := range f.sortedGroups() {
			if !g.live {
				continue
			}
			for _, tn := range f.targets {
				want := ""
				if tg := w.m.targets[tn].owned(g); tg != nil {
					want = tg.id
				}
				got := w.linkedTarget(f.source, g.id, tn)
				if !slices.Equal(got, nonEmpty(want)) {
					w.errorf(step, "links: %s group %q is linked to %s groups %v, want %v", f.source, g.name, tn, got, nonEmpty(want))
				}
			}
		}
	}
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// linkedTarget returns the target group ids in the link of a source group.
func (w *world) linkedTarget(source, id, target string) []string {
	rows, err := w.store.Pool().Query(w.t.Context(), `
		SELECT tl.external_id FROM links sl JOIN links tl ON tl.link_id = sl.link_id AND tl.system = $3
		 WHERE sl.system = $1 AND sl.external_id = $2 ORDER BY 1`, source, id, target)
	if err != nil {
		w.t.Fatalf("seed %d: links: %v", w.seed, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			w.t.Fatalf("seed %d: links: %v", w.seed, err)
		}
		out = append(out, s)
	}
	return out
}

// checkChanges checks the latest run of each flow: nothing failed or was given up except
// the name conflicts the model predicts, each of which is visible as a failed
// create_group with reason name_conflict; nothing was skipped for an incomplete source.
func (w *world) checkChanges(step int) {
	rows, err := w.store.Pool().Query(w.t.Context(), `
		SELECT c.flow, c.target_system, c.operation, coalesce(c.source_group_id, ''), c.status, coalesce(c.reason, ''),
		       coalesce(c.last_error, '')
		  FROM changes c
		 WHERE c.run_id IN (SELECT max(id) FROM runs GROUP BY flow)
		   AND (c.status = 'failed' OR c.reason = 'source_incomplete')
		 ORDER BY 1, 2, 3, 4`)
	if err != nil {
		w.t.Fatalf("seed %d: changes: %v", w.seed, err)
	}
	defer rows.Close()
	seen := map[[2]string]bool{}
	for rows.Next() {
		var flow, target, op, sgid, status, reason, lastErr string
		if err := rows.Scan(&flow, &target, &op, &sgid, &status, &reason, &lastErr); err != nil {
			w.t.Fatalf("seed %d: changes: %v", w.seed, err)
		}
		g := w.m.flow(flow).groups[sgid]
		t := w.m.targets[target]
		if op == "create_group" && reason == "name_conflict" && g != nil && t.conflicts[g] {
			seen[[2]string{target, sgid}] = true
			continue
		}
		if g != nil && t.stuck[g] && (op == "add_member" || op == "create_group") {
			continue // the known gap of an archived group holding the name (see stuck)
		}
		w.errorf(step, "%s: %s %s of %s group %s is %s (%s) after a fault-free run: %s", flow, target, op, w.m.flow(flow).source, sgid, status, reason, lastErr)
	}
	if err := rows.Err(); err != nil {
		w.t.Fatalf("seed %d: changes: %v", w.seed, err)
	}
	for _, tn := range targetNames {
		var missing []string
		for g := range w.m.targets[tn].conflicts {
			if !seen[[2]string{tn, g.id}] {
				missing = append(missing, g.flow.name+" "+g.name)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			w.errorf(step, "%s: no visible name_conflict for %v, which the model predicts", tn, missing)
		}
	}
}

// targetAccountID is the id of a person's account in a target, or "" if it has none.
func (w *world) targetAccountID(t, k string) string {
	a := w.m.accounts[t][k]
	if a.state != acctLive {
		return ""
	}
	acc, err := w.conns[t].FindAccountByEmail(w.t.Context(), connectors.NormalizeEmail(a.email))
	if err != nil {
		return ""
	}
	return acc.ID
}
