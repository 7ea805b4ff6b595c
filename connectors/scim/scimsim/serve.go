package scimsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/groupsync/groupsync/connectors/simkit"
)

// SCIM schema URNs.
const (
	SchemaGroup        = "urn:ietf:params:scim:schemas:core:2.0:Group"
	SchemaUser         = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaPatchOp      = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SchemaListResponse = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	SchemaError        = "urn:ietf:params:scim:api:messages:2.0:Error"
	SchemaSPC          = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	SchemaResourceType = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	SchemaSchema       = "urn:ietf:params:scim:schemas:core:2.0:Schema"
)

const maxBody = 1 << 20

// scimError is a SCIM error in flight inside a handler.
type scimError struct {
	status   int
	scimType string
	detail   string
}

func errorf(status int, scimType, format string, args ...any) *scimError {
	return &scimError{status: status, scimType: scimType, detail: fmt.Sprintf(format, args...)}
}

var errNotFound = &scimError{status: http.StatusNotFound, detail: "Resource not found"}

// route maps a request to its route label.
func route(r *http.Request) string {
	p, ok := strings.CutPrefix(strings.TrimSuffix(r.URL.Path, "/"), Prefix)
	if !ok {
		return RouteUnknown
	}
	seg := strings.Split(strings.TrimPrefix(p, "/"), "/")
	switch {
	case len(seg) == 1 && r.Method == http.MethodGet && seg[0] == "ServiceProviderConfig":
		return RouteSPC
	case len(seg) == 1 && r.Method == http.MethodGet && seg[0] == "ResourceTypes":
		return RouteResourceTypes
	case len(seg) == 1 && r.Method == http.MethodGet && seg[0] == "Schemas":
		return RouteSchemas
	case len(seg) == 1 && seg[0] == "Users" && r.Method == http.MethodGet:
		return RouteUsers
	case len(seg) == 2 && seg[0] == "Users" && r.Method == http.MethodGet:
		return RouteUser
	case len(seg) == 1 && seg[0] == "Groups":
		return map[string]string{http.MethodGet: RouteGroups, http.MethodPost: RouteGroupCreate}[r.Method]
	case len(seg) == 2 && seg[0] == "Groups":
		return map[string]string{http.MethodGet: RouteGroup, http.MethodPut: RouteGroupPut,
			http.MethodPatch: RouteGroupPatch, http.MethodDelete: RouteGroupDelete}[r.Method]
	}
	return RouteUnknown
}

