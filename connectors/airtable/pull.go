package airtable

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/connectors/scim/scimclient"
)

// enterprisePath is the enterprise account's meta path.
func (c *conn) enterprisePath() string {
	return "/v0/meta/enterpriseAccounts/" + url.PathEscape(c.enterprise)
}

// getEnterprise reads the enterprise account: the ids of every group and user.
func (c *conn) getEnterprise(ctx context.Context) (enterpriseJSON, error) {
	body, _, err := c.meta.DoRaw(ctx, apiclient.Request{Method: "GET", Path: c.enterprisePath(), Endpoint: epEnterprise})
	if err != nil {
		return enterpriseJSON{}, err
	}
	e, err := decodeEnterprise(body)
	if err != nil {
		return enterpriseJSON{}, c.badBody(epEnterprise, err)
	}
	return e, nil
}

// fetchGroup reads one group with its members through the meta API.
func (c *conn) fetchGroup(ctx context.Context, id string) (connectors.Group, []connectors.Member, error) {
	if id == "" {
		return connectors.Group{}, nil, &connectors.Error{System: c.name, Op: epGroup, Class: connectors.ErrPermanent, Message: "empty group id"}
	}
	body, _, err := c.meta.DoRaw(ctx, apiclient.Request{Method: "GET", Path: "/v0/meta/groups/" + url.PathEscape(id), Endpoint: epGroup})
	if err != nil {
		return connectors.Group{}, nil, err
	}
	g, ms, err := decodeMetaGroup(body)
	if err != nil {
		return connectors.Group{}, nil, c.badBody(epGroup, err)
	}
	if g.ID != id {
		return connectors.Group{}, nil, c.badBody(epGroup, fmt.Errorf("asked for group %s, got %s", id, g.ID))
	}
	return g, ms, nil
}

// GetGroup reads one group; ErrNotFound if it does not exist.
func (c *conn) GetGroup(ctx context.Context, id string) (connectors.Group, error) {
	g, _, err := c.fetchGroup(ctx, id)
	return g, err
}

// ListMembers streams one group's members. The meta API returns them whole with the
// group, so this is one request and one callback.
func (c *conn) ListMembers(ctx context.Context, groupID string, fn func([]connectors.Member) error) (connectors.Listing, error) {
	_, ms, err := c.fetchGroup(ctx, groupID)
	if err != nil {
		return connectors.Listing{}, err
	}
	l := connectors.Listing{Pages: 1}
	for start := 0; start < len(ms); start += c.pageSize {
		page := ms[start:min(start+c.pageSize, len(ms))]
		if err := fn(page); err != nil {
			return l, err
		}
		l.Items += len(page)
	}
	l.Complete = true
	return l, nil
}

// ListGroups streams every group of the enterprise in pages of up to pageSize groups. It
// costs one request for the group ids plus one per group (members come along and are
// dropped); the engine should prefer ListGroupsWithMembers, which costs the same and also
// yields the members.
func (c *conn) ListGroups(ctx context.Context, fn func([]connectors.Group) error) (connectors.Listing, error) {
	page := make([]connectors.Group, 0, c.pageSize)
	items := 0
	l, err := c.eachGroup(ctx, func(g connectors.Group, _ []connectors.Member) error {
		page = append(page, g)
		if len(page) < c.pageSize {
			return nil
		}
		if err := fn(page); err != nil {
			return err
		}
		items += len(page)
		page = page[:0]
		return nil
	})
	if err == nil && len(page) > 0 {
		if err = fn(page); err == nil {
			items += len(page)
		}
	}
	l.Items = items
	if err != nil {
		l.Complete = false
		return l, err
	}
	return l, nil
}

// ListGroupsWithMembers streams every group with its whole member list, one callback per
// group (the meta API never cuts a member list, so complete is always true).
func (c *conn) ListGroupsWithMembers(ctx context.Context, fn func(g connectors.Group, members []connectors.Member, complete bool) error) (connectors.Listing, error) {
	items := 0
	l, err := c.eachGroup(ctx, func(g connectors.Group, ms []connectors.Member) error {
		if err := fn(g, ms, true); err != nil {
			return err
		}
		items++
		return nil
	})
	l.Items = items
	return l, err
}

type groupResult struct {
	id      string
	group   connectors.Group
	members []connectors.Member
	err     error
}

