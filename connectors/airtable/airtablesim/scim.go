package airtablesim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SCIM schema URNs.
const (
	SchemaGroup        = "urn:ietf:params:scim:schemas:core:2.0:Group"
	SchemaUser         = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaPatchOp      = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SchemaListResponse = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	SchemaError        = "urn:ietf:params:scim:api:messages:2.0:Error"
)

// maxSCIMBody bounds a SCIM request body.
const maxSCIMBody = 2 << 20

// scimError is a SCIM error in flight inside a handler.
type scimError struct {
	status   int
	scimType string
	detail   string
}

func (e *scimError) Error() string { return e.detail }

func badRequest(scimType, format string, args ...any) *scimError {
	return &scimError{status: http.StatusBadRequest, scimType: scimType, detail: fmt.Sprintf(format, args...)}
}

// errInvalidGroup is Airtable's answer to an unknown group id: 400, not 404.
var errInvalidGroup = &scimError{status: http.StatusBadRequest, detail: "invalid group ID"}

func (s *Server) writeSCIMError(w http.ResponseWriter, e *scimError) {
	s.mu.Lock()
	asString := s.statusString
	s.mu.Unlock()
	body := map[string]any{"schemas": []string{SchemaError}, "detail": e.detail, "status": e.status}
	if asString {
		body["status"] = strconv.Itoa(e.status)
	}
	if e.scimType != "" {
		body["scimType"] = e.scimType
	}
	writeJSON(w, e.status, body)
}

// writeSCIMFault is the simkit ErrorWriter for SCIM routes (no Retry-After: none is
// documented).
func (s *Server) writeSCIMFault(w http.ResponseWriter, status int, _ time.Duration) {
	detail := http.StatusText(status)
	if status == http.StatusTooManyRequests {
		detail = "Rate limit exceeded. Please try again later"
	}
	s.writeSCIMError(w, &scimError{status: status, detail: detail})
}

func (s *Server) serveSCIM(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.writeSCIMError(w, &scimError{status: http.StatusUnauthorized, detail: "Authentication required"})
		return
	}
	var err *scimError
	switch route(r) {
	case RouteSCIMList:
		err = s.listGroups(w, r)
	case RouteSCIMCreate:
		err = s.createGroup(w, r)
	case RouteSCIMGet:
		err = s.scimGetGroup(w, r)
	case RouteSCIMPut:
		err = s.putGroup(w, r)
	case RouteSCIMPatch:
		err = s.patchGroup(w, r)
	case RouteSCIMDelete:
		err = s.deleteGroup(w, r)
	case RouteSCIMUsers:
		err = s.listUsers(w, r)
	case RouteSCIMUser:
		err = s.getUser(w, r)
	default:
		err = &scimError{status: http.StatusNotFound, detail: "Not found"}
	}
	if err != nil {
		s.writeSCIMError(w, err)
	}
}

// filterRe matches `attr eq "value"`, the only filter form Airtable supports; attribute
// names and the operator are case-insensitive (RFC 7644 §3.4.2.2).
var filterRe = regexp.MustCompile(`(?i)^\s*([a-z]+)\s+eq\s+("(?:[^"\\]|\\.)*")\s*$`)

// parseEqFilter returns the value of `<attr> eq "…"`; ok is false when no filter is given.
func parseEqFilter(r *http.Request, attr string) (value string, ok bool, err *scimError) {
	f, present := r.URL.Query()["filter"]
	if !present {
		return "", false, nil
	}
	m := filterRe.FindStringSubmatch(f[0])
	if m == nil || !strings.EqualFold(m[1], attr) {
		return "", false, badRequest("invalidFilter", "only %s eq \"…\" filters are supported", attr)
	}
	if jerr := json.Unmarshal([]byte(m[2]), &value); jerr != nil {
		return "", false, badRequest("invalidFilter", "malformed filter string: %v", jerr)
	}
	return value, true, nil
}