func lastSegment(r *http.Request) string {
	p := strings.TrimSuffix(r.URL.Path, "/")
	return p[strings.LastIndexByte(p, '/')+1:]
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+s.opt.Token {
		w.Header().Set("WWW-Authenticate", `Bearer realm="scimsim"`)
		writeError(w, errorf(http.StatusUnauthorized, "", "Authorization failure"))
		return
	}
	handlers := map[string]func(http.ResponseWriter, *http.Request) *scimError{
		RouteSPC: s.serveSPC, RouteResourceTypes: s.serveResourceTypes, RouteSchemas: s.serveSchemas,
		RouteUsers: s.listUsers, RouteUser: s.getUser,
		RouteGroups: s.listGroups, RouteGroupCreate: s.createGroup, RouteGroup: s.getGroup,
		RouteGroupPut: s.putGroup, RouteGroupPatch: s.patchGroup, RouteGroupDelete: s.deleteGroup,
	}
	h, ok := handlers[route(r)]
	if !ok {
		writeError(w, errorf(http.StatusNotFound, "", "Endpoint not found"))
		return
	}
	if err := h(w, r); err != nil {
		writeError(w, err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the simulator only renders its own values
	}
	w.Header().Set("Content-Type", "application/scim+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError renders a SCIM error: status as a string, as RFC 7644 §3.12 has it.
func writeError(w http.ResponseWriter, e *scimError) {
	body := map[string]any{"schemas": []string{SchemaError}, "status": strconv.Itoa(e.status), "detail": e.detail}
	if e.scimType != "" {
		body["scimType"] = e.scimType
	}
	writeJSON(w, e.status, body)
}

// writeFault is the simkit ErrorWriter: a SCIM error, with Retry-After on a 429.
func (s *Server) writeFault(w http.ResponseWriter, status int, retryAfter time.Duration) {
	if status == http.StatusTooManyRequests && retryAfter > 0 {
		w.Header().Set("Retry-After", simkit.RetryAfterSeconds(retryAfter))
	}
	writeError(w, errorf(status, "", "%s", http.StatusText(status)))
}

func (s *Server) serveSPC(w http.ResponseWriter, _ *http.Request) *scimError {
	s.mu.Lock()
	k := s.knobs
	s.mu.Unlock()
	if k.noSPC {
		return errNotFound
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"schemas":        []string{SchemaSPC},
		"patch":          map[string]any{"supported": !k.noPatch},
		"bulk":           map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":         map[string]any{"supported": !k.noFilter, "maxResults": s.opt.MaxResults},
		"changePassword": map[string]any{"supported": false},
		"sort":           map[string]any{"supported": false},
		"etag":           map[string]any{"supported": !k.noETag},
		"authenticationSchemes": []map[string]any{{"type": "oauthbearertoken", "name": "OAuth Bearer Token",
			"description": "Authentication with a bearer token", "primary": true}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": Prefix + "/ServiceProviderConfig"},
	})
	return nil
}

func listOf(items []any) map[string]any {
	return map[string]any{"schemas": []string{SchemaListResponse}, "totalResults": len(items),
		"itemsPerPage": len(items), "startIndex": 1, "Resources": items}
}

func (s *Server) serveResourceTypes(w http.ResponseWriter, _ *http.Request) *scimError {
	rt := func(name, endpoint, schema string) any {
		return map[string]any{"schemas": []string{SchemaResourceType}, "id": name, "name": name,
			"endpoint": endpoint, "schema": schema,
			"meta": map[string]any{"resourceType": "ResourceType", "location": Prefix + "/ResourceTypes/" + name}}
	}
	writeJSON(w, http.StatusOK, listOf([]any{rt("User", "/Users", SchemaUser), rt("Group", "/Groups", SchemaGroup)}))
	return nil
}

func (s *Server) serveSchemas(w http.ResponseWriter, _ *http.Request) *scimError {
	s.mu.Lock()
	mutability := "readWrite"
	if s.knobs.membersReadOnly {
		mutability = "readOnly"
	}
	s.mu.Unlock()
	attr := func(name, typ string, multi bool, mut string) map[string]any {
		return map[string]any{"name": name, "type": typ, "multiValued": multi, "required": false,
			"caseExact": false, "mutability": mut, "returned": "default", "uniqueness": "none"}
	}
	group := map[string]any{"schemas": []string{SchemaSchema}, "id": SchemaGroup, "name": "Group",
		"attributes": []any{attr("displayName", "string", false, "readWrite"), attr("members", "complex", true, mutability)}}
	user := map[string]any{"schemas": []string{SchemaSchema}, "id": SchemaUser, "name": "User",
		"attributes": []any{attr("userName", "string", false, "readWrite"), attr("emails", "complex", true, "readWrite"),
			attr("active", "boolean", false, "readWrite")}}
	writeJSON(w, http.StatusOK, listOf([]any{user, group}))
	return nil
}

// paging reads startIndex (1-based; below 1 means 1) and count (absent: maxResults;
// negative: 0; above maxResults: maxResults), RFC 7644 §3.4.2.4.
func (s *Server) paging(r *http.Request, total int) (start, end int, err *scimError) {
	q := r.URL.Query()
	startIndex, count := 1, s.opt.MaxResults
	if v := q.Get("startIndex"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil {
			return 0, 0, errorf(http.StatusBadRequest, "invalidValue", "startIndex must be an integer")
		}
		startIndex = max(1, n)
	}
	if v := q.Get("count"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil {
			return 0, 0, errorf(http.StatusBadRequest, "invalidValue", "count must be an integer")
		}
		count = min(max(0, n), s.opt.MaxResults)
	}
	start = min(startIndex-1, total)
	return start, min(start+count, total), nil
}

// page renders one ListResponse page of items. Callers hold s.mu.
func (s *Server) page(r *http.Request, items []any) (map[string]any, *scimError) {
	start, end, err := s.paging(r, len(items))
	if err != nil {
		return nil, err
	}
	return map[string]any{"schemas": []string{SchemaListResponse}, "totalResults": len(items) + s.knobs.phantom,
		"itemsPerPage": end - start, "startIndex": start + 1, "Resources": items[start:end]}, nil
}

// readBody decodes a JSON request body into out, keeping numbers as written.
func readBody(r *http.Request, out any) *scimError {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "invalidSyntax", "reading body: %v", err)
	}
	if len(b) > maxBody {
		return errorf(http.StatusRequestEntityTooLarge, "", "request body too large")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return errorf(http.StatusBadRequest, "invalidSyntax", "malformed JSON body: %v", err)
	}
	return nil
}

func timeString(t time.Time) string { return t.UTC().Format(time.RFC3339) }
