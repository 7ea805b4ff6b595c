// Package scimclient is the SCIM 2.0 group-write client (RFC 7644 §3.3, §3.5, §3.6) that
// every SCIM writer uses: the scim connector and Airtable's SCIM group writes. It creates,
// reads back, renames and deletes groups and adds and removes members in PatchOp batches,
// or by a read-modify-write PUT guarded by If-Match where a provider has no PATCH; it falls
// back when a remove of an absent member is refused (noTarget), marks a name in use
// (409 uniqueness) as connectors.ErrNameTaken, and reads SCIM error bodies (scimType).
//
// What differs between providers is configuration, not code: where the groups live and
// how they take writes (Target, which the scim connector learns by discovery and Airtable
// fixes), the endpoint labels, content types, the form of a members value on add, and the
// batch cap. Everything about the HTTP exchange itself (auth, rate limit, retries, body
// cap, error classification) belongs to the apiclient.Client the writer hands in.
package scimclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/connectors/scim/scimwire"
)

// DefaultMaxMembersPerWrite is the batch cap when Config leaves it zero: the cap providers
// document (AWS IAM Identity Center 100; Entra ID's provisioning sends at most 100 members
// per request).
const DefaultMaxMembersPerWrite = 100

// maxPreconditionRetries bounds re-reads after 412 Precondition Failed on a PUT: each means
// someone else changed the group between our read and our write.
const maxPreconditionRetries = 3

// Target is where a provider keeps its groups and how it takes writes.
type Target struct {
	// GroupsPath is the Groups endpoint: a path under the HTTP client's base ("/Groups"),
	// or an absolute URL on its host (Airtable's SCIM base when it shares the meta client).
	GroupsPath string
	// Put makes renames and member changes a read-modify-write PUT of the whole group
	// (RFC 7644 §3.5.1) instead of PATCH: for a provider without PATCH.
	Put bool
	// ETags makes a PUT conditional (If-Match with the version read), so a change made
	// between read and write is not overwritten. Only where the provider announces ETags:
	// a server adding a body hash as ETag to every answer would refuse every PUT.
	ETags bool
	// MembersReadOnly refuses member writes with ErrUnsupported before any request (the
	// provider's Group schema makes members readOnly or immutable).
	MembersReadOnly bool
}

// Static is a Config.Target for a provider whose Target is known up front.
func Static(t Target) func(context.Context) (Target, error) {
	return func(context.Context) (Target, error) { return t, nil }
}

// Endpoints are the route templates errors and metrics name each request by (never an
// id). Empty fields take the RFC's paths ("POST /Groups", "GET /Groups/{id}", …).
type Endpoints struct {
	Create, Get, Patch, Put, Delete string
}

func (e Endpoints) withDefaults() Endpoints {
	for _, f := range []struct {
		field *string
		def   string
	}{
		{&e.Create, "POST /Groups"}, {&e.Get, "GET /Groups/{id}"}, {&e.Patch, "PATCH /Groups/{id}"},
		{&e.Put, "PUT /Groups/{id}"}, {&e.Delete, "DELETE /Groups/{id}"},
	} {
		if *f.field == "" {
			*f.field = f.def
		}
	}
	return e
}

// Config configures a Client.
type Config struct {
	// HTTP sends every request: the writer's own apiclient.Client, with its auth, limits,
	// retries and DecodeError (DecodeError below, or a provider's own that reads SCIM's
	// shape too). Required.
	HTTP *apiclient.Client
	// Target is asked before each request goes out (after the arguments were checked),
	// so a provider's features may be learnt on first use. Required; Static for fixed ones.
	Target func(ctx context.Context) (Target, error)
	// Endpoints label the requests; see Endpoints.
	Endpoints Endpoints
	// ContentType is the request body's type; empty keeps apiclient's application/json.
	// RFC 7644 §3.1 names application/scim+json.
	ContentType string
	// Accept is sent on every request with an answer to read; empty keeps apiclient's.
	Accept string
	// AddForm is the form of a members value on add; zero means FormArray (the RFC's).
	AddForm Form
	// NegotiateAddForm lets a provider that refuses AddForm with a 400, before it has taken
	// any add, be sent the other form once; whichever it takes is kept for the Client. For
	// a provider whose documentation and server disagree (Airtable).
	NegotiateAddForm bool
	// MaxMembersPerWrite caps the members of one add or remove (a refused all-or-nothing
	// PatchOp puts the whole batch back on the engine); zero means
	// DefaultMaxMembersPerWrite. A larger batch is refused before any request.
	MaxMembersPerWrite int
	// Logger receives the client's debug and info lines; nil discards them.
	Logger *slog.Logger
}