// paging reads startIndex (1-based, values below 1 mean 1) and count (absent: all).
func (s *Server) paging(r *http.Request, total int) (start, end int, err *scimError) {
	q := r.URL.Query()
	startIndex, count := 1, total
	if v := q.Get("startIndex"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil {
			return 0, 0, badRequest("invalidValue", "startIndex must be an integer")
		}
		startIndex = max(1, n)
	}
	if v := q.Get("count"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 0 {
			return 0, 0, badRequest("invalidValue", "count must be a non-negative integer")
		}
		count = n
	}
	if s.opt.PageSize > 0 && count > s.opt.PageSize {
		count = s.opt.PageSize
	}
	start = min(startIndex-1, total)
	end = min(start+count, total)
	return start, end, nil
}

type listResponse struct {
	Schemas      []string `json:"schemas"`
	TotalResults int      `json:"totalResults"`
	ItemsPerPage int      `json:"itemsPerPage"`
	StartIndex   int      `json:"startIndex"`
	Resources    []any    `json:"Resources"`
}

type scimMemberOut struct {
	Value string `json:"value"`
}

type scimGroupOut struct {
	Schemas     []string        `json:"schemas"`
	ID          string          `json:"id"`
	DisplayName string          `json:"displayName"`
	Members     []scimMemberOut `json:"members,omitempty"`
}

// renderGroup renders a SCIM group; withMembers adds the member list. Callers hold s.mu.
func (s *Server) renderGroup(g *group, withMembers bool) scimGroupOut {
	out := scimGroupOut{Schemas: []string{SchemaGroup}, ID: g.id, DisplayName: g.name}
	if withMembers {
		out.Members = make([]scimMemberOut, len(g.members))
		for i, m := range g.members {
			out.Members[i] = scimMemberOut{Value: s.users[m.u].id}
		}
	}
	return out
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) *scimError {
	name, filtered, ferr := parseEqFilter(r, "displayName")
	if ferr != nil {
		return ferr
	}
	s.mu.Lock()
	var match []*group
	for _, g := range s.groups {
		// displayName is caseExact false in the core schema (RFC 7643 §4.2).
		if g != nil && (!filtered || strings.EqualFold(g.name, name)) {
			match = append(match, g)
		}
	}
	start, end, perr := s.paging(r, len(match))
	if perr != nil {
		s.mu.Unlock()
		return perr
	}
	out := listResponse{Schemas: []string{SchemaListResponse}, TotalResults: len(match), StartIndex: start + 1,
		ItemsPerPage: end - start, Resources: make([]any, 0, end-start)}
	for _, g := range match[start:end] {
		out.Resources = append(out.Resources, s.renderGroup(g, false))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
	return nil
}

// readBody decodes a JSON request body into out, keeping numbers as written.
func readBody(r *http.Request, out any) *scimError {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxSCIMBody+1))
	if err != nil {
		return badRequest("invalidSyntax", "reading body: %v", err)
	}
	if len(b) > maxSCIMBody {
		return &scimError{status: http.StatusRequestEntityTooLarge, detail: "request body too large"}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return badRequest("invalidSyntax", "malformed JSON body: %v", err)
	}
	return nil
}

type groupIn struct {
	Schemas     []string         `json:"schemas"`
	DisplayName *string          `json:"displayName"`
	Members     *[]scimMemberOut `json:"members"`
}

func requireSchema(schemas []string, want string) *scimError {
	if !slices.Contains(schemas, want) {
		return badRequest("invalidValue", "schemas must include %s", want)
	}
	return nil
}

