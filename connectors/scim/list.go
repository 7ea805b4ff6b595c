package scim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/scim/scimclient"
)

// excludeMembers keeps group listings small (RFC 7644 §3.4.2.5): members are read per
// group by ListMembers. A provider that ignores it costs bandwidth, not correctness.
var excludeMembers = url.Values{"excludedAttributes": {"members"}}

// listPage reads one ListResponse page.
func (c *conn) listPage(ctx context.Context, f *features, path, endpoint string, start, count int, q url.Values) (listJSON, error) {
	query := url.Values{"startIndex": {strconv.Itoa(start)}, "count": {strconv.Itoa(count)}}
	for k, v := range q {
		query[k] = v
	}
	body, _, err := c.get(ctx, path, endpoint, query)
	if err != nil {
		return listJSON{}, err
	}
	page, err := decodeList(body)
	if err != nil {
		return listJSON{}, c.badBody(endpoint, err)
	}
	return page, nil
}

// paginate reads a listing page by page with startIndex/count (RFC 7644 §3.4.2.4) until
// totalResults is reached. deliver decodes one page and returns how many of its resources
// were new (not already delivered). The listing is complete only when it reached
// totalResults; it ends incomplete, with no error, when the provider stops short of the
// total it announced (an empty page, or a page of nothing new: a provider ignoring
// startIndex), or when the total shrank between pages (offset paging may then have skipped
// a resource that still exists).
func (c *conn) paginate(ctx context.Context, f *features, path, endpoint string, q url.Values,
	deliver func([]json.RawMessage) (int, error)) (connectors.Listing, error) {
	var l connectors.Listing
	start, count, firstTotal, shrank := 1, c.pageCount(f), -1, false
	for {
		page, err := c.listPage(ctx, f, path, endpoint, start, count, q)
		if err != nil {
			return l, err
		}
		l.Pages++
		total := int(*page.TotalResults)
		if firstTotal >= 0 && total < firstTotal {
			shrank = true
		}
		firstTotal = max(firstTotal, total)
		fresh := 0
		if len(page.Resources) > 0 {
			if fresh, err = deliver(page.Resources); err != nil {
				return l, err
			}
			l.Items += fresh
		}
		start += len(page.Resources)
		switch {
		case start-1 >= total:
			l.Complete = !shrank
			if shrank {
				c.log.WarnContext(ctx, "scim listing shrank while it was read: kept incomplete, nothing is taken as gone",
					"endpoint", endpoint, "items", l.Items)
			}
			return l, nil
		case len(page.Resources) == 0 || fresh == 0:
			c.log.WarnContext(ctx, "scim listing ended short of its totalResults: kept incomplete, nothing is taken as gone",
				"endpoint", endpoint, "items", l.Items, "total_results", total)
			return l, nil
		}
		if err := ctx.Err(); err != nil {
			return l, fmt.Errorf("%s: %s: %w", c.name, endpoint, err)
		}
	}
}

// ListGroups streams every group, one callback per page, members left out.
func (c *conn) ListGroups(ctx context.Context, fn func([]connectors.Group) error) (connectors.Listing, error) {
	f, err := c.discover(ctx)
	if err != nil {
		return connectors.Listing{}, err
	}
	seen := map[string]bool{}
	return c.paginate(ctx, f, f.groupsPath, epGroupsList, excludeMembers, func(items []json.RawMessage) (int, error) {
		page := make([]connectors.Group, 0, len(items))
		for i, raw := range items {
			g, _, _, err := decodeGroup(raw)
			if err != nil {
				return 0, c.badBody(epGroupsList, fmt.Errorf("resource %d: %w", i, err))
			}
			if !seen[g.ID] {
				seen[g.ID] = true
				page = append(page, g)
			}
		}
		if len(page) == 0 {
			return 0, nil
		}
		return len(page), fn(page)
	})
}

// readGroup reads one group with its members through the write client (the read a
// write relies on, and the one a listing makes, are one request).
func (c *conn) readGroup(ctx context.Context, id string, q url.Values) (connectors.Group, []connectors.Member, error) {
	sg, err := c.groups.Get(ctx, id, q)
	if err != nil {
		return connectors.Group{}, nil, err
	}
	g, ms, _, err := decodeGroup(sg.Body)
	if err != nil {
		return connectors.Group{}, nil, c.badBody(epGroupGet, err)
	}
	return g, ms, nil
}

