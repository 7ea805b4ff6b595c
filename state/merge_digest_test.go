package state_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

// TestMemberDigestHashIsPostgres: the Go side of a member digest hashes exactly as the
// server's hashtextextended, whatever the text's length (every tail of lookup3's 12-byte
// blocks), bytes or seed; otherwise no digest would ever match.
func TestMemberDigestHashIsPostgres(t *testing.T) {
	s := statetest.Store(t)
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("abcXYZ019:@.-_ éü日本🙂")
	var texts []string
	var seeds []int64
	for n := range 60 {
		var b strings.Builder
		for b.Len() < n {
			b.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
		seeds = append(seeds, int64(r.Uint64()|1))
	}
	texts = append(texts, "", "10:usr0012345 4:user 6:member 25:user0012345@example.com")
	seeds = append(seeds, 1, -7)
	rows, err := s.Pool().Query(t.Context(), `SELECT hashtextextended(t, s) FROM unnest($1::text[], $2::bigint[]) AS x(t, s)`, texts, seeds)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for i := 0; rows.Next(); i++ {
		var want int64
		if err := rows.Scan(&want); err != nil {
			t.Fatal(err)
		}
		if got := state.HashMemberText(texts[i], seeds[i]); got != want {
			t.Errorf("hash of %q (%d bytes) with seed %d = %d, Postgres says %d", texts[i], len(texts[i]), seeds[i], got, want)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// digestMember is member i of group g in the digest tests.
func digestMember(g string, i int, role string) connectors.Member {
	return connectors.Member{GroupID: g, AccountID: fmt.Sprintf("u%03d", i), Type: "user", Role: role,
		Email: fmt.Sprintf("u%03d@example.com", i)}
}

// digestListing is members 0..n-1 of groups g0000..g(groups-1), one page per group.
func digestListing(groups, n int) [][]connectors.Member {
	var pages [][]connectors.Member
	for g := range groups {
		var page []connectors.Member
		for i := range n {
			page = append(page, digestMember(fmt.Sprintf("g%04d", g), i, "member"))
		}
		pages = append(pages, page)
	}
	return pages
}

// writePages writes each page, one group's members, and completes its group.
func writePages(t *testing.T, w *state.MembershipMerge, pages [][]connectors.Member) {
	t.Helper()
	for _, p := range pages {
		if err := w.Write(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		w.CompleteGroup(p[0].GroupID)
	}
}

// mergePagesOf merges pages, completing each page's group after it, and returns the counts
// with how many rows the digests left out and how many were staged.
func mergePagesOf(t *testing.T, s *state.Store, pages [][]connectors.Member, between func()) (state.MergeCounts, int64, int64) {
	t.Helper()
	ctx := t.Context()
	w, err := s.BeginMembershipMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Rollback(ctx)
	writePages(t, w, pages)
	if between != nil {
		between()
	}
	c, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	left, staged := state.LeftOut(w)
	return c, left, staged
}

const liveMembersQuery = `SELECT group_id, account_id, member_type, role, email, deleted_at IS NULL
	FROM memberships ORDER BY group_id, account_id`

// A no-op re-merge stages nothing and writes nothing; when a few groups change, only they
// are staged and compared, and the mirror ends as the full compare leaves it.
func TestMemberDigestsLeaveOutUnchangedGroups(t *testing.T) {
	s := newStore(t)
	mergeGroups(t, s, groups(4), true)
	pages := digestListing(4, 5)
	if c, _, _ := mergePagesOf(t, s, pages, nil); c.Inserted != 20 {
		t.Fatalf("first load counts %+v", c)
	}
	before := xid(t, s)
	c, left, staged := mergePagesOf(t, s, pages, nil)
	wantCounts(t, c, state.MergeCounts{Unchanged: 20})
	if left != 20 || staged != 0 {
		t.Fatalf("no-op merge left out %d rows and staged %d, want 20 and 0", left, staged)
	}
	if n := writtenSince(t, s, "memberships", before); n != 0 {
		t.Fatalf("no-op merge wrote %d membership rows", n)
	}

	changed := digestListing(4, 5)
	changed[0][1].Role = "admin"                                  // g0000: an update
	changed[1] = changed[1][:4]                                   // g0001: a member gone
	changed[2] = append(changed[2], digestMember("g0002", 9, "")) // g0002: a member new
	changed[3][0], changed[3][4] = changed[3][4], changed[3][0]   // g0003: the same, reordered
	c, left, staged = mergePagesOf(t, s, changed, nil)
	wantCounts(t, c, state.MergeCounts{Inserted: 1, Updated: 1, Tombstoned: 1, Unchanged: 18})
	if left != 5 || staged != 15 {
		t.Fatalf("merge left out %d rows and staged %d, want 5 (g0003) and 15", left, staged)
	}
	full := newStore(t)
	state.DisableMemberDigests(full)
	mergeGroups(t, full, groups(4), true)
	mergePagesOf(t, full, pages, nil)
	mergePagesOf(t, full, changed, nil)
	q := liveMembersQuery
	sameRows(t, "memberships", dump(t, s, q), dump(t, full, q))
}

// Without a usable TMPDIR there is no fallback file for the left-out groups: the merge
// stages every member, as without digests, and still writes nothing for a no-op.
func TestMemberDigestsWithoutTempDirStageEverything(t *testing.T) {
	s := newStore(t)
	mergeGroups(t, s, groups(4), true)
	pages := digestListing(4, 5)
	if c, _, _ := mergePagesOf(t, s, pages, nil); c.Inserted != 20 {
		t.Fatalf("first load counts %+v", c)
	}
	t.Setenv("TMPDIR", t.TempDir()+"/missing")
	before := xid(t, s)
	c, left, staged := mergePagesOf(t, s, pages, nil)
	wantCounts(t, c, state.MergeCounts{Unchanged: 20})
	if left != 0 || staged != 20 {
		t.Fatalf("no-op merge without TMPDIR left out %d rows and staged %d, want 0 and 20", left, staged)
	}
	if n := writtenSince(t, s, "memberships", before); n != 0 {
		t.Fatalf("no-op merge wrote %d membership rows", n)
	}
}

// When the left-out groups must be compared after all (the mirror changed mid-merge) and
// their fallback file cannot be read back, the merge fails, saying where to look, and
// changes nothing; the next merge completes.
func TestMemberDigestsFailCleanlyWhenTheFallbackFileFails(t *testing.T) {
	s := newStore(t)
	mergeGroups(t, s, groups(4), true)
	pages := digestListing(4, 5)
	mergePagesOf(t, s, pages, nil)
	changed := digestListing(4, 5)
	changed[1] = changed[1][:4]
	if _, err := s.Pool().Exec(t.Context(), `UPDATE memberships SET role = 'admin' WHERE system = $1 AND group_id = 'g0002'`, sys); err != nil {
		t.Fatal(err)
	}

	ctx := t.Context()
	w, err := s.BeginMembershipMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Rollback(ctx)
	writePages(t, w, changed)
	state.BreakDigestFallback(w)
	// g0000 and g0003 are left out; this write makes g0003 differ, so Commit needs their rows.
	if _, err := s.Pool().Exec(ctx, `UPDATE memberships SET role = 'admin' WHERE system = $1 AND group_id = 'g0003' AND account_id = 'u000'`, sys); err != nil {
		t.Fatal(err)
	}
	before := dump(t, s, liveMembersQuery)
	_, err = w.Commit(ctx)
	if err == nil || !strings.Contains(err.Error(), "TMPDIR") {
		t.Fatalf("commit with a broken fallback file: %v, want an error naming TMPDIR", err)
	}
	sameRows(t, "memberships after the failed merge", dump(t, s, liveMembersQuery), before)

	c, _, _ := mergePagesOf(t, s, changed, nil)
	wantCounts(t, c, state.MergeCounts{Updated: 6, Tombstoned: 1, Unchanged: 13})
}

// Whatever changes the mirror while a merge lists (a push, a revert, a person with psql),
// the left-out groups are compared again under the merge lock, and a group that no longer
// matches is merged as the full compare would merge it: the complete listing wins.
func TestMemberDigestsCompareAgainWhenTheMirrorChangesMidMerge(t *testing.T) {
	writes := map[string]string{
		"insert":    `INSERT INTO memberships (system, group_id, account_id, member_type, role, email) VALUES ($1, 'g0001', 'u777', 'user', 'member', '')`,
		"update":    `UPDATE memberships SET role = 'admin' WHERE system = $1 AND group_id = 'g0002' AND account_id = 'u001'`,
		"tombstone": `UPDATE memberships SET deleted_at = now() WHERE system = $1 AND group_id = 'g0000' AND account_id = 'u003'`,
		"delete":    `DELETE FROM memberships WHERE system = $1 AND group_id = 'g0003' AND account_id = 'u000'`,
	}
	for name, sql := range writes {
		t.Run(name, func(t *testing.T) {
			var dumps [][]string
			var counts []state.MergeCounts
			for _, digests := range []bool{true, false} {
				s := newStore(t)
				if !digests {
					state.DisableMemberDigests(s)
				}
				mergeGroups(t, s, groups(4), true)
				pages := digestListing(4, 5)
				mergePagesOf(t, s, pages, nil)
				c, left, _ := mergePagesOf(t, s, pages, func() {
					if _, err := s.Pool().Exec(t.Context(), sql, sys); err != nil {
						t.Fatal(err)
					}
				})
				if left != 0 {
					t.Fatalf("digests=%v: %d rows left out although the mirror changed mid-merge", digests, left)
				}
				dumps, counts = append(dumps, dump(t, s, liveMembersQuery)), append(counts, c)
			}
			wantCounts(t, counts[0], counts[1])
			sameRows(t, "memberships", dumps[0], dumps[1])
			if got := strings.Join(dumps[0], "\n"); strings.Contains(got, "u777 user member  true") ||
				strings.Contains(got, "admin") || strings.Contains(got, "g0000 u003 user member u003@example.com false") {
				t.Fatalf("the listing did not win over the write made mid-merge:\n%s", got)
			}
		})
	}
}

// Members written after their group completed, or twice, put the stream in doubt: the
// left-out groups are merged in full (last occurrence wins, nothing of the late member's
// group tombstoned for being left out).
func TestMemberDigestsDistrustARepeatedOrLateMember(t *testing.T) {
	for _, late := range []connectors.Member{digestMember("g0000", 9, "member"), digestMember("g0000", 1, "admin")} {
		t.Run(late.AccountID+"/"+late.Role, func(t *testing.T) {
			var dumps [][]string
			for _, digests := range []bool{true, false} {
				s := newStore(t)
				if !digests {
					state.DisableMemberDigests(s)
				}
				mergeGroups(t, s, groups(3), true)
				pages := digestListing(3, 4)
				mergePagesOf(t, s, pages, nil)
				ctx := t.Context()
				w, err := s.BeginMembershipMerge(ctx, sys)
				if err != nil {
					t.Fatal(err)
				}
				writePages(t, w, pages)
				if err := w.Write(ctx, []connectors.Member{late}); err != nil {
					t.Fatal(err)
				}
				if _, err := w.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				if left, _ := state.LeftOut(w); left != 0 {
					t.Fatalf("digests=%v: %d rows left out of a stream in doubt", digests, left)
				}
				dumps = append(dumps, dump(t, s, liveMembersQuery))
			}
			sameRows(t, "memberships", dumps[0], dumps[1])
		})
	}
}

// A group too big to hold is staged and compared as before.
func TestMemberDigestsStageWhatTheyCannotHold(t *testing.T) {
	s := newStore(t)
	state.SetDigestHoldBytes(s, 200) // about three members
	mergeGroups(t, s, groups(3), true)
	pages := digestListing(3, 5)
	pages[2] = pages[2][:2]
	mergePagesOf(t, s, pages, nil)
	c, left, staged := mergePagesOf(t, s, pages, nil)
	wantCounts(t, c, state.MergeCounts{Unchanged: 12})
	if left != 2 || staged != 10 {
		t.Fatalf("left out %d rows and staged %d, want 2 (g0002) and 10", left, staged)
	}
}

// A seeded random history of listings (members added, gone, changed, repeated, listed
// after their group completed, of groups the mirror lacks; groups listed in part or not
// at all; pages mixing groups) and of writes made to the mirror mid-merge: after every
// merge, a store with member digests holds exactly what one without holds, with the same
// counts. Failures print the seed.
func TestMemberDigestsMergeAsTheFullCompare(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { digestModel(t, seed, 12) })
	}
}

func digestModel(t *testing.T, seed uint64, steps int) {
	r := rand.New(rand.NewPCG(seed, 99))
	stores := [2]*state.Store{newStore(t), newStore(t)}
	state.DisableMemberDigests(stores[1])
	state.SetDigestHoldBytes(stores[0], 100+r.IntN(2000))
	ids := []string{"g0000", "g0001", "g0002", "g0003", "g0004", "nope"} // nope: no such group
	for _, s := range stores {
		mergeGroups(t, s, groups(5), true)
	}
	remote := map[string]map[int]connectors.Member{}
	for _, g := range ids {
		remote[g] = map[int]connectors.Member{}
		for i := range r.IntN(6) {
			remote[g][i] = digestMember(g, i, "member")
		}
	}
	var leftOut int64
	defer func() {
		if !t.Failed() && leftOut == 0 {
			t.Errorf("seed %d: no merge left a row out: the history did not exercise the digests", seed)
		}
	}()
	for step := range steps {
		mutateRemote(r, remote, ids)
		stream, complete := listRemote(r, remote, ids)
		var mid string
		if r.IntN(3) == 0 {
			mid = midMergeWrite(r, ids)
		}
		var got [2]state.MergeCounts
		for i, s := range stores {
			var left int64
			got[i], left = mergeStream(t, s, stream, complete, mid)
			leftOut += left
		}
		if got[0] != got[1] {
			t.Fatalf("seed %d step %d: counts with digests %+v, without %+v (mid-merge write %q)", seed, step, got[0], got[1], mid)
		}
		a, b := dump(t, stores[0], liveMembersQuery), dump(t, stores[1], liveMembersQuery)
		if strings.Join(a, "\n") != strings.Join(b, "\n") {
			t.Fatalf("seed %d step %d: memberships differ (mid-merge write %q):\nwith digests: %q\nwithout:      %q", seed, step, mid, a, b)
		}
	}
}

// mutateRemote adds, drops and changes a few members, in a few groups.
func mutateRemote(r *rand.Rand, remote map[string]map[int]connectors.Member, ids []string) {
	for range r.IntN(4) {
		g := ids[r.IntN(len(ids))]
		i := r.IntN(8)
		switch m, ok := remote[g][i]; {
		case !ok:
			remote[g][i] = digestMember(g, i, "member")
		case r.IntN(2) == 0:
			delete(remote[g], i)
		default:
			m.Role, m.Email = []string{"member", "admin", "manager"}[r.IntN(3)], fmt.Sprintf("x%d@example.com", r.IntN(3))
			remote[g][i] = m
		}
	}
}

// listRemote is one listing of the remote: each group listed (or not), in order or not,
// whole or cut short, maybe with a repeated or late member; pages mix groups.
func listRemote(r *rand.Rand, remote map[string]map[int]connectors.Member, ids []string) (stream [][]connectors.Member, complete map[int][]string) {
	var rows []connectors.Member
	complete = map[int][]string{} // after which row, which groups complete
	var late []connectors.Member
	for _, g := range slices.Clone(ids) {
		if r.IntN(8) == 0 {
			continue // not listed
		}
		var ms []connectors.Member
		for _, m := range remote[g] {
			ms = append(ms, m)
		}
		slices.SortFunc(ms, func(a, b connectors.Member) int { return strings.Compare(a.AccountID, b.AccountID) })
		r.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
		whole := r.IntN(6) != 0
		if !whole && len(ms) > 0 {
			ms = ms[:r.IntN(len(ms))]
		}
		if len(ms) > 0 && r.IntN(10) == 0 {
			ms = append(ms, ms[r.IntN(len(ms))]) // listed twice
		}
		rows = append(rows, ms...)
		if whole {
			complete[len(rows)] = append(complete[len(rows)], g)
		}
		if len(ms) > 0 && r.IntN(12) == 0 {
			late = append(late, ms[0]) // listed again after its group completed
		}
	}
	rows = append(rows, late...)
	for len(rows) > 0 {
		n := min(len(rows), 1+r.IntN(7))
		stream, rows = append(stream, rows[:n]), rows[n:]
	}
	return stream, complete
}

// midMergeWrite is a write another writer makes to the mirror while a merge lists.
func midMergeWrite(r *rand.Rand, ids []string) string {
	g, a := ids[r.IntN(len(ids)-1)], fmt.Sprintf("u%03d", r.IntN(8))
	where := ` WHERE system = $1 AND group_id = '` + g + `' AND account_id = '` + a + `'`
	return []string{
		`INSERT INTO memberships (system, group_id, account_id, member_type, role, email) VALUES ($1, '` + g + `', '` + a + `', 'user', 'member', '') ON CONFLICT DO NOTHING`,
		`UPDATE memberships SET role = 'admin'` + where,
		`UPDATE memberships SET deleted_at = now()` + where,
		`UPDATE memberships SET deleted_at = NULL` + where,
		`DELETE FROM memberships` + where,
	}[r.IntN(5)]
}

// mergeStream merges one listing, making write mid (if any) between the last Write and
// Commit.
func mergeStream(t *testing.T, s *state.Store, stream [][]connectors.Member, complete map[int][]string, mid string) (state.MergeCounts, int64) {
	t.Helper()
	ctx := t.Context()
	w, err := s.BeginMembershipMerge(ctx, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Rollback(context.WithoutCancel(ctx))
	for _, g := range complete[0] {
		w.CompleteGroup(g) // groups listed with no member, before any row
	}
	row := 0
	for _, p := range stream {
		if err := w.Write(ctx, p); err != nil {
			t.Fatal(err)
		}
		for range p {
			row++
			for _, g := range complete[row] {
				w.CompleteGroup(g)
			}
		}
	}
	if mid != "" {
		if _, err := s.Pool().Exec(ctx, mid, sys); err != nil {
			t.Fatal(err)
		}
	}
	c, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	left, _ := state.LeftOut(w)
	return c, left
}
