package socialcast

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
)

// maxSearchPages bounds FindAccountByEmail: the user search is fuzzy, and an exact email
// match is among the first results if it exists at all.
const maxSearchPages = 10

// paginate reads page 1, 2, … of a page/per_page list, handing each page's records to fn,
// until a page comes back shorter than per_page (the only end signal Socialcast gives).
// A page whose bytes repeat an earlier page means the server ignores `page`: that is an
// error, not an endless listing.
func paginate[T any](ctx context.Context, c *conn, path, endpoint string, query url.Values,
	decode func([]byte) ([]T, error), fn func([]T) error) (connectors.Listing, error) {
	// Only the memberships list documents its per_page maximum (500, apis.md §2.3): there a
	// short page is the last. Elsewhere a server capping per_page lower would answer full
	// pages shorter than asked, so the listing ends only on an empty page (one request more),
	// a repeated page being a loop.
	shortEnds := endpoint == endpointMemberships
	var l connectors.Listing
	seen := map[[sha256.Size]byte]int{}
	for page := 1; ; page++ {
		if page > MaxPages {
			return l, c.permanent(endpoint, fmt.Errorf("listing exceeds %d pages of %d", MaxPages, c.pageSize))
		}
		if err := ctx.Err(); err != nil {
			return l, fmt.Errorf("%s: %s: %w", c.name, endpoint, err)
		}
		q := url.Values{}
		for k, v := range query {
			q[k] = v
		}
		q.Set("page", strconv.Itoa(page))
		q.Set("per_page", strconv.Itoa(c.pageSize))
		body, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: http.MethodGet, Path: path, Query: q, Endpoint: endpoint})
		if err != nil {
			return l, err
		}
		l.Pages++
		sum := sha256.Sum256(body)
		if prev, ok := seen[sum]; ok {
			return l, c.permanent(endpoint, fmt.Errorf("page %d repeats page %d: the server ignores paging", page, prev))
		}
		seen[sum] = page
		items, err := decode(body)
		if err != nil {
			return l, c.malformed(endpoint, fmt.Errorf("page %d: %w", page, err))
		}
		if len(items) > 0 {
			if err := fn(items); err != nil {
				return l, err
			}
			l.Items += len(items)
		}
		if len(items) == 0 || (shortEnds && len(items) < c.pageSize) {
			l.Complete = true
			return l, nil
		}
	}
}

func (c *conn) malformed(op string, err error) error {
	return &connectors.Error{System: c.name, Op: op, Class: connectors.ErrPermanent, Message: "malformed response body", Err: err}
}

// ListGroups streams every group, archived ones included (State "archived").
func (c *conn) ListGroups(ctx context.Context, fn func([]connectors.Group) error) (connectors.Listing, error) {
	return paginate(ctx, c, "/api/groups.json", endpointGroupsList, nil, decodeGroupsPage, fn)
}

// ListMembers streams a group's memberships, per_page up to 500.
func (c *conn) ListMembers(ctx context.Context, groupID string, fn func([]connectors.Member) error) (connectors.Listing, error) {
	path, err := groupPath(groupID, "/memberships")
	if err != nil {
		return connectors.Listing{}, c.permanent(endpointMemberships, err)
	}
	decode := func(body []byte) ([]connectors.Member, error) { return decodeMembershipsPage(groupID, body) }
	return paginate(ctx, c, path, endpointMemberships, nil, decode, fn)
}