// GetGroup reads one group (members left out); ErrNotFound if it does not exist.
func (c *conn) GetGroup(ctx context.Context, id string) (connectors.Group, error) {
	g, _, err := c.readGroup(ctx, id, excludeMembers)
	return g, err
}

// ListMembers reads one group's members. SCIM returns them with the group and has no
// paging of a multi-valued attribute, so this is one request and one callback.
func (c *conn) ListMembers(ctx context.Context, groupID string, fn func([]connectors.Member) error) (connectors.Listing, error) {
	_, ms, err := c.readGroup(ctx, groupID, nil)
	if err != nil {
		return connectors.Listing{}, err
	}
	l := connectors.Listing{Pages: 1}
	if len(ms) > 0 {
		if err := fn(ms); err != nil {
			return l, err
		}
	}
	l.Items, l.Complete = len(ms), true
	return l, nil
}

// ListAccounts streams users. With ids nil it pages /Users to the end; with ids it reads
// each user by id (SCIM has no batch read every provider supports: `id eq` filters joined
// with `or` are optional), skipping ids that answer 404.
func (c *conn) ListAccounts(ctx context.Context, ids []string, fn func([]connectors.Account) error) (connectors.Listing, error) {
	f, err := c.discover(ctx)
	if err != nil {
		return connectors.Listing{}, err
	}
	if ids == nil {
		seen := map[string]bool{}
		return c.paginate(ctx, f, f.usersPath, epUsersList, nil, func(items []json.RawMessage) (int, error) {
			page, err := c.decodeUsers(items, seen)
			if err != nil || len(page) == 0 {
				return 0, err
			}
			return len(page), fn(page)
		})
	}
	return c.usersByID(ctx, f, ids, fn)
}

func (c *conn) decodeUsers(items []json.RawMessage, seen map[string]bool) ([]connectors.Account, error) {
	page := make([]connectors.Account, 0, len(items))
	for i, raw := range items {
		a, err := decodeUser(raw)
		if err != nil {
			return nil, c.badBody(epUsersList, fmt.Errorf("resource %d: %w", i, err))
		}
		if !seen[a.ID] {
			seen[a.ID] = true
			page = append(page, a)
		}
	}
	return page, nil
}

// usersByID reads users one by one and hands them on in pages of pageSize.
func (c *conn) usersByID(ctx context.Context, f *features, ids []string, fn func([]connectors.Account) error) (connectors.Listing, error) {
	var l connectors.Listing
	seen := make(map[string]bool, len(ids))
	page := make([]connectors.Account, 0, min(len(ids), c.pageSize))
	flush := func() error {
		if len(page) == 0 {
			return nil
		}
		if err := fn(page); err != nil {
			return err
		}
		l.Items += len(page)
		page = page[:0]
		return nil
	}
	for _, id := range ids {
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		body, _, err := c.get(ctx, f.usersPath+"/"+url.PathEscape(id), epUserGet, nil)
		if errors.Is(err, connectors.ErrNotFound) {
			continue
		}
		if err != nil {
			return l, err
		}
		l.Pages++
		a, err := decodeUser(body)
		if err != nil {
			return l, c.badBody(epUserGet, err)
		}
		if a.ID != id {
			return l, c.badBody(epUserGet, fmt.Errorf("asked for user %s, got %s", id, a.ID))
		}
		if page = append(page, a); len(page) == c.pageSize {
			if err := flush(); err != nil {
				return l, err
			}
		}
	}
	if err := flush(); err != nil {
		return l, err
	}
	l.Complete = true
	return l, nil
}

// emailFilterAttrs are the attributes an email is looked up by, in order: userName is the
// one every provider filters on (Okta and Entra ID require it), emails.value the one that
// holds the address where userName is not one.
var emailFilterAttrs = []string{"userName", "emails.value"}