// createGroup creates an empty group: Airtable's create ignores members (populate them
// with PATCH or PUT). The documented answer is 200 with {id, schemas, displayName}.
func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) *scimError {
	var in groupIn
	if err := readBody(r, &in); err != nil {
		return err
	}
	if err := requireSchema(in.Schemas, SchemaGroup); err != nil {
		return err
	}
	if in.DisplayName == nil || strings.TrimSpace(*in.DisplayName) == "" {
		return badRequest("invalidValue", "displayName is required")
	}
	s.mu.Lock()
	if _, taken := s.groupByName[*in.DisplayName]; taken {
		s.mu.Unlock()
		return &scimError{status: http.StatusConflict, scimType: "uniqueness", detail: "displayName is already in use"}
	}
	now := s.now()
	g := &group{id: s.newID("ugp", s.groupTaken), name: *in.DisplayName, created: now, updated: now}
	s.insertGroup(g)
	out := s.renderGroup(g, false)
	s.mu.Unlock()
	s.effects.Created(g.name)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// lookupGroup resolves the path's group id. Callers hold s.mu.
func (s *Server) lookupGroup(r *http.Request) (int32, *scimError) {
	slot, ok := s.groupByID[lastSegment(r)]
	if !ok {
		return 0, errInvalidGroup
	}
	return slot, nil
}

func (s *Server) scimGetGroup(w http.ResponseWriter, r *http.Request) *scimError {
	s.mu.Lock()
	slot, err := s.lookupGroup(r)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	out := s.renderGroup(s.groups[slot], true)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
	return nil
}

// draft is a group being changed by a PUT or PATCH: changes apply to it in order and are
// committed only when every operation succeeded (a PatchOp is all-or-nothing).
type draft struct {
	name    string
	members map[int32]uint8 // user → role
}

func (s *Server) newDraft(g *group) *draft {
	d := &draft{name: g.name, members: make(map[int32]uint8, len(g.members))}
	for _, m := range g.members {
		d.members[m.u] = m.role
	}
	return d
}

// setMembers makes ids the draft's members: each who already was one keeps its role, and
// a newcomer gets the zero role, roleMember.
func (d *draft) setMembers(ids []int32) {
	next := make(map[int32]uint8, len(ids))
	for _, i := range ids {
		next[i] = d.members[i]
	}
	d.members = next
}

// resolveMembers maps [{value}] (or one {value}) to user indexes. Callers hold s.mu.
func (s *Server) resolveMembers(raw json.RawMessage) ([]int32, *scimError) {
	raw = bytes.TrimSpace(raw)
	var refs []scimMemberOut
	object := len(raw) > 0 && raw[0] == '{'
	switch {
	case object && s.opt.MemberValue == MemberValueArray:
		return nil, badRequest("invalidValue", "members value must be an array of {\"value\": userId}")
	case !object && s.opt.MemberValue == MemberValueObject:
		return nil, badRequest("invalidValue", "members value must be an object {\"value\": userId}")
	}
	if object {
		var one scimMemberOut
		if err := json.Unmarshal(raw, &one); err != nil {
			return nil, badRequest("invalidValue", "members value: %v", err)
		}
		refs = []scimMemberOut{one}
	} else if err := json.Unmarshal(raw, &refs); err != nil {
		return nil, badRequest("invalidValue", "members value must be an array of {\"value\": userId}")
	}
	out := make([]int32, 0, len(refs))
	for _, ref := range refs {
		i, ok := s.userByID[ref.Value]
		if !ok {
			return nil, badRequest("invalidValue", "invalid user ID %q", ref.Value)
		}
		out = append(out, i)
	}
	return out, nil
}

// commit applies a draft to the group, records effective member changes and keeps the
// user → groups index. Callers hold s.mu.
func (s *Server) commit(slot int32, d *draft) *scimError {
	g := s.groups[slot]
	if d.name != g.name {
		if strings.TrimSpace(d.name) == "" {
			return badRequest("invalidValue", "displayName must not be empty")
		}
		if other, taken := s.groupByName[d.name]; taken && other != slot {
			return &scimError{status: http.StatusConflict, scimType: "uniqueness", detail: "displayName is already in use"}
		}
	}
	now := s.now()
	changed := d.name != g.name
	if changed {
		delete(s.groupByName, g.name)
		g.name = d.name
		s.groupByName[g.name] = slot
	}
	kept := g.members[:0:0]
	for _, m := range g.members {
		if _, ok := d.members[m.u]; ok {
			kept = append(kept, m)
			delete(d.members, m.u)
			continue
		}
		changed = true
		s.effects.Removed(g.id, s.users[m.u].id)
		u := &s.users[m.u]
		if i := slices.Index(u.groups, slot); i >= 0 {
			u.groups = slices.Delete(u.groups, i, i+1)
		}
	}
	for ui, role := range d.members {
		changed = true
		kept = append(kept, member{u: ui, role: role, created: now})
		s.effects.Added(g.id, s.users[ui].id)
		s.users[ui].groups = append(s.users[ui].groups, slot)
	}
	slices.SortFunc(kept, func(a, b member) int { return int(a.u - b.u) })
	g.members = kept
	if changed {
		g.updated = now
	}
	return nil
}

// putGroup replaces displayName (if given) and members (if given).
func (s *Server) putGroup(w http.ResponseWriter, r *http.Request) *scimError {
	var in groupIn
	if err := readBody(r, &in); err != nil {
		return err
	}
	if err := requireSchema(in.Schemas, SchemaGroup); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, err := s.lookupGroup(r)
	if err != nil {
		return err
	}
	d := s.newDraft(s.groups[slot])
	if in.DisplayName != nil {
		d.name = *in.DisplayName
	}
	if in.Members != nil {
		raw, _ := json.Marshal(*in.Members)
		ids, err := s.resolveMembers(raw)
		if err != nil {
			return err
		}
		d.setMembers(ids)
	}
	if err := s.commit(slot, d); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderGroup(s.groups[slot], false))
	return nil
}

