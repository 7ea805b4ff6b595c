package devrev

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/groupsync/groupsync/connectors"
)

// Request bodies, field names as in the spec's *-request schemas. Only the fields the
// connector uses are declared; `mode: after` is sent explicitly so a change of DevRev's
// default cannot reverse a listing.
type listParams struct {
	Cursor string `json:"cursor,omitempty"`
	Limit  int    `json:"limit,omitempty"`
	Mode   string `json:"mode,omitempty"`
}

type groupsListRequest struct {
	listParams
	GroupType []string `json:"group_type,omitempty"`
	Name      []string `json:"name,omitempty"`
}

type membersListRequest struct {
	listParams
	Group string `json:"group"`
}

type devUsersListRequest struct {
	listParams
	Email []string `json:"email,omitempty"`
}

type idRequest struct {
	ID string `json:"id"`
}

func (c *conn) params(cursor string) listParams {
	return listParams{Cursor: cursor, Limit: c.pageSize, Mode: "after"}
}

// pageInfo is what a page handler reports: the next cursor (nil on the last page), the
// records it passed on, and the span of record ids it held (first and last), which tells a
// repeated page.
type pageInfo struct {
	next *string
	n    int
	span string
}

// spanOf is the span of a decoded page; empty pages have none.
func spanOf[T any](items []T, id func(T) string) string {
	if len(items) == 0 {
		return ""
	}
	return id(items[0]) + "\x00" + id(items[len(items)-1])
}

func groupRecID(r groupRecord) string       { return r.ID }
func memberID(m connectors.Member) string   { return m.AccountID }
func accountID(a connectors.Account) string { return a.ID }

// errStop ends a listing early from inside a page handler (a lookup found its record).
var errStop = errors.New("stop listing")

// paginate walks a cursor listing: body builds the request for a cursor, page decodes one
// response, hands its records on and returns the next cursor (nil on the last page) and the
// number of records. A repeated cursor, a page holding the same records as the one before,
// or more than MaxPages pages fails the listing rather than looping; any failure leaves
// Complete false.
func (c *conn) paginate(ctx context.Context, endpoint string, body func(cursor string) any,
	page func(data []byte) (pageInfo, error)) (connectors.Listing, error) {
	var l connectors.Listing
	seen := map[string]struct{}{}
	cursor, lastSpan := "", ""
	for {
		if l.Pages >= MaxPages {
			return l, &connectors.Error{System: c.name, Op: endpoint, Class: connectors.ErrPermanent,
				Message: fmt.Sprintf("listing exceeds %d pages; refusing to continue", MaxPages)}
		}
		data, err := c.post(ctx, endpoint, body(cursor), true)
		if err != nil {
			return l, err
		}
		l.Pages++
		info, err := page(data)
		l.Items += info.n
		if err != nil {
			return l, err
		}
		next := info.next
		// A server that ignores the cursor hands out fresh cursors for the same records.
		if info.span != "" && info.span == lastSpan {
			return l, &connectors.Error{System: c.name, Op: endpoint, Class: connectors.ErrPermanent,
				Message: fmt.Sprintf("page %d repeats the records of the page before; stopping to avoid a loop", l.Pages)}
		}
		lastSpan = info.span
		// The spec says the last page omits next_cursor; an empty one is read the same way,
		// since sending it back would restart the listing from the top.
		if next == nil || *next == "" {
			l.Complete = true
			return l, nil
		}
		if _, dup := seen[*next]; dup || *next == cursor {
			return l, &connectors.Error{System: c.name, Op: endpoint, Class: connectors.ErrPermanent,
				Message: fmt.Sprintf("server repeated a pagination cursor after page %d; stopping to avoid a loop", l.Pages)}
		}
		seen[*next] = struct{}{}
		cursor = *next
	}
}

