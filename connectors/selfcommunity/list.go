package selfcommunity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"sync"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
)

// paginate walks a DRF limit/offset listing: the first page from path with limit and
// offset 0, then each absolute `next` link until it is null. apiclient refuses a link to
// another host, so credentials never follow a server-provided URL elsewhere. A repeated
// link, a page identical to the one before, an empty page that still links onwards, or more
// than maxPages pages end the listing with an error instead of looping.
func (c *conn) paginate(ctx context.Context, endpoint, path string, query url.Values, fn func([]json.RawMessage) error) (connectors.Listing, error) {
	var l connectors.Listing
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("limit", strconv.Itoa(c.pageSize))
	q.Set("offset", "0")
	req := apiclient.Request{Method: "GET", Path: path, Query: q, Endpoint: endpoint}
	seen := map[string]bool{}
	var prev [sha256.Size]byte
	for {
		if err := ctx.Err(); err != nil {
			return l, fmt.Errorf("%s: %s: %w", c.name, endpoint, err)
		}
		if l.Pages >= c.maxPages {
			return l, c.listErr(endpoint, fmt.Sprintf("listing exceeds %d pages", c.maxPages))
		}
		body, _, err := c.api.DoRaw(ctx, req)
		if err != nil {
			return l, err
		}
		p, err := decodePage(body)
		if err != nil {
			return l, c.decodeErr(endpoint, err)
		}
		l.Pages++
		if len(p.Results) > 0 {
			sum := sha256.Sum256(bytes.Join(rawBytes(p.Results), []byte{0}))
			if l.Pages > 1 && sum == prev {
				return l, c.listErr(endpoint, fmt.Sprintf("page %d repeats the previous page", l.Pages))
			}
			prev = sum
			if err := fn(p.Results); err != nil {
				return l, err
			}
			l.Items += len(p.Results)
		}
		if p.Next == "" || p.Bare {
			l.Complete = true
			return l, nil
		}
		if len(p.Results) == 0 {
			return l, c.listErr(endpoint, fmt.Sprintf("page %d is empty but links to another page", l.Pages))
		}
		if seen[p.Next] {
			return l, c.listErr(endpoint, fmt.Sprintf("next link %s repeats an earlier page", p.Next))
		}
		seen[p.Next] = true
		req = apiclient.Request{Method: "GET", Path: p.Next, Endpoint: endpoint}
	}
}

func rawBytes(rs []json.RawMessage) [][]byte {
	out := make([][]byte, len(rs))
	for i, r := range rs {
		out[i] = r
	}
	return out
}

func (c *conn) listErr(endpoint, msg string) error {
	return &connectors.Error{System: c.name, Op: endpoint, Class: connectors.ErrPermanent, Message: msg}
}

// decodeErr classifies a body that did not decode: cut short is retryable, anything else
// malformed is permanent (as apiclient.Decode does).
func (c *conn) decodeErr(endpoint string, err error) error {
	class := connectors.ErrPermanent
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		class = connectors.ErrRetryable
	}
	return &connectors.Error{System: c.name, Op: endpoint, Class: class, Message: "malformed response body", Err: err}
}

// ListGroups lists every group `GET /api/v2/group/search/` shows the credentials: groups
// with visible=true plus hidden groups the token's user belongs to. Whether an admin also
// sees hidden groups it is not a member of is undocumented (apis.md §1.1).
func (c *conn) ListGroups(ctx context.Context, fn func([]connectors.Group) error) (connectors.Listing, error) {
	return c.paginate(ctx, epGroupsSearch, "/api/v2/group/search/", nil, func(rs []json.RawMessage) error {
		gs := make([]connectors.Group, 0, len(rs))
		for _, r := range rs {
			g, manager, err := decodeGroup(r)
			if err != nil {
				return c.decodeErr(epGroupsSearch, err)
			}
			c.rememberManager(g.ID, manager)
			gs = append(gs, g)
		}
		return fn(gs)
	})
}

// ListMembers lists `GET /api/v2/group/{id}/subscribe/`. The list carries no role: the
// group's manager (managed_by, remembered from the last read of the group) is reported with
// role "manager", everyone else as "member".
func (c *conn) ListMembers(ctx context.Context, groupID string, fn func([]connectors.Member) error) (connectors.Listing, error) {
	if err := c.checkID(epMembersList, "group", groupID); err != nil {
		return connectors.Listing{}, err
	}
	manager := c.managerOf(groupID)
	return c.paginate(ctx, epMembersList, "/api/v2/group/"+groupID+"/subscribe/", nil, func(rs []json.RawMessage) error {
		ms := make([]connectors.Member, 0, len(rs))
		for _, r := range rs {
			m, err := decodeMember(groupID, manager, r)
			if err != nil {
				return c.decodeErr(epMembersList, err)
			}
			ms = append(ms, m)
		}
		return fn(ms)
	})
}