// Client writes one provider's SCIM groups. It is safe for concurrent use.
type Client struct {
	cfg Config
	// addForm is the Form a provider took last under NegotiateAddForm, 0 until one did.
	addForm atomic.Int32
}

// New checks cfg and returns a Client; it sends no request.
func New(cfg Config) (*Client, error) {
	if cfg.HTTP == nil {
		return nil, errors.New("scimclient: HTTP client is required")
	}
	if cfg.Target == nil {
		return nil, fmt.Errorf("scimclient %s: Target is required", cfg.HTTP.System())
	}
	switch cfg.AddForm {
	case 0:
		cfg.AddForm = FormArray
	case FormArray, FormObject:
	default:
		return nil, fmt.Errorf("scimclient %s: unknown AddForm %d", cfg.HTTP.System(), cfg.AddForm)
	}
	if cfg.MaxMembersPerWrite <= 0 {
		cfg.MaxMembersPerWrite = DefaultMaxMembersPerWrite
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Endpoints = cfg.Endpoints.withDefaults()
	return &Client{cfg: cfg}, nil
}

// Group is a group as a provider answered it.
type Group struct {
	ID string
	// DisplayName is nil when the answer carried none.
	DisplayName *string
	// Version is the ETag header, else meta.version; empty when the answer had neither.
	Version string
	// Body is the answer as received, for the writer's own decoding (its model's Raw and
	// hash); empty when the provider answered without one (201 or 204 with no body).
	Body []byte
}

// Members decodes the group's member values from Body.
func (g Group) Members() ([]string, error) { return memberValues(g.Body) }

func groupPath(t Target, id string) string { return t.GroupsPath + "/" + url.PathEscape(id) }

// request is the Request of one call, with the configured content types.
func (c *Client) request(method, path, endpoint string, body any) apiclient.Request {
	req := apiclient.Request{Method: method, Path: path, Endpoint: endpoint, JSON: body, ContentType: c.cfg.ContentType}
	if c.cfg.Accept != "" {
		req.Header = http.Header{"Accept": {c.cfg.Accept}}
	}
	return req
}

// Get reads one group with its members and version. q is sent as the query (e.g.
// excludedAttributes=members for a read that needs no members). ErrNotFound if it does not
// exist, as the HTTP client's classification says.
func (c *Client) Get(ctx context.Context, id string, q url.Values) (Group, error) {
	if id == "" {
		return Group{}, c.fail(c.cfg.Endpoints.Get, connectors.ErrPermanent, "empty group id")
	}
	t, err := c.cfg.Target(ctx)
	if err != nil {
		return Group{}, err
	}
	return c.get(ctx, t, id, q)
}

func (c *Client) get(ctx context.Context, t Target, id string, q url.Values) (Group, error) {
	req := c.request(http.MethodGet, groupPath(t, id), c.cfg.Endpoints.Get, nil)
	req.Query = q
	body, hdr, err := c.cfg.HTTP.DoRaw(ctx, req)
	if err != nil {
		return Group{}, err
	}
	g, err := decodeGroup(body)
	if err == nil && g.ID != id {
		err = fmt.Errorf("asked for group %s, got %s", id, g.ID)
	}
	if err != nil {
		return Group{}, c.badBody(c.cfg.Endpoints.Get, err)
	}
	if etag := hdr.Get("ETag"); etag != "" {
		g.Version = etag
	}
	return g, nil
}

// Create creates an empty group named name (SCIM never needs members with the group; the
// writer adds them next) and returns the provider's answer. A provider that answers
// without a body (RFC 7644 §3.3 says 201 with the resource) gives a Group with no ID: the
// writer finds it by name. A create is not repeated after an unknown outcome (a duplicate
// would be a second group); a name in use (409) is ErrNameTaken.
func (c *Client) Create(ctx context.Context, name string) (Group, error) {
	if strings.TrimSpace(name) == "" {
		return Group{}, c.fail(c.cfg.Endpoints.Create, connectors.ErrPermanent, "group name is empty")
	}
	t, err := c.cfg.Target(ctx)
	if err != nil {
		return Group{}, err
	}
	body, hdr, err := c.cfg.HTTP.DoRaw(ctx, c.request(http.MethodPost, t.GroupsPath, c.cfg.Endpoints.Create,
		map[string]any{"schemas": []string{scimwire.SchemaGroup}, "displayName": name}))
	if err != nil {
		return Group{}, nameTaken(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return Group{}, nil
	}
	g, err := decodeGroup(body)
	if err != nil {
		// The group exists now, but without its id the writer must find it by name.
		return Group{}, c.badBody(c.cfg.Endpoints.Create, err)
	}
	if etag := hdr.Get("ETag"); etag != "" {
		g.Version = etag
	}
	return g, nil
}

// Rename sets the group's displayName: a PATCH replace (PUT would also replace the member
// list, so PATCH is preferred), or under Target.Put a PUT of the group as read with the new
// name. It returns the provider's answer, decoded where it holds a group, else just the id
// and the body (RFC 7644 lets a PATCH answer 204). A name in use (409) is ErrNameTaken.
func (c *Client) Rename(ctx context.Context, id, name string) (Group, error) {
	if strings.TrimSpace(name) == "" {
		return Group{}, c.fail(c.cfg.Endpoints.Patch, connectors.ErrPermanent, "group name is empty")
	}
	t, err := c.cfg.Target(ctx)
	if err != nil {
		return Group{}, err
	}
	var body []byte
	if t.Put {
		body, err = c.put(ctx, t, id, func(doc map[string]any) bool {
			doc["displayName"] = name
			return true
		})
	} else {
		body, err = c.patch(ctx, t, id, []scimwire.PatchOp{{Op: "replace", Path: "displayName", Value: name}})
	}
	if err != nil {
		return Group{}, nameTaken(err)
	}
	g, derr := decodeGroup(body)
	if derr != nil {
		return Group{ID: id, Body: body}, nil
	}
	return g, nil
}

// Delete deletes the group (its users are kept). A group already gone counts as deleted:
// the outcome asked for holds.
func (c *Client) Delete(ctx context.Context, id string) error {
	if id == "" {
		return c.fail(c.cfg.Endpoints.Delete, connectors.ErrPermanent, "empty group id")
	}
	t, err := c.cfg.Target(ctx)
	if err != nil {
		return err
	}
	_, _, err = c.cfg.HTTP.DoRaw(ctx, apiclient.Request{Method: http.MethodDelete, Path: groupPath(t, id), Endpoint: c.cfg.Endpoints.Delete})
	if errors.Is(err, connectors.ErrNotFound) {
		c.cfg.Logger.DebugContext(ctx, "group already deleted", "group_id", id)
		return nil
	}
	return err
}

// patch sends one PatchOp and returns the answer. Every operation the client sends is
// idempotent in effect (an add of a present member, a replace of a name, a remove by
// value), so one whose outcome is unknown may be repeated.
func (c *Client) patch(ctx context.Context, t Target, id string, ops []scimwire.PatchOp) ([]byte, error) {
	if id == "" {
		return nil, c.fail(c.cfg.Endpoints.Patch, connectors.ErrPermanent, "empty group id")
	}
	req := c.request(http.MethodPatch, groupPath(t, id), c.cfg.Endpoints.Patch,
		scimwire.PatchRequest{Schemas: []string{scimwire.SchemaPatchOp}, Operations: ops})
	req.Idempotent = true
	body, _, err := c.cfg.HTTP.DoRaw(ctx, req)
	return body, err
}

func (c *Client) fail(op string, class error, msg string) error {
	return &connectors.Error{System: c.cfg.HTTP.System(), Op: op, Class: class, Message: msg}
}

// badBody classifies a 2xx body the client could not use, as apiclient.Decode does: one
// cut short may come whole next time, anything else will not.
func (c *Client) badBody(op string, err error) error {
	class := connectors.ErrPermanent
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		class = connectors.ErrRetryable
	}
	return &connectors.Error{System: c.cfg.HTTP.System(), Op: op, Class: class, Message: "malformed response body", Err: err}
}

// nameTaken marks SCIM's 409 (uniqueness: displayName in use) as ErrNameTaken, which
// the engine reports as a name conflict rather than retrying.
func nameTaken(err error) error {
	if isStatus(err, http.StatusConflict) {
		return fmt.Errorf("%w: %w", connectors.ErrNameTaken, err)
	}
	return err
}

func isStatus(err error, status int) bool {
	var e *connectors.Error
	return errors.As(err, &e) && e.Status == status
}