type patchIn struct {
	Schemas    []string `json:"schemas"`
	Operations []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	} `json:"Operations"`
}

// memberFilterRe matches members[value eq "usr…"] (spaces optional, as in Airtable's own
// example `members[value eq\"usr…\"]`).
var memberFilterRe = regexp.MustCompile(`(?i)^members\[\s*value\s+eq\s*("(?:[^"\\]|\\.)*")\s*\]$`)

// patchGroup applies a PatchOp's operations in order to a draft, then commits it.
func (s *Server) patchGroup(w http.ResponseWriter, r *http.Request) *scimError {
	var in patchIn
	if err := readBody(r, &in); err != nil {
		return err
	}
	if err := requireSchema(in.Schemas, SchemaPatchOp); err != nil {
		return err
	}
	if len(in.Operations) == 0 {
		return badRequest("invalidValue", "Operations must not be empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, err := s.lookupGroup(r)
	if err != nil {
		return err
	}
	d := s.newDraft(s.groups[slot])
	for i, op := range in.Operations {
		if err := s.applyOp(d, strings.ToLower(op.Op), strings.TrimSpace(op.Path), op.Value); err != nil {
			err.detail = fmt.Sprintf("operation %d: %s", i, err.detail)
			return err
		}
	}
	if err := s.commit(slot, d); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderGroup(s.groups[slot], true))
	return nil
}

// applyOp applies one PatchOp operation. Callers hold s.mu.
func (s *Server) applyOp(d *draft, op, path string, value json.RawMessage) *scimError {
	switch op {
	case "add", "replace":
		return s.applySet(d, op, path, value)
	case "remove":
		return s.applyRemove(d, path, value)
	}
	return badRequest("invalidSyntax", "unsupported op %q", op)
}

// applySet applies an add or a replace to members, to displayName, or, with no path, to
// each attribute of the value's object. Callers hold s.mu.
func (s *Server) applySet(d *draft, op, path string, value json.RawMessage) *scimError {
	switch lower := strings.ToLower(path); {
	case lower == "members":
		ids, err := s.resolveMembers(value)
		if err != nil {
			return err
		}
		if op == "replace" {
			d.setMembers(ids)
			return nil
		}
		for _, i := range ids {
			if _, ok := d.members[i]; !ok {
				d.members[i] = roleMember
			}
		}
		return nil
	case lower == "displayname":
		var name string
		if err := json.Unmarshal(value, &name); err != nil {
			return badRequest("invalidValue", "displayName must be a string")
		}
		d.name = name
		return nil
	case path == "":
		// No path: the value is an object of attributes (RFC 7644 §3.5.2.1).
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(value, &obj); err != nil {
			return badRequest("invalidValue", "value must be an object when path is absent")
		}
		for k, v := range obj {
			if err := s.applyOp(d, op, k, v); err != nil {
				return err
			}
		}
		return nil
	}
	return badRequest("invalidPath", "unsupported path %q", path)
}

// applyRemove applies a remove: of the one member a members[value eq "…"] path names, or,
// with the path members, of the value's members (no value: of every member). Callers hold
// s.mu.
func (s *Server) applyRemove(d *draft, path string, value json.RawMessage) *scimError {
	if m := memberFilterRe.FindStringSubmatch(path); m != nil {
		return s.removeFiltered(d, path, m[1])
	}
	if strings.ToLower(path) == "members" {
		if len(bytes.TrimSpace(value)) == 0 {
			clear(d.members)
			return nil
		}
		ids, err := s.resolveMembers(value)
		if err != nil {
			return err
		}
		for _, i := range ids {
			delete(d.members, i)
		}
		return nil
	}
	if path == "" {
		return badRequest("noTarget", "remove needs a path")
	}
	return badRequest("invalidPath", "unsupported path %q", path)
}

// removeFiltered removes the member whose user id is quoted (the JSON string of a
// members[value eq "…"] path). A user who is not a member is a noTarget error unless the
// server is lenient about removals. Callers hold s.mu.
func (s *Server) removeFiltered(d *draft, path, quoted string) *scimError {
	var id string
	if err := json.Unmarshal([]byte(quoted), &id); err != nil {
		return badRequest("invalidFilter", "malformed filter string in path")
	}
	i, known := s.userByID[id]
	if _, present := d.members[i]; !known || !present {
		if s.lenientRemove {
			return nil
		}
		return badRequest("noTarget", "no member matches %s", path)
	}
	delete(d.members, i)
	return nil
}

// deleteGroup deletes the group; users are kept. 204 with an empty body.
func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) *scimError {
	s.mu.Lock()
	slot, err := s.lookupGroup(r)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	g := s.groups[slot]
	for _, m := range g.members {
		u := &s.users[m.u]
		if i := slices.Index(u.groups, slot); i >= 0 {
			u.groups = slices.Delete(u.groups, i, i+1)
		}
	}
	delete(s.groupByID, g.id)
	if s.groupByName[g.name] == slot {
		delete(s.groupByName, g.name)
	}
	s.groups[slot] = nil
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type scimName struct {
	FamilyName string `json:"familyName"`
	GivenName  string `json:"givenName"`
}

type scimMeta struct {
	Created      string `json:"created"`
	Location     string `json:"location"`
	ResourceType string `json:"resourceType"`
}

type scimUserOut struct {
	Active   bool     `json:"active"`
	ID       string   `json:"id"`
	Meta     scimMeta `json:"meta"`
	Name     scimName `json:"name"`
	Schemas  []string `json:"schemas"`
	UserName string   `json:"userName"`
}

func renderUser(u *user) scimUserOut {
	return scimUserOut{
		Active: u.active, ID: u.id, UserName: u.email, Schemas: []string{SchemaUser},
		Name: scimName{FamilyName: u.last, GivenName: u.first},
		Meta: scimMeta{Created: timeString(u.created), Location: SCIMPrefix + "/Users/" + u.id, ResourceType: "User"},
	}
}

// listUsers pages users (startIndex/count) and filters by userName eq "email"
// (case-insensitive, the email being the SCIM userName).
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) *scimError {
	email, filtered, ferr := parseEqFilter(r, "userName")
	if ferr != nil {
		return ferr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var match []int32
	if filtered {
		if i, ok := s.userByEmail[strings.ToLower(strings.TrimSpace(email))]; ok {
			match = []int32{i}
		}
	}
	total := len(match)
	if !filtered {
		total = len(s.users)
	}
	start, end, perr := s.paging(r, total)
	if perr != nil {
		return perr
	}
	out := listResponse{Schemas: []string{SchemaListResponse}, TotalResults: total, StartIndex: start + 1,
		ItemsPerPage: end - start, Resources: make([]any, 0, end-start)}
	for k := start; k < end; k++ {
		i := int32(k)
		if filtered {
			i = match[k]
		}
		out.Resources = append(out.Resources, renderUser(&s.users[i]))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) *scimError {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.userByID[lastSegment(r)]
	if !ok {
		return &scimError{status: http.StatusNotFound, detail: "User not found"}
	}
	writeJSON(w, http.StatusOK, renderUser(&s.users[i]))
	return nil
}