// ListAccounts resolves accounts and their emails.
//
// Email route. Member lists carry trimmed users without email, and the admin account
// search (`GET /api/v2/account/search/?email=`) only goes from email to user, never back.
// The documented User schema (docs/apireference/v2/schemas/user.md) has a read-only `email`
// field, and both `GET /api/v2/user/` ("the list of all users", paginated) and
// `GET /api/v2/user/{id}/` return that schema. So:
//   - ids == nil: `GET /api/v2/user/` page by page — one request per page of users, the
//     cheapest way to learn every email;
//   - ids given: `GET /api/v2/user/{id}/` per id (no batch lookup is documented), run
//     Concurrency at a time under the rate limit; ids that answer 404 are skipped.
//
// Whether SelfCommunity redacts `email` for callers that are not admins is undocumented
// (apis.md §1.6 only confirms it on the account search), which is why the credentials must
// be an admin's. An account whose email is withheld is reported with Email "" rather than
// failing the listing.
func (c *conn) ListAccounts(ctx context.Context, ids []string, fn func([]connectors.Account) error) (connectors.Listing, error) {
	if ids == nil {
		return c.paginate(ctx, epUsersList, "/api/v2/user/", nil, func(rs []json.RawMessage) error {
			as := make([]connectors.Account, 0, len(rs))
			for _, r := range rs {
				a, err := decodeAccount(r)
				if err != nil {
					return c.decodeErr(epUsersList, err)
				}
				as = append(as, a)
			}
			return fn(as)
		})
	}
	for _, id := range ids {
		if err := c.checkID(epUserGet, "user", id); err != nil {
			return connectors.Listing{}, err
		}
	}
	return c.getAccounts(ctx, ids, fn)
}

// getAccounts fetches ids concurrently and hands them to fn in batches of pageSize from one
// goroutine (fn need not be safe for concurrent use).
func (c *conn) getAccounts(ctx context.Context, ids []string, fn func([]connectors.Account) error) (connectors.Listing, error) {
	var l connectors.Listing
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type result struct {
		acc   connectors.Account
		found bool
		err   error
	}
	jobs := make(chan string)
	results := make(chan result)
	var wg sync.WaitGroup
	for range min(c.concurrency, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				a, err := c.getAccount(ctx, id)
				r := result{acc: a, found: err == nil, err: err}
				if errors.Is(err, connectors.ErrNotFound) {
					r.err = nil
				}
				select {
				case results <- r:
				case <-ctx.Done():
					return
				}
			}
		}()
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

	var firstErr error
	batch := make([]connectors.Account, 0, c.pageSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		l.Pages++
		l.Items += len(batch)
		err := fn(batch)
		batch = make([]connectors.Account, 0, c.pageSize)
		return err
	}
	done := 0
	for r := range results {
		if firstErr != nil {
			continue // drain so the workers can exit
		}
		done++
		switch {
		case r.err != nil:
			firstErr = r.err
			cancel()
		case r.found:
			batch = append(batch, r.acc)
			if len(batch) >= c.pageSize {
				if err := flush(); err != nil {
					firstErr = err
					cancel()
				}
			}
		}
	}
	if firstErr != nil {
		return l, firstErr
	}
	if err := ctx.Err(); err != nil || done < len(ids) {
		return l, fmt.Errorf("%s: %s: %w", c.name, epUserGet, context.Cause(ctx))
	}
	if err := flush(); err != nil {
		return l, err
	}
	l.Complete = true
	return l, nil
}

func (c *conn) getAccount(ctx context.Context, id string) (connectors.Account, error) {
	body, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: "GET", Path: "/api/v2/user/" + id + "/", Endpoint: epUserGet})
	if err != nil {
		return connectors.Account{}, err
	}
	a, err := decodeAccount(body)
	if err != nil {
		return connectors.Account{}, c.decodeErr(epUserGet, err)
	}
	return a, nil
}