// ListAccounts streams users. With ids nil it pages the users list. With ids it picks the
// cheaper of two ways, counting requests: fetching each user (one request per id, run
// with bounded concurrency) or paging the users list and keeping the ids asked for (one
// request per 500 users, stopping once all are found). Once a complete listing has shown
// the tenant's size, paging wins when it takes fewer pages than there are ids; before
// that, when more than accounts_by_id_limit ids are asked. Ids that no longer exist are
// skipped either way. Listing.Pages counts requests.
func (c *conn) ListAccounts(ctx context.Context, ids []string, fn func([]connectors.Account) error) (connectors.Listing, error) {
	if ids == nil {
		l, err := paginate(ctx, c, "/api/users.json", endpointUsersList, nil, decodeUsersPage, fn)
		if err == nil && l.Complete {
			c.knownUsers.Store(int64(l.Items))
		}
		return l, err
	}
	want := make([]string, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			want = append(want, id)
		}
	}
	if len(want) == 0 {
		return connectors.Listing{Complete: true}, nil
	}
	if c.pageTheList(len(want)) {
		c.log.DebugContext(ctx, "resolving accounts by paging the users list", "ids", len(want), "known_users", c.knownUsers.Load())
		return c.accountsFromList(ctx, seen, fn)
	}
	c.log.DebugContext(ctx, "resolving accounts one by one", "ids", len(want), "concurrency", c.concurrency)
	return c.accountsByID(ctx, want, fn)
}

func (c *conn) pageTheList(ids int) bool {
	if known := c.knownUsers.Load(); known > 0 {
		pages := known/int64(c.pageSize) + 1 // +1: the short page that ends the list
		return pages < int64(ids)
	}
	return ids > c.byIDLimit
}

func (c *conn) accountsFromList(ctx context.Context, want map[string]bool, fn func([]connectors.Account) error) (connectors.Listing, error) {
	remaining := len(want)
	delivered := 0
	l, err := paginate(ctx, c, "/api/users.json", endpointUsersList, nil, decodeUsersPage, func(page []connectors.Account) error {
		var hits []connectors.Account
		for _, a := range page {
			if want[a.ID] {
				want[a.ID] = false
				remaining--
				hits = append(hits, a)
			}
		}
		if len(hits) > 0 {
			if err := fn(hits); err != nil {
				return err
			}
			delivered += len(hits)
		}
		if remaining == 0 {
			return errStop
		}
		return nil
	})
	switch {
	case errors.Is(err, errStop):
		l.Complete, err = true, nil
	case err == nil && l.Complete:
		c.knownUsers.Store(int64(l.Items))
	}
	l.Items = delivered
	return l, err
}

// accountsByID fetches users one request each, at most c.concurrency at a time, and hands
// them to fn in batches of a page, in the order asked.
func (c *conn) accountsByID(ctx context.Context, ids []string, fn func([]connectors.Account) error) (connectors.Listing, error) {
	var l connectors.Listing
	for start := 0; start < len(ids); start += c.pageSize {
		chunk := ids[start:min(len(ids), start+c.pageSize)]
		accounts, requests, err := c.fetchUsers(ctx, chunk)
		l.Pages += requests
		if err != nil {
			return l, err
		}
		if len(accounts) > 0 {
			if err := fn(accounts); err != nil {
				return l, err
			}
			l.Items += len(accounts)
		}
	}
	l.Complete = true
	return l, nil
}

func (c *conn) fetchUsers(parent context.Context, ids []string) ([]connectors.Account, int, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	results := make([]*connectors.Account, len(ids))
	errs := make([]error, len(ids))
	var requests atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, c.concurrency)
launch:
	for i, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break launch
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			a, err := c.getUser(ctx, id)
			requests.Add(1)
			switch {
			case errors.Is(err, connectors.ErrNotFound):
				// Deleted since it was listed as a member: skipped, as the contract says.
			case err != nil:
				errs[i] = err
				cancel() // one failure ends the batch; the others would be wasted requests
			default:
				results[i] = &a
			}
		}()
	}
	wg.Wait()
	if err := parent.Err(); err != nil {
		return nil, int(requests.Load()), fmt.Errorf("%s: %s: %w", c.name, endpointUserShow, err)
	}
	for _, err := range errs {
		// The first real failure, not the cancellations it caused in its siblings.
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, int(requests.Load()), err
		}
	}
	out := make([]connectors.Account, 0, len(ids))
	for _, a := range results {
		if a != nil {
			out = append(out, *a)
		}
	}
	return out, int(requests.Load()), nil
}