// eachGroup reads the enterprise's group ids, fetches the groups concurrently and hands
// each to deliver from the calling goroutine, so deliver is never called concurrently.
// Listing.Pages counts the responses read. A listed group that cannot be read (404: deleted
// meanwhile, or a route problem; 403 INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND once another
// group was read: the token may not see that one) is not taken as gone: it goes to Listing.Unreadable and the listing is not
// complete, so the mirror keeps it and its targets lose nobody this run.
func (c *conn) eachGroup(ctx context.Context, deliver func(connectors.Group, []connectors.Member) error) (connectors.Listing, error) {
	ent, err := c.getEnterprise(ctx)
	if err != nil {
		return connectors.Listing{}, err
	}
	gl := &groupListing{c: c, deliver: deliver}
	gl.l.Pages++
	ids := c.uniqueGroupIDs(ctx, ent.GroupIDs)
	if len(ids) == 0 {
		gl.l.Complete = true
		return gl.l, nil
	}

	// The first group is fetched alone: when the API is down, throttling or refusing the
	// token, that costs one request's retries instead of one per worker.
	g, ms, err := c.fetchGroup(ctx, ids[0])
	if err := gl.handle(ctx, groupResult{id: ids[0], group: g, members: ms, err: err}); err != nil {
		return gl.l, err
	}
	if rest := ids[1:]; len(rest) > 0 {
		err := c.fetchGroups(ctx, rest, func(r groupResult) error { return gl.handle(ctx, r) })
		if err != nil {
			return gl.l, err
		}
	}
	return allUnreadable(gl.l, len(ids), gl.lastUnreadable)
}

// uniqueGroupIDs returns the listed group ids once each, in listed order, and warns when
// the enterprise listed any more than once.
func (c *conn) uniqueGroupIDs(ctx context.Context, listed []apiclient.ID) []string {
	ids := make([]string, 0, len(listed))
	seen := make(map[apiclient.ID]bool, len(listed))
	for _, id := range listed {
		if seen[id] {
			continue
		}
		seen[id] = true
		ids = append(ids, string(id))
	}
	if dup := len(listed) - len(ids); dup > 0 {
		c.log.WarnContext(ctx, "enterprise listed group ids more than once", "duplicates", dup)
	}
	return ids
}

// groupListing is one eachGroup run: the listing so far, and what handle needs to tell a
// group it may not read from a token that reads nothing.
type groupListing struct {
	c              *conn
	deliver        func(connectors.Group, []connectors.Member) error
	l              connectors.Listing
	read           int   // groups read and delivered so far
	lastUnreadable error // the last fetch error taken as its group's alone
}

// handle takes one fetch result: it delivers the group, records it as unreadable, or
// returns the error that fails the listing.
func (gl *groupListing) handle(ctx context.Context, r groupResult) error {
	if r.err != nil {
		// A 403 before any group was read is the token's, not the group's: it fails the
		// listing at once instead of costing one refused request per group.
		if unreadable(r.err) && (gl.read > 0 || errors.Is(r.err, connectors.ErrNotFound)) {
			gl.lastUnreadable = r.err
			gl.c.log.WarnContext(ctx, "listed group could not be read: kept as it was, no removals from its targets",
				"group_id", r.id, "error", r.err)
			gl.l.Pages++
			gl.l.Unreadable = append(gl.l.Unreadable, r.id)
			return nil
		}
		return r.err
	}
	gl.l.Pages++
	gl.read++
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: list groups: %w", gl.c.name, err)
	}
	return gl.deliver(r.group, r.members)
}

// fetchGroups fetches ids on up to c.concurrency workers and hands each result to handle
// from the calling goroutine. The first error handle returns stops the fetches and is
// returned; so is the caller's giving up.
func (c *conn) fetchGroups(ctx context.Context, ids []string, handle func(groupResult) error) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var firstErr error
	for r := range c.startGroupFetches(wctx, ids) {
		if firstErr != nil {
			continue // drain so every worker can finish
		}
		if err := handle(r); err != nil {
			firstErr = err
			cancel()
		}
	}
	if firstErr == nil {
		if err := ctx.Err(); err != nil {
			// Workers stopped early because the caller gave up.
			firstErr = fmt.Errorf("%s: list groups: %w", c.name, err)
		}
	}
	return firstErr
}