// dynamicGroups returns the ids of the tenant's dynamic groups. DevRev's `group` object
// does not carry its type, but groups.list filters on it; dynamic groups are few, so the
// set is small.
func (c *conn) dynamicGroups(ctx context.Context) (map[string]struct{}, connectors.Listing, error) {
	ids := map[string]struct{}{}
	l, err := c.paginate(ctx, epGroupsList, func(cursor string) any {
		return groupsListRequest{listParams: c.params(cursor), GroupType: []string{"dynamic"}}
	}, func(data []byte) (pageInfo, error) {
		recs, next, err := decodeGroupsPage(data)
		if err != nil {
			return pageInfo{}, c.malformed(epGroupsList, err)
		}
		for _, r := range recs {
			ids[r.ID] = struct{}{}
		}
		if len(ids) > MaxDynamicGroups {
			return pageInfo{}, &connectors.Error{System: c.name, Op: epGroupsList, Class: connectors.ErrPermanent,
				Message: fmt.Sprintf("more than %d dynamic groups", MaxDynamicGroups)}
		}
		return pageInfo{next: next, n: len(recs), span: spanOf(recs, groupRecID)}, nil
	})
	if err != nil {
		return nil, l, fmt.Errorf("listing dynamic groups: %w", err)
	}
	return ids, l, nil
}

// ListGroups streams every group. It first lists the dynamic groups (one request unless
// there are more than a page of them) so each group's MembershipManaged is right.
func (c *conn) ListGroups(ctx context.Context, fn func([]connectors.Group) error) (connectors.Listing, error) {
	dynamic, probe, err := c.dynamicGroups(ctx)
	if err != nil {
		return connectors.Listing{Pages: probe.Pages}, err
	}
	l, err := c.paginate(ctx, epGroupsList, func(cursor string) any {
		return groupsListRequest{listParams: c.params(cursor)}
	}, func(data []byte) (pageInfo, error) {
		recs, next, err := decodeGroupsPage(data)
		if err != nil {
			return pageInfo{}, c.malformed(epGroupsList, err)
		}
		if len(recs) == 0 {
			return pageInfo{next: next}, nil
		}
		groups := make([]connectors.Group, len(recs))
		for i, r := range recs {
			groups[i] = r.Group
			if !r.typeKnown {
				_, groups[i].MembershipManaged = dynamic[r.ID]
			}
		}
		if err := fn(groups); err != nil {
			return pageInfo{}, err
		}
		return pageInfo{next: next, n: len(groups), span: spanOf(recs, groupRecID)}, nil
	})
	l.Pages += probe.Pages
	return l, err
}

// ListMembers streams the members of one group: dev users (Type "user"), rev and sys users
// ("user:rev_user", "user:sys_user") and nested groups ("group"), with the email DevRev
// returns inline.
func (c *conn) ListMembers(ctx context.Context, groupID string, fn func([]connectors.Member) error) (connectors.Listing, error) {
	if groupID == "" {
		return connectors.Listing{}, fmt.Errorf("%s: list members: empty group id", c.name)
	}
	return c.paginate(ctx, epMembersList, func(cursor string) any {
		return membersListRequest{listParams: c.params(cursor), Group: groupID}
	}, func(data []byte) (pageInfo, error) {
		members, next, err := decodeMembersPage(groupID, data)
		if err != nil {
			return pageInfo{}, c.malformed(epMembersList, err)
		}
		if len(members) > 0 {
			if err := fn(members); err != nil {
				return pageInfo{}, err
			}
		}
		return pageInfo{next: next, n: len(members), span: spanOf(members, memberID)}, nil
	})
}