// FindAccountByEmail uses the admin account search, `GET /api/v2/account/search/?email=`,
// which answers one User (with email) or 404. A list answer (envelope or bare array) is
// accepted too, taking the entry whose email matches.
func (c *conn) FindAccountByEmail(ctx context.Context, email string) (connectors.Account, error) {
	email = connectors.NormalizeEmail(email)
	if email == "" {
		return connectors.Account{}, &connectors.Error{System: c.name, Op: epAccountSearch, Class: connectors.ErrNotFound, Message: "empty email"}
	}
	// The search takes one address: each spelling of the key in turn (connectors.EmailForms).
	var err error
	for _, form := range connectors.EmailForms(email) {
		var a connectors.Account
		if a, err = c.searchAccount(ctx, email, form); !errors.Is(err, connectors.ErrNotFound) {
			return a, err
		}
	}
	return connectors.Account{}, err
}

// searchAccount asks the account search for one spelling of the email key and returns the
// account whose normalized email is the key.
func (c *conn) searchAccount(ctx context.Context, email, form string) (connectors.Account, error) {
	body, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: "GET", Path: "/api/v2/account/search/",
		Query: url.Values{"email": {form}}, Endpoint: epAccountSearch})
	if err != nil {
		return connectors.Account{}, err
	}
	if trimmed := bytes.TrimSpace(body); isSingleObject(trimmed) {
		a, err := decodeAccount(trimmed)
		if err != nil {
			return connectors.Account{}, c.decodeErr(epAccountSearch, err)
		}
		return a, nil
	}
	p, err := decodePage(body)
	if err != nil {
		return connectors.Account{}, c.decodeErr(epAccountSearch, err)
	}
	for _, r := range p.Results {
		a, err := decodeAccount(r)
		if err != nil {
			return connectors.Account{}, c.decodeErr(epAccountSearch, err)
		}
		if a.Email == email {
			return a, nil
		}
	}
	return connectors.Account{}, &connectors.Error{System: c.name, Op: epAccountSearch, Class: connectors.ErrNotFound,
		Message: "no account with that email"}
}

// isSingleObject reports whether body is one JSON object rather than a DRF page envelope.
func isSingleObject(body []byte) bool {
	if len(body) == 0 || body[0] != '{' {
		return false
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return true // let the object decoder name the problem
	}
	_, paged := top["results"]
	return !paged
}

// FindGroupByName searches `GET /api/v2/group/search/?search=` and returns the group whose
// name equals name exactly, else the one whose normalized name matches (names are unique in
// SelfCommunity, so at most one does). The search term is the normalized name: DRF's
// SearchFilter splits it on whitespace and matches every word case-insensitively, so odd
// spacing or case in the stored name still comes back and is compared here.
func (c *conn) FindGroupByName(ctx context.Context, name string) (connectors.Group, error) {
	var exact, loose *connectors.Group
	want := connectors.NormalizeName(name)
	errFound := errors.New("found")
	_, err := c.paginate(ctx, epGroupsSearch, "/api/v2/group/search/", url.Values{"search": {want}}, func(rs []json.RawMessage) error {
		for _, r := range rs {
			g, manager, err := decodeGroup(r)
			if err != nil {
				return c.decodeErr(epGroupsSearch, err)
			}
			switch {
			case g.Name == name:
				c.rememberManager(g.ID, manager)
				exact = &g
				return errFound
			case loose == nil && connectors.NormalizeName(g.Name) == want:
				c.rememberManager(g.ID, manager)
				loose = &g
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		return connectors.Group{}, err
	}
	switch {
	case exact != nil:
		return *exact, nil
	case loose != nil:
		return *loose, nil
	}
	return connectors.Group{}, &connectors.Error{System: c.name, Op: epGroupsSearch, Class: connectors.ErrNotFound,
		Message: "no group with that name"}
}

// GetGroup reads `GET /api/v2/group/{id}/`.
func (c *conn) GetGroup(ctx context.Context, id string) (connectors.Group, error) {
	if err := c.checkID(epGroupGet, "group", id); err != nil {
		return connectors.Group{}, err
	}
	body, _, err := c.api.DoRaw(ctx, apiclient.Request{Method: "GET", Path: "/api/v2/group/" + id + "/", Endpoint: epGroupGet})
	if err != nil {
		return connectors.Group{}, err
	}
	return c.groupFromBody(epGroupGet, body)
}

func (c *conn) groupFromBody(endpoint string, body []byte) (connectors.Group, error) {
	g, manager, err := decodeGroup(bytes.TrimSpace(body))
	if err != nil {
		return connectors.Group{}, c.decodeErr(endpoint, err)
	}
	c.rememberManager(g.ID, manager)
	return g, nil
}