func (c *conn) getUser(ctx context.Context, id string) (connectors.Account, error) {
	if err := checkID(id); err != nil {
		return connectors.Account{}, c.permanent(endpointUserShow, err)
	}
	body, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: http.MethodGet, Path: "/api/users/" + url.PathEscape(id) + ".json", Endpoint: endpointUserShow})
	if err != nil {
		return connectors.Account{}, err
	}
	a, err := decodeUser(body)
	if err != nil {
		return connectors.Account{}, c.malformed(endpointUserShow, err)
	}
	return a, nil
}

// FindAccountByEmail searches users for the email and keeps only an exact (normalized)
// match: the search also matches names and parts of addresses. The search takes one
// spelling, so each form of the key is searched in turn (connectors.EmailForms).
func (c *conn) FindAccountByEmail(ctx context.Context, email string) (connectors.Account, error) {
	email = connectors.NormalizeEmail(email)
	notFound := &connectors.Error{System: c.name, Op: endpointUsersSearch, Class: connectors.ErrNotFound, Message: "no account with this email"}
	if email == "" {
		return connectors.Account{}, notFound
	}
	for _, form := range connectors.EmailForms(email) {
		found, err := c.searchAccount(ctx, email, form)
		if err != nil {
			return connectors.Account{}, err
		}
		if found != nil {
			return *found, nil
		}
	}
	return connectors.Account{}, notFound
}

// searchAccount searches users for one spelling of the email key and returns the account
// whose normalized email is the key, or nil.
func (c *conn) searchAccount(ctx context.Context, email, form string) (*connectors.Account, error) {
	var found *connectors.Account
	pages := 0
	_, err := paginate(ctx, c, "/api/users/search.json", endpointUsersSearch, url.Values{"q": {form}}, decodeUsersPage,
		func(page []connectors.Account) error {
			for i := range page {
				if page[i].Email == email {
					found = &page[i]
					return errStop
				}
			}
			if pages++; pages >= maxSearchPages {
				return errStop
			}
			return nil
		})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	return found, nil
}

// FindGroupByName pages the groups list (Socialcast has no group search) for the name.
// An exact match on an active group wins and ends the search; failing that, an exact
// match on an archived group, then a match on the normalized name (Socialcast refuses a
// name that differs only in case, so adopting that group is what avoids a duplicate).
func (c *conn) FindGroupByName(ctx context.Context, name string) (connectors.Group, error) {
	norm := connectors.NormalizeName(name)
	var best *connectors.Group
	bestRank := 99
	_, err := paginate(ctx, c, "/api/groups.json", endpointGroupsList, nil, decodeGroupsPage, func(page []connectors.Group) error {
		for i := range page {
			g := &page[i]
			rank := 99
			switch {
			case g.Name == name:
				rank = 0
			case connectors.NormalizeName(g.Name) == norm:
				rank = 2
			}
			if g.State == "archived" {
				rank++
			}
			if rank < bestRank {
				best, bestRank = g, rank
			}
			if bestRank == 0 {
				return errStop
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return connectors.Group{}, err
	}
	if best == nil || bestRank >= 99 {
		return connectors.Group{}, &connectors.Error{System: c.name, Op: endpointGroupsList, Class: connectors.ErrNotFound, Message: "no group with this name"}
	}
	return *best, nil
}

// GetGroup reads one group; id may be numeric or the id-slug form.
func (c *conn) GetGroup(ctx context.Context, id string) (connectors.Group, error) {
	path, err := groupPath(id, "")
	if err != nil {
		return connectors.Group{}, c.permanent(endpointGroupShow, err)
	}
	body, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: http.MethodGet, Path: path, Endpoint: endpointGroupShow})
	if err != nil {
		return connectors.Group{}, err
	}
	g, err := decodeGroup(body)
	if err != nil {
		return connectors.Group{}, c.malformed(endpointGroupShow, err)
	}
	return g, nil
}