// ListAccounts streams dev users. With ids nil it lists every dev user (rev users are
// customers, an unbounded population, and are not listed). With ids, dev-users.list has no
// id filter, so a few ids are fetched one by one with dev-users.get and many are found by
// one full listing filtered here; rev user ids are fetched with rev-users.get. Ids that no
// longer exist are skipped.
func (c *conn) ListAccounts(ctx context.Context, ids []string, fn func([]connectors.Account) error) (connectors.Listing, error) {
	if ids == nil {
		return c.listDevUsers(ctx, nil, fn)
	}
	var devIDs, revIDs []string
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; dup || id == "" {
			continue
		}
		seen[id] = struct{}{}
		if isRevUser(id) {
			revIDs = append(revIDs, id)
		} else {
			devIDs = append(devIDs, id)
		}
	}
	var l connectors.Listing
	if len(devIDs) > byIDLookupMax {
		want := make(map[string]struct{}, len(devIDs))
		for _, id := range devIDs {
			want[id] = struct{}{}
		}
		dl, err := c.listDevUsers(ctx, want, fn)
		l.Pages, l.Items = dl.Pages, dl.Items
		if err != nil {
			return l, err
		}
		devIDs = nil
	}
	for _, id := range devIDs {
		if err := c.getUser(ctx, epDevUsersGet, "dev_user", id, &l, fn); err != nil {
			return l, err
		}
	}
	for _, id := range revIDs {
		if err := c.getUser(ctx, epRevUsersGet, "rev_user", id, &l, fn); err != nil {
			return l, err
		}
	}
	l.Complete = true
	return l, nil
}

func (c *conn) getUser(ctx context.Context, endpoint, key, id string, l *connectors.Listing, fn func([]connectors.Account) error) error {
	data, err := c.post(ctx, endpoint, idRequest{ID: id}, true)
	l.Pages++
	if notFoundBody(err) {
		c.log.DebugContext(ctx, "account no longer exists", "account_id", id)
		return nil
	}
	if err != nil {
		return err
	}
	a, err := decodeUserEnvelope(key, data)
	if err != nil {
		return c.malformed(endpoint, err)
	}
	l.Items++
	return fn([]connectors.Account{a})
}

// listDevUsers lists every dev user, passing on those in want (all when want is nil).
func (c *conn) listDevUsers(ctx context.Context, want map[string]struct{}, fn func([]connectors.Account) error) (connectors.Listing, error) {
	return c.paginate(ctx, epDevUsersList, func(cursor string) any {
		return devUsersListRequest{listParams: c.params(cursor)}
	}, func(data []byte) (pageInfo, error) {
		accounts, next, err := decodeDevUsersPage(data)
		if err != nil {
			return pageInfo{}, c.malformed(epDevUsersList, err)
		}
		pageSpan := spanOf(accounts, accountID)
		if want != nil {
			kept := accounts[:0]
			for _, a := range accounts {
				if _, ok := want[a.ID]; ok {
					kept = append(kept, a)
				}
			}
			accounts = kept
		}
		if len(accounts) > 0 {
			if err := fn(accounts); err != nil {
				return pageInfo{}, err
			}
		}
		return pageInfo{next: next, n: len(accounts), span: pageSpan}, nil
	})
}

// isRevUser tells a rev user id (DON `…:revo/<o>:revu/<n>` or display id REVU-…) from a
// dev user id.
func isRevUser(id string) bool {
	return strings.Contains(id, ":revu/") || strings.HasPrefix(id, "REVU-")
}

// FindAccountByEmail finds a dev user through dev-users.list's email filter.
func (c *conn) FindAccountByEmail(ctx context.Context, email string) (connectors.Account, error) {
	email = connectors.NormalizeEmail(email)
	if email == "" {
		return connectors.Account{}, fmt.Errorf("%s: find account: empty email", c.name)
	}
	var found *connectors.Account
	_, err := c.paginate(ctx, epDevUsersList, func(cursor string) any {
		return devUsersListRequest{listParams: c.params(cursor), Email: connectors.EmailForms(email)}
	}, func(data []byte) (pageInfo, error) {
		accounts, next, err := decodeDevUsersPage(data)
		if err != nil {
			return pageInfo{}, c.malformed(epDevUsersList, err)
		}
		for i := range accounts {
			if accounts[i].Email == email {
				found = &accounts[i]
				return pageInfo{n: len(accounts)}, errStop
			}
		}
		return pageInfo{next: next, n: len(accounts), span: spanOf(accounts, accountID)}, nil
	})
	if found != nil {
		return *found, nil
	}
	if err != nil {
		return connectors.Account{}, fmt.Errorf("find account by email: %w", err)
	}
	return connectors.Account{}, &connectors.Error{System: c.name, Op: epDevUsersList, Class: connectors.ErrNotFound,
		Message: "no dev user with that email"}
}

