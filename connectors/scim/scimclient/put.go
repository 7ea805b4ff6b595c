package scimclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/scim/scimwire"
)

// put changes a group by read-modify-write: it reads the whole group, lets change edit it
// (change reports whether anything changed; nothing is sent otherwise) and PUTs it back,
// returning the answer. Under Target.ETags the PUT carries If-Match with the version read,
// so a change someone made in between is not overwritten: a 412 reads again, a few times.
func (c *Client) put(ctx context.Context, t Target, groupID string, change func(doc map[string]any) bool) ([]byte, error) {
	if groupID == "" {
		return nil, c.fail(c.cfg.Endpoints.Get, connectors.ErrPermanent, "empty group id")
	}
	for attempt := 1; ; attempt++ {
		g, err := c.get(ctx, t, groupID, nil)
		if err != nil {
			return nil, err
		}
		doc, err := putDocument(g.Body)
		if err != nil {
			return nil, c.badBody(c.cfg.Endpoints.Get, err)
		}
		if !change(doc) {
			return nil, nil
		}
		req := c.request(http.MethodPut, groupPath(t, groupID), c.cfg.Endpoints.Put, doc)
		if t.ETags && g.Version != "" {
			if req.Header == nil {
				req.Header = http.Header{}
			}
			req.Header.Set("If-Match", g.Version)
		}
		body, _, err := c.cfg.HTTP.DoRaw(ctx, req)
		if !isStatus(err, http.StatusPreconditionFailed) || attempt >= maxPreconditionRetries {
			return body, err
		}
		c.cfg.Logger.DebugContext(ctx, "group changed between read and write; reading again", "group_id", groupID, "attempt", attempt)
	}
}

// putDocument turns a group as read into the body of its PUT: every attribute kept
// (PUT replaces the whole resource, RFC 7644 §3.5.1), the read-only id and meta left out,
// numbers kept as written.
func putDocument(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if doc == nil {
		return nil, errors.New("group: null")
	}
	delete(doc, "id")
	delete(doc, "meta")
	if _, ok := doc["schemas"]; !ok {
		doc["schemas"] = []string{scimwire.SchemaGroup}
	}
	return doc, nil
}

// docMembers returns a PUT document's members and the values present.
func docMembers(doc map[string]any) ([]any, map[string]bool) {
	members, _ := doc["members"].([]any)
	present := make(map[string]bool, len(members))
	for _, m := range members {
		if obj, ok := m.(map[string]any); ok {
			present[docMemberValue(obj)] = true
		}
	}
	return members, present
}

// dropMembers removes ids from a PUT document's members and reports whether any was there.
func dropMembers(doc map[string]any, ids []string) bool {
	drop := make(map[string]bool, len(ids))
	for _, id := range ids {
		drop[id] = true
	}
	members, _ := docMembers(doc)
	kept := make([]any, 0, len(members))
	for _, m := range members {
		if obj, ok := m.(map[string]any); ok && drop[docMemberValue(obj)] {
			continue
		}
		kept = append(kept, m)
	}
	doc["members"] = kept
	return len(kept) != len(members)
}

// docMemberValue is a member's value as a string (a number keeps its literal).
func docMemberValue(obj map[string]any) string {
	switch v := obj["value"].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}
