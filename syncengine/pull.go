package syncengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/state"
)

// pullState is what the pull learned, for the later steps.
type pullState struct {
	// scopeIDs are the in-scope source groups, live and tombstoned.
	scopeIDs []string
	// sourceErr is set when the source's group listing failed: the run must not push.
	sourceErr error
	// sourceMembersComplete is false when any in-scope group's member listing failed.
	sourceMembersComplete bool
	// sourceIncomplete are the in-scope source groups whose member listing failed or
	// answered 404 this run: no member is removed from their targets.
	sourceIncomplete []string
	sourceListed     int
	// liveTargets are the targets whose group listing succeeded.
	liveTargets []string
	// inline marks systems whose members came with their groups.
	inline map[string]bool
	// narrowed is set for a run of chosen groups (RunOptions.Groups).
	narrowed bool
	// revert is set for a revert's pull: it relies on the targets alone, so the source's
	// accounts and the targets' lookups of source emails are not needed (a source still
	// down after a bad run does not stop its revert).
	revert bool

	mu   sync.Mutex
	errs []error
}

func (p *pullState) fail(err error) {
	p.mu.Lock()
	p.errs = append(p.errs, err)
	p.mu.Unlock()
}

func (p *pullState) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.errs...)
}

// pullAll lists groups from the source and every target at once (each within its own
// rate limit), and the members of the source's in-scope groups.
func (e *Engine) pullAll(ctx context.Context, log *slog.Logger, name string, flow config.Flow, sc *scope, res *Result) (*pullState, error) {
	p := &pullState{inline: map[string]bool{}, sourceMembersComplete: true}
	systems := append([]string{flow.Source}, flow.Targets...)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, sys := range systems {
		sum := &PullSummary{}
		res.Pulls[sys] = sum
		wg.Add(1)
		go func() {
			defer wg.Done()
			isSource := sys == flow.Source
			var want func(connectors.Group) bool
			if isSource {
				want = func(g connectors.Group) bool { return sc.contains(g.ID, g.Name) }
			}
			listed, incomplete, err := e.pullSystem(ctx, log.With("system", sys), sys, want, configuredGroupIDs(flow, sys), sum)
			mu.Lock()
			defer mu.Unlock()
			if isSource {
				p.sourceListed = listed
				p.sourceMembersComplete = err == nil && len(incomplete) == 0
				p.sourceIncomplete = incomplete
				if err != nil {
					p.sourceErr = err
				}
				return
			}
			if err != nil {
				p.fail(fmt.Errorf("target %s not synced: %w", sys, err))
				return
			}
			p.liveTargets = append(p.liveTargets, sys)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Keep the targets in configuration order for stable logs and plans.
	live := map[string]bool{}
	for _, t := range p.liveTargets {
		live[t] = true
	}
	p.liveTargets = p.liveTargets[:0]
	for _, t := range flow.Targets {
		if live[t] {
			p.liveTargets = append(p.liveTargets, t)
		}
	}
	for _, sys := range systems {
		if _, ok := e.o.Connectors[sys].(connectors.InlineMemberLister); ok {
			p.inline[sys] = true
		}
	}
	err := e.o.Store.EachGroup(ctx, flow.Source, func(g state.GroupRef) error {
		if sc.contains(g.ID, g.Name) {
			p.scopeIDs = append(p.scopeIDs, g.ID)
		}
		return nil
	})
	return p, err
}

// configuredGroupIDs are the group ids of sys the flow's configuration names: scope ids on
// the source, explicit links on either side. A listing that leaves one out is asked about
// it (readUnlisted).
func configuredGroupIDs(flow config.Flow, sys string) []string {
	var ids []string
	if sys == flow.Source {
		ids = append(ids, flow.Scope.IDs...)
	}
	for _, l := range flow.Links {
		switch sys {
		case flow.Source:
			ids = append(ids, l.Source)
		case l.TargetSystem:
			ids = append(ids, l.Target)
		}
	}
	return ids
}

// pullSystem streams one system's groups into the mirror and, where want selects them,
// their members. It returns how many groups were listed and the selected groups whose
// member listing was incomplete (completeness is per group). configured are the group ids
// the flow names on sys.
func (e *Engine) pullSystem(ctx context.Context, log *slog.Logger, sys string, want func(connectors.Group) bool,
	configured []string, sum *PullSummary) (int, []string, error) {
	conn := e.o.Connectors[sys]
	cfg := e.o.Config.Systems[sys]
	if err := e.o.Store.UpsertSystem(ctx, sys, string(conn.Kind()), cfg.BaseURL); err != nil {
		return 0, nil, err
	}
	gm, err := e.o.Store.BeginGroupMerge(ctx, sys)
	if err != nil {
		return 0, nil, err
	}
	defer gm.Rollback(context.WithoutCancel(ctx))

	var l groupListing
	var mm *state.MembershipMerge
	if inl, ok := conn.(connectors.InlineMemberLister); ok {
		// Members arrive with their groups: stage both in one pass.
		mm, err = e.o.Store.BeginMembershipMerge(ctx, sys)
		if err != nil {
			return 0, nil, err
		}
		defer mm.Rollback(context.WithoutCancel(ctx))
		l = e.listWithMembers(ctx, sys, inl, gm, mm, want)
	} else {
		l = e.listGroups(ctx, log, sys, conn, gm, want, configured, sum)
	}
	complete := l.err == nil && l.listing.Complete
	sum.Complete = complete
	if l.err != nil {
		sum.Err = l.err.Error()
		log.Warn("group listing incomplete", "error", l.err, "groups_listed", l.listed)
	}
	if sum.Groups, err = gm.Commit(ctx, complete); err != nil {
		return l.listed, nil, err
	}
	if mm != nil {
		if sum.Members, err = mm.Commit(ctx); err != nil {
			return l.listed, nil, err
		}
	}
	if l.err != nil {
		return l.listed, nil, l.err
	}
	incomplete := l.incomplete
	if mm == nil && len(l.wanted) > 0 {
		c, failed, err := e.pullMembers(ctx, log, sys, l.wanted)
		sum.Members = c
		if err != nil {
			return l.listed, nil, err
		}
		incomplete = append(incomplete, failed...)
		ok := len(failed) == 0
		sum.Complete = sum.Complete && ok
	}
	log.Info("pulled", "groups_listed", l.listed, "groups", sum.Groups, "members", sum.Members, "complete", sum.Complete)
	return l.listed, incomplete, nil
}

// groupListing is what a system's group listing staged: how many groups, the in-scope
// groups whose members are still to be listed (wanted), the groups whose members are not
// known this run (incomplete), the connector's listing and the error that ended it.
type groupListing struct {
	listed             int
	wanted, incomplete []string
	listing            connectors.Listing
	err                error
}

// listWithMembers stages the groups of a connector that lists members with their groups,
// and their members, in one pass.
func (e *Engine) listWithMembers(ctx context.Context, sys string, inl connectors.InlineMemberLister,
	gm *state.GroupMerge, mm *state.MembershipMerge, want func(connectors.Group) bool) groupListing {
	var l groupListing
	batch := make([]connectors.Group, 0, 100)
	l.listing, l.err = inl.ListGroupsWithMembers(ctx, func(g connectors.Group, members []connectors.Member, complete bool) error {
		l.listed++
		batch = append(batch, g)
		if len(batch) == cap(batch) {
			if err := gm.Write(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
		if err := mm.Write(ctx, members); err != nil {
			return err
		}
		if complete {
			mm.CompleteGroup(g.ID)
		} else if want != nil && want(g) {
			l.incomplete = append(l.incomplete, g.ID)
		}
		e.progress(ctx, sys, "groups", 1, 1)
		return nil
	})
	if len(batch) > 0 && l.err == nil {
		l.err = gm.Write(ctx, batch)
	}
	// Listed but unreadable groups are incomplete, whatever the scope says of them:
	// their names are not known this run (InvariantCompletenessIsPerGroupAndKind).
	l.incomplete = append(l.incomplete, l.listing.Unreadable...)
	return l
}

// listGroups stages the groups of a connector whose members are listed group by group
// afterwards, then the in-scope groups its listing does not show (UnlistedReader).
func (e *Engine) listGroups(ctx context.Context, log *slog.Logger, sys string, conn connectors.Connector,
	gm *state.GroupMerge, want func(connectors.Group) bool, configured []string, sum *PullSummary) groupListing {
	var l groupListing
	seen := map[string]bool{}
	stage := func(page []connectors.Group) error {
		l.listed += len(page)
		if err := gm.Write(ctx, page); err != nil {
			return err
		}
		for _, g := range page {
			seen[g.ID] = true
			if want != nil && want(g) {
				l.wanted = append(l.wanted, g.ID)
			}
		}
		e.progress(ctx, sys, "groups", 1, len(page))
		return nil
	}
	l.listing, l.err = conn.ListGroups(ctx, stage)
	if ur, ok := conn.(connectors.UnlistedReader); ok && l.err == nil && l.listing.Complete {
		var unreadable []string
		unreadable, l.err = e.readUnlisted(ctx, log, sys, ur, seen, configured, stage, sum)
		// A group that exists but could not be read is neither gone nor known: nothing
		// of the system is tombstoned this run (its listing is not whole), and no member
		// is removed through it.
		l.listing.Complete = l.err == nil && len(unreadable) == 0
		l.incomplete = append(l.incomplete, unreadable...)
	}
	return l
}

// readUnlisted asks a connector whose listing can leave out groups that exist (SelfCommunity
// hides hidden groups from its search) about the groups the mirror holds live, and those the
// configuration names, that its complete listing did not return: the ones it reads by id
// are staged as listed (stage), so a hidden group is never taken as deleted; the ones it
// cannot read are returned, reported in sum and the log with the connector's reason.
func (e *Engine) readUnlisted(ctx context.Context, log *slog.Logger, sys string, ur connectors.UnlistedReader,
	seen map[string]bool, configured []string, stage func([]connectors.Group) error, sum *PullSummary) ([]string, error) {
	var expected []connectors.ExpectedGroup
	known := map[string]bool{}
	err := e.o.Store.EachGroup(ctx, sys, func(g state.GroupRef) error {
		known[g.ID] = true
		if !g.Deleted && !seen[g.ID] {
			expected = append(expected, connectors.ExpectedGroup{ID: g.ID, Visibility: g.Visibility})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, id := range configured {
		if !seen[id] && !known[id] {
			known[id] = true
			expected = append(expected, connectors.ExpectedGroup{ID: id})
		}
	}
	if len(expected) == 0 {
		return nil, nil
	}
	l, err := ur.ReadUnlisted(ctx, expected, stage)
	if err != nil {
		return nil, fmt.Errorf("groups the listing left out: %w", err)
	}
	if len(l.Unreadable) > 0 {
		sum.Unreadable = l.UnreadableReasons
		if sum.Unreadable == nil {
			sum.Unreadable = map[string]string{}
		}
		for _, id := range l.Unreadable {
			if sum.Unreadable[id] == "" {
				sum.Unreadable[id] = "exists but could not be read"
			}
		}
		log.Warn("groups left out of the listing and unreadable by id: kept in the mirror, nothing tombstoned, no removals through them",
			"groups", l.Unreadable)
	}
	if l.Items > 0 {
		log.Info("groups left out of the listing read by id", "groups", l.Items)
	}
	return l.Unreadable, nil
}

// pullMembers streams the members of the given groups into the mirror with a few listings
// in flight. A group whose listing fails, or answers 404 (deleted meanwhile, or a route
// or permission problem the listing cannot tell apart), keeps its mirror rows (not marked
// complete) and is returned among the incomplete groups: completeness is per group, and
// no member is removed on the strength of a listing that was not read whole.
func (e *Engine) pullMembers(ctx context.Context, log *slog.Logger, sys string, groupIDs []string) (state.MergeCounts, []string, error) {
	conn := e.o.Connectors[sys]
	mm, err := e.o.Store.BeginMembershipMerge(ctx, sys)
	if err != nil {
		return state.MergeCounts{}, nil, err
	}
	defer mm.Rollback(context.WithoutCancel(ctx))
	var (
		mu       sync.Mutex
		failed   []string
		firstErr error
		fatal    error
	)
	eachParallel(ctx, e.o.Workers, groupIDs, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return fatal != nil
	}, func(id string) {
		l, err := conn.ListMembers(ctx, id, func(page []connectors.Member) error {
			mu.Lock()
			defer mu.Unlock()
			if fatal != nil {
				return fatal
			}
			e.progress(ctx, sys, "members", 1, len(page))
			return mm.Write(ctx, page)
		})
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil && l.Complete:
			mm.CompleteGroup(id)
		case errors.Is(err, connectors.ErrNotFound):
			// Deleted between the group listing and now (the next listing tombstones it) or
			// not readable: either way this run does not know its members.
			failed = append(failed, id)
		case errors.Is(err, connectors.ErrUnauthorized) || errors.Is(err, state.ErrInvalidRecord):
			if fatal == nil {
				fatal = err
			}
		default:
			failed = append(failed, id)
			if firstErr == nil {
				firstErr = err
			}
		}
	})
	if fatal != nil {
		return state.MergeCounts{}, nil, fatal
	}
	if err := ctx.Err(); err != nil {
		return state.MergeCounts{}, nil, err
	}
	counts, err := mm.Commit(ctx)
	if err != nil {
		return counts, nil, err
	}
	if len(failed) > 0 {
		log.Warn("member listings incomplete; their groups keep their mirror rows and no removal is planned there",
			"groups_incomplete", len(failed), "error", firstErr)
	}
	return counts, failed, nil
}

// pullTargetsAndAccounts pulls the members of every target's linked groups, then makes
// the accounts the plan relies on fresh (InvariantAccountsAreFresh): the source's members'
// accounts first, then on each target the accounts of its linked groups' members and those
// the source's emails match, then each target's accounts for emails it does not know yet.
func (e *Engine) pullTargetsAndAccounts(ctx context.Context, log *slog.Logger, flow config.Flow, p *pullState,
	overrides map[string]string, res *Result) error {
	var wg sync.WaitGroup
	live := append([]string{}, p.liveTargets...)
	dropped := make(chan string, len(live))
	linked := make(map[string][]string, len(live))
	var mu sync.Mutex
	for _, t := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids, err := e.o.Store.LinkedGroupIDs(ctx, flow.Source, t, p.scopeIDs)
			if err == nil && len(ids) > 0 && !p.inline[t] {
				var c state.MergeCounts
				var failed []string
				c, failed, err = e.pullMembers(ctx, log.With("system", t), t, ids)
				res.Pulls[t].Members = c
				res.Pulls[t].Complete = res.Pulls[t].Complete && len(failed) == 0
			}
			if err != nil {
				p.fail(fmt.Errorf("target %s not synced: members: %w", t, err))
				dropped <- t
				return
			}
			mu.Lock()
			linked[t] = ids
			mu.Unlock()
		}()
	}
	if !p.revert {
		e.refreshSourceAccounts(ctx, log.With("system", flow.Source), flow.Source, p, res.Pulls[flow.Source])
	}
	wg.Wait()
	close(dropped)
	for t := range dropped {
		p.liveTargets = slices.DeleteFunc(p.liveTargets, func(lt string) bool { return lt == t })
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p.liveTargets = slices.DeleteFunc(p.liveTargets, func(t string) bool {
		return !e.freshTargetAccounts(ctx, log.With("system", t), flow.Source, t, linked[t], p, overrides, res.Pulls[t])
	})
	return ctx.Err()
}

// freshTargetAccounts re-reads the target's accounts the plan relies on, then looks up
// the source's emails it does not know yet. A target whose accounts could not be re-read
// is not synced this run (false): its stale rows may map an address to a deleted account
// or to someone else, and a plan built on them would add or remove the wrong person.
// A failed lookup of unknown emails only leaves those adds unresolved (no_account).
func (e *Engine) freshTargetAccounts(ctx context.Context, log *slog.Logger, source, t string, linked []string,
	p *pullState, overrides map[string]string, sum *PullSummary) bool {
	q := state.StaleAccounts{System: t, GroupIDs: linked, MatchSource: source, MatchScopeIDs: p.scopeIDs,
		Overrides: overrides, MaxAge: e.accountMaxAge()}
	if err := e.refreshAccounts(ctx, log, q, sum); err != nil {
		p.fail(fmt.Errorf("target %s not synced: accounts: %w", t, err))
		return false
	}
	if p.revert {
		return true
	}
	if err := e.findTargetAccounts(ctx, log, source, t, p, overrides, sum); err != nil {
		p.fail(fmt.Errorf("target %s: account lookup: %w", t, err))
	}
	return true
}

// refreshSourceAccounts re-reads the source accounts the plan relies on. When that fails,
// the groups whose members' accounts stayed stale are not known whole: they join the
// incomplete groups, so nobody is removed from their targets on an outdated identity
// (InvariantRemovalsOnlyOnPositiveKnowledge); additions go on.
func (e *Engine) refreshSourceAccounts(ctx context.Context, log *slog.Logger, source string, p *pullState, sum *PullSummary) {
	maxAge := e.accountMaxAge()
	err := e.refreshAccounts(ctx, log, state.StaleAccounts{System: source, GroupIDs: p.scopeIDs, MaxAge: maxAge}, sum)
	if err == nil {
		return
	}
	p.fail(fmt.Errorf("source %s: accounts: %w", source, err))
	groups, gerr := e.o.Store.GroupsWithStaleAccounts(context.WithoutCancel(ctx), source, p.scopeIDs, maxAge)
	if gerr != nil {
		p.fail(fmt.Errorf("source %s: accounts: %w", source, gerr))
		groups = p.scopeIDs // what is stale is unknown: nothing is known whole
	}
	log.Warn("source accounts could not be re-read: no member is removed from the groups relying on them",
		"groups", len(groups), "error", err)
	p.mu.Lock()
	p.sourceIncomplete = append(p.sourceIncomplete, groups...)
	p.mu.Unlock()
}

// accountMaxAge is accounts.max_age, defaulted for configurations built without Load.
func (e *Engine) accountMaxAge() time.Duration {
	return positiveOr(e.o.Config.Accounts.MaxAge, config.DefaultAccountMaxAge)
}

// lookupMissTTL is accounts.lookup_miss_ttl, defaulted for configurations built without Load.
func (e *Engine) lookupMissTTL() time.Duration {
	return positiveOr(e.o.Config.Accounts.LookupMissTTL, config.DefaultLookupMissTTL)
}

func positiveOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// accountBatch is how many stale accounts one re-read asks for: bounded memory, and one
// short transaction to record them.
const accountBatch = 1000

// allMissingFloor: a re-read of at least this many ids, or a lookup of this many emails, of
// which the system has none is taken as a misrouted or misconfigured API (every lookup
// answering 404), not as that many missing accounts: it tombstones and remembers nothing.
const allMissingFloor = 10

// noneExist reports whether missing of asked looks like a misconfigured API (allMissingFloor).
func noneExist(missing, asked int) bool { return missing == asked && asked >= allMissingFloor }

// refreshAccounts re-reads by id, in batches, the accounts of q that are stale, and records
// what the system returned (state.RecordAccounts: the ids it no longer returns, and
// inactive accounts, are tombstoned).
func (e *Engine) refreshAccounts(ctx context.Context, log *slog.Logger, q state.StaleAccounts, sum *PullSummary) error {
	conn := e.o.Connectors[q.System]
	asked, after := 0, ""
	for {
		ids, err := e.o.Store.StaleAccountIDs(ctx, q, after, accountBatch)
		if err != nil || len(ids) == 0 {
			if asked > 0 {
				log.Debug("re-read stale accounts", "accounts", asked, "counts", sum.Accounts)
			}
			return err
		}
		after, asked = ids[len(ids)-1], asked+len(ids)
		var found []connectors.Account
		l, err := conn.ListAccounts(ctx, ids, func(page []connectors.Account) error {
			e.progress(ctx, q.System, "accounts", 1, len(page))
			found = append(found, page...)
			return nil
		})
		var missing []string
		if err == nil && l.Complete {
			missing = missingIDs(ids, found)
			if noneExist(len(missing), len(ids)) {
				return fmt.Errorf("none of the %d accounts asked for by id exists: refusing to take them all as deleted "+
					"(check the system's base_url and credentials)", len(ids))
			}
		}
		c, rerr := e.o.Store.RecordAccounts(ctx, q.System, found, missing)
		sum.Accounts = addCounts(sum.Accounts, c)
		if err = errors.Join(err, rerr); err != nil {
			return err
		}
		if !l.Complete {
			return fmt.Errorf("account lookup by id ended early (%d of %d returned)", len(found), len(ids))
		}
	}
}

// missingIDs returns the ids no account in found has.
func missingIDs(ids []string, found []connectors.Account) []string {
	got := make(map[string]bool, len(found))
	for _, a := range found {
		got[a.ID] = true
	}
	var missing []string
	for _, id := range ids {
		if !got[id] {
			missing = append(missing, id)
		}
	}
	return missing
}

// findTargetAccounts looks up, by email, target accounts for source members the target's
// mirror has no live account for. Emails not found stay unmatched (planned as no_account)
// and are recorded as misses: they are not asked for again within accounts.lookup_miss_ttl,
// except by a run of chosen groups, which an operator starts to have them asked now.
func (e *Engine) findTargetAccounts(ctx context.Context, log *slog.Logger, source, target string, p *pullState,
	overrides map[string]string, sum *PullSummary) error {
	ttl := e.lookupMissTTL()
	skipMissed := ttl
	if p.narrowed {
		skipMissed = 0
	}
	emails, err := e.o.Store.EmailsMissingInTarget(ctx, source, p.scopeIDs, target, overrides, skipMissed)
	if err != nil || len(emails) == 0 {
		return err
	}
	conn := e.o.Connectors[target]
	var (
		mu       sync.Mutex
		found    []connectors.Account
		missed   []string
		n        int
		fatal    error
		writeErr error
	)
	flush := func() {
		c, err := e.o.Store.RecordAccounts(ctx, target, found, nil)
		sum.Accounts = addCounts(sum.Accounts, c)
		if err != nil && writeErr == nil {
			writeErr = err
		}
		found = found[:0]
	}
	eachParallel(ctx, e.o.Workers, emails, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return fatal != nil || writeErr != nil
	}, func(email string) {
		a, err := conn.FindAccountByEmail(ctx, email)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			n++
			if found = append(found, a); len(found) >= accountBatch {
				flush()
			}
		case errors.Is(err, connectors.ErrNotFound):
			missed = append(missed, email)
		default:
			if fatal == nil {
				fatal = err
			}
		}
	})
	flush()
	if noneExist(len(missed), len(emails)) {
		// Not one of them: more likely a wrong base_url or token than nobody having an
		// account, and remembering it would hold the adds back for a TTL after the fix.
		log.Warn("the target has none of the emails asked for; not remembering the misses (check its base_url and credentials)",
			"emails", len(emails))
		missed = nil
	}
	if writeErr == nil {
		writeErr = e.o.Store.RecordAccountMisses(ctx, target, missed, ttl)
	}
	log.Debug("looked up accounts by email", "emails", len(emails), "found", n, "missed", len(missed))
	return errors.Join(writeErr, fatal)
}

func addCounts(a, b state.MergeCounts) state.MergeCounts {
	a.Inserted += b.Inserted
	a.Updated += b.Updated
	a.Unchanged += b.Unchanged
	a.Tombstoned += b.Tombstoned
	a.Revived += b.Revived
	a.Orphaned += b.Orphaned
	return a
}

func (e *Engine) progress(ctx context.Context, sys, kind string, pages, items int) {
	if e.o.Progress != nil {
		e.o.Progress.Pulled(ctx, sys, kind, pages, items)
	}
}

// eachParallel calls fn for each item with at most n calls in flight, and stops handing out
// items once stop reports true or ctx ends. It returns when every started call returned.
func eachParallel[T any](ctx context.Context, n int, items []T, stop func() bool, fn func(T)) {
	work := make(chan T)
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				fn(it)
			}
		}()
	}
	for _, it := range items {
		if stop() || ctx.Err() != nil {
			break
		}
		work <- it
	}
	close(work)
	wg.Wait()
}