// FindAccountByEmail looks an account up by email with `userName eq` and then
// `emails.value eq` filters (each spelling of the key, see connectors.EmailForms), keeping
// only a user whose email, as decoded, equals the key. A provider that refuses a filter
// (400 invalidFilter) is asked the next one; one without filtering is scanned.
func (c *conn) FindAccountByEmail(ctx context.Context, email string) (connectors.Account, error) {
	email = connectors.NormalizeEmail(email)
	if email == "" {
		return connectors.Account{}, c.errorf(epUsersList, connectors.ErrPermanent, "empty email")
	}
	f, err := c.discover(ctx)
	if err != nil {
		return connectors.Account{}, err
	}
	if !c.filters(f) {
		return c.scanAccounts(ctx, email)
	}
	answered := false
	for _, attr := range emailFilterAttrs {
		for _, form := range connectors.EmailForms(email) {
			page, err := c.listPage(ctx, f, f.usersPath, epUsersList, 1, c.pageCount(f),
				url.Values{"filter": {attr + " eq " + scimclient.FilterString(form)}})
			if isInvalidFilter(err) {
				c.log.DebugContext(ctx, "scim provider refused a filter; trying the next", "attribute", attr)
				continue
			}
			answered = true
			if err != nil {
				return connectors.Account{}, err
			}
			accs, err := c.decodeUsers(page.Resources, map[string]bool{})
			if err != nil {
				return connectors.Account{}, err
			}
			for _, a := range accs {
				if a.Email == email {
					return a, nil
				}
			}
		}
	}
	if !answered {
		// Every filter refused: "not found" would be a guess, so look the slow way.
		return c.scanAccounts(ctx, email)
	}
	return connectors.Account{}, c.errorf(epUsersList, connectors.ErrNotFound, "no account with that email")
}

// scanAccounts finds an email by listing every user: the only way on a provider without
// filtering, and as costly as a full account listing.
func (c *conn) scanAccounts(ctx context.Context, email string) (connectors.Account, error) {
	var found connectors.Account
	errFound := errors.New("found")
	_, err := c.ListAccounts(ctx, nil, func(p []connectors.Account) error {
		for _, a := range p {
			if a.Email == email {
				found = a
				return errFound
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, errFound):
		return found, nil
	case err != nil:
		return connectors.Account{}, err
	}
	return connectors.Account{}, c.errorf(epUsersList, connectors.ErrNotFound, "no account with that email")
}

// FindGroupByName looks a group up with a `displayName eq` filter (or a scan where the
// provider does not filter). The exact name wins; else a group whose name has the same
// connectors.NormalizeName key, whatever the provider's own matching rule is.
func (c *conn) FindGroupByName(ctx context.Context, name string) (connectors.Group, error) {
	f, err := c.discover(ctx)
	if err != nil {
		return connectors.Group{}, err
	}
	key := connectors.NormalizeName(name)
	var exact, loose *connectors.Group
	pick := func(gs []connectors.Group) error {
		for i := range gs {
			switch {
			case gs[i].Name == name && exact == nil:
				exact = &gs[i]
			case loose == nil && connectors.NormalizeName(gs[i].Name) == key:
				loose = &gs[i]
			}
		}
		return nil
	}
	if c.filters(f) {
		q := url.Values{"filter": {"displayName eq " + scimclient.FilterString(name)}, "excludedAttributes": {"members"}}
		_, err = c.paginate(ctx, f, f.groupsPath, epGroupsList, q, func(items []json.RawMessage) (int, error) {
			gs := make([]connectors.Group, 0, len(items))
			for i, raw := range items {
				g, _, _, err := decodeGroup(raw)
				if err != nil {
					return 0, c.badBody(epGroupsList, fmt.Errorf("resource %d: %w", i, err))
				}
				gs = append(gs, g)
			}
			return len(gs), pick(gs)
		})
		if isInvalidFilter(err) {
			// A provider that cannot parse this name's filter (SCIMMY refuses an escaped
			// quote) is scanned instead: a permanent 400 would fail every create of it.
			c.log.DebugContext(ctx, "scim provider refused the name filter; scanning the groups")
			exact, loose = nil, nil
			_, err = c.ListGroups(ctx, pick)
		}
	} else {
		_, err = c.ListGroups(ctx, pick)
	}
	if err != nil {
		return connectors.Group{}, err
	}
	switch {
	case exact != nil:
		return *exact, nil
	case loose != nil:
		return *loose, nil
	}
	return connectors.Group{}, c.errorf(epGroupsList, connectors.ErrNotFound, "no group with that name")
}

// isInvalidFilter reports a provider's refusal of a filter (400 invalidFilter, RFC 7644
// §3.12), or of filtering at all (501).
func isInvalidFilter(err error) bool {
	var e *connectors.Error
	if !errors.As(err, &e) {
		return false
	}
	return (e.Status == 400 && strings.EqualFold(e.Type, "invalidFilter")) || e.Status == 501
}
