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
			m, username, err := decodeMember(groupID, manager, c.matchBy, r)
			if err != nil {
				return c.decodeErr(epMembersList, err)
			}
			c.rememberUsername(m.AccountID, username)
			ms = append(ms, m)
		}
		return fn(ms)
	})
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