// startGroupFetches starts the workers fetching ids and returns their results, closed
// once every worker has stopped (all ids fetched, or ctx done).
func (c *conn) startGroupFetches(ctx context.Context, ids []string) <-chan groupResult {
	jobs := make(chan string)
	// Unbuffered: a worker holds at most one fetched group while deliver runs, so memory
	// stays at about one group per worker however large the enterprise is.
	results := make(chan groupResult)
	var wg sync.WaitGroup
	for range min(c.concurrency, len(ids)) {
		wg.Go(func() {
			for id := range jobs {
				g, ms, err := c.fetchGroup(ctx, id)
				select {
				case results <- groupResult{id: id, group: g, members: ms, err: err}:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	go func() {
		defer close(jobs)
		for _, id := range ids {
			select {
			case jobs <- id:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()
	return results
}

// usersPath is the users-by-id-or-email path.
func (c *conn) usersPath() string { return c.enterprisePath() + "/users" }

// lookupUsers runs one users-by-id-or-email request.
func (c *conn) lookupUsers(ctx context.Context, key string, values []string) ([]connectors.Account, error) {
	body, _, err := c.meta.DoRaw(ctx, apiclient.Request{
		Method: "GET", Path: c.usersPath(), Query: url.Values{key: values}, Endpoint: epUsers,
	})
	if err != nil {
		return nil, err
	}
	accs, err := decodeUsers(body)
	if err != nil {
		return nil, c.badBody(epUsers, err)
	}
	return accs, nil
}

// ListAccounts resolves accounts through the meta users endpoint, pageSize ids per request.
// With ids nil it lists the enterprise's userIds first, so both forms return the same
// record shape (and the same hashes) for the mirror. Ids that no longer exist are skipped.
func (c *conn) ListAccounts(ctx context.Context, ids []string, fn func([]connectors.Account) error) (connectors.Listing, error) {
	var l connectors.Listing
	if ids == nil {
		ent, err := c.getEnterprise(ctx)
		if err != nil {
			return l, err
		}
		l.Pages++
		ids = make([]string, len(ent.UserIDs))
		for i, id := range ent.UserIDs {
			ids[i] = string(id)
		}
	}
	want := make(map[string]bool, len(ids))
	uniq := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" && !want[id] {
			want[id] = true
			uniq = append(uniq, id)
		}
	}
	for start := 0; start < len(uniq); start += c.pageSize {
		batch := uniq[start:min(start+c.pageSize, len(uniq))]
		accs, err := c.lookupUsers(ctx, "id[]", batch)
		if err != nil {
			return l, err
		}
		l.Pages++
		// Keep only what was asked, once: the endpoint matches ids and emails alike.
		page := accs[:0]
		for _, a := range accs {
			if want[a.ID] {
				want[a.ID] = false
				page = append(page, a)
			}
		}
		if len(page) == 0 {
			continue
		}
		if err := fn(page); err != nil {
			return l, err
		}
		l.Items += len(page)
	}
	l.Complete = true
	return l, nil
}

// FindAccountByEmail looks an account up through the meta users endpoint (email[]).
func (c *conn) FindAccountByEmail(ctx context.Context, email string) (connectors.Account, error) {
	email = connectors.NormalizeEmail(email)
	if email == "" {
		return connectors.Account{}, &connectors.Error{System: c.name, Op: epUsers, Class: connectors.ErrPermanent, Message: "empty email"}
	}
	accs, err := c.lookupUsers(ctx, "email[]", connectors.EmailForms(email))
	if err != nil {
		return connectors.Account{}, err
	}
	for _, a := range accs {
		if a.Email == email {
			return a, nil
		}
	}
	return connectors.Account{}, &connectors.Error{System: c.name, Op: epUsers, Class: connectors.ErrNotFound, Message: "no account with that email"}
}

// FindGroupByName looks the name up with SCIM's displayName filter (the meta API cannot
// search), keeps an exact match only (SCIM compares displayName case-insensitively), and
// reads the group through the meta API so it has the shape and hash a listing gives.
func (c *conn) FindGroupByName(ctx context.Context, name string) (connectors.Group, error) {
	body, _, err := c.scim.DoRaw(ctx, apiclient.Request{
		Method: "GET", Path: c.scimPath("/Groups"), Endpoint: epSCIMList,
		Query: url.Values{"filter": {`displayName eq ` + scimclient.FilterString(name)}},
	})
	if err != nil {
		return connectors.Group{}, err
	}
	gs, err := decodeSCIMGroupList(body)
	if err != nil {
		return connectors.Group{}, c.badBody(epSCIMList, err)
	}
	// The exact name wins; else a name with the same key (connectors.NormalizeName), the
	// key the planner adopts by, whatever the SCIM filter's own matching rule is.
	key, loose := connectors.NormalizeName(name), ""
	for _, g := range gs {
		switch {
		case g.DisplayName == nil:
		case *g.DisplayName == name:
			return c.GetGroup(ctx, string(g.ID))
		case loose == "" && connectors.NormalizeName(*g.DisplayName) == key:
			loose = string(g.ID)
		}
	}
	if loose != "" {
		return c.GetGroup(ctx, loose)
	}
	return connectors.Group{}, &connectors.Error{System: c.name, Op: epSCIMList, Class: connectors.ErrNotFound, Message: "no group with that name"}
}

// unreadable reports a group fetch that failed for that group alone: a 404, or Airtable's
// 403 INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND (which it also answers for a model it will not
// show). A 401, or a 403 of another type, is about the token and fails the listing.
func unreadable(err error) bool {
	var e *connectors.Error
	if !errors.As(err, &e) {
		return false
	}
	return errors.Is(err, connectors.ErrNotFound) || (e.Status == 403 && e.Type == "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND")
}

// allUnreadable ends a listing of n groups: complete when every one was read; failed with
// the last refusal when none could be (that is the token or the route, not n groups).
func allUnreadable(l connectors.Listing, n int, last error) (connectors.Listing, error) {
	if len(l.Unreadable) == n && last != nil {
		return l, last
	}
	l.Complete = len(l.Unreadable) == 0
	return l, nil
}