// FindGroupByName finds a group by exact name through groups.list's name filter (whether
// DevRev matches names exactly is not documented, so the match is checked here).
func (c *conn) FindGroupByName(ctx context.Context, name string) (connectors.Group, error) {
	if name == "" {
		return connectors.Group{}, fmt.Errorf("%s: find group: empty name", c.name)
	}
	// The exact name wins; else a name with the same key (connectors.NormalizeName), the
	// key the planner adopts by, whatever the API's name filter matches.
	var found, loose *groupRecord
	key := connectors.NormalizeName(name)
	_, err := c.paginate(ctx, epGroupsList, func(cursor string) any {
		return groupsListRequest{listParams: c.params(cursor), Name: []string{name}}
	}, func(data []byte) (pageInfo, error) {
		recs, next, err := decodeGroupsPage(data)
		if err != nil {
			return pageInfo{}, c.malformed(epGroupsList, err)
		}
		for i := range recs {
			switch {
			case recs[i].Name == name:
				found = &recs[i]
				return pageInfo{n: len(recs)}, errStop
			case loose == nil && connectors.NormalizeName(recs[i].Name) == key:
				loose = &recs[i]
			}
		}
		return pageInfo{next: next, n: len(recs), span: spanOf(recs, groupRecID)}, nil
	})
	if found == nil && (err == nil || errors.Is(err, errStop)) {
		found = loose
	}
	if found == nil {
		if err != nil {
			return connectors.Group{}, fmt.Errorf("find group by name: %w", err)
		}
		return connectors.Group{}, &connectors.Error{System: c.name, Op: epGroupsList, Class: connectors.ErrNotFound,
			Message: "no group with that name"}
	}
	return c.withType(ctx, *found)
}

// GetGroup reads one group with groups.get.
func (c *conn) GetGroup(ctx context.Context, id string) (connectors.Group, error) {
	if id == "" {
		return connectors.Group{}, fmt.Errorf("%s: get group: empty id", c.name)
	}
	data, err := c.post(ctx, epGroupsGet, idRequest{ID: id}, true)
	if err != nil {
		return connectors.Group{}, err
	}
	rec, err := decodeGroupEnvelope(data)
	if err != nil {
		return connectors.Group{}, c.malformed(epGroupsGet, err)
	}
	return c.withType(ctx, rec)
}

// withType settles MembershipManaged for one group whose record did not say its type, with
// a groups.list filtered on its name and group_type dynamic.
func (c *conn) withType(ctx context.Context, rec groupRecord) (connectors.Group, error) {
	if rec.typeKnown {
		return rec.Group, nil
	}
	g := rec.Group
	if g.Name == "" {
		dynamic, _, err := c.dynamicGroups(ctx)
		if err != nil {
			return connectors.Group{}, err
		}
		_, g.MembershipManaged = dynamic[g.ID]
		return g, nil
	}
	_, err := c.paginate(ctx, epGroupsList, func(cursor string) any {
		return groupsListRequest{listParams: c.params(cursor), Name: []string{g.Name}, GroupType: []string{"dynamic"}}
	}, func(data []byte) (pageInfo, error) {
		recs, next, err := decodeGroupsPage(data)
		if err != nil {
			return pageInfo{}, c.malformed(epGroupsList, err)
		}
		for _, r := range recs {
			if r.ID == g.ID {
				g.MembershipManaged = true
				return pageInfo{n: len(recs)}, errStop
			}
		}
		return pageInfo{next: next, n: len(recs), span: spanOf(recs, groupRecID)}, nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return connectors.Group{}, fmt.Errorf("checking group type: %w", err)
	}
	return g, nil
}

// notFoundBody reports a 404 whose body is DevRev's own not_found error. Only that one
// means the account is gone: a 404 from a wrong route, a proxy or a base URL pointing
// elsewhere must fail the lookup, or every account would be taken as deleted.
func notFoundBody(err error) bool {
	var e *connectors.Error
	return errors.Is(err, connectors.ErrNotFound) && errors.As(err, &e) && e.Type == "not_found"
}
