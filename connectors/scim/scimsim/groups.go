package scimsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// etag is a group's entity tag (weak: the representation may vary with the query).
func etag(g *group) string { return `W/"` + strconv.Itoa(g.version) + `"` }

// renderGroup renders a SCIM Group; members are left out when the request excludes them.
// Callers hold s.mu.
func (s *Server) renderGroup(g *group, withMembers bool) map[string]any {
	meta := map[string]any{"resourceType": "Group", "created": timeString(g.created),
		"lastModified": timeString(g.changed), "location": Prefix + "/Groups/" + g.id}
	if !s.knobs.noETag {
		meta["version"] = etag(g)
	}
	out := map[string]any{"schemas": []string{SchemaGroup}, "id": g.id, "displayName": g.name, "meta": meta}
	if withMembers {
		ms := make([]any, 0, len(g.members))
		for _, id := range g.members {
			m := map[string]any{"value": id, "type": "User", "$ref": Prefix + "/Users/" + id}
			if u := s.byUser[id]; u != nil {
				m["display"] = strings.TrimSpace(u.first + " " + u.last)
			}
			ms = append(ms, m)
		}
		out["members"] = ms
	}
	return out
}

// wantMembers reads excludedAttributes (RFC 7644 §3.4.2.5) for members.
func wantMembers(r *http.Request) bool {
	for _, v := range strings.Split(r.URL.Query().Get("excludedAttributes"), ",") {
		if strings.EqualFold(strings.TrimSpace(v), "members") {
			return false
		}
	}
	return true
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) *scimError {
	clauses, filtered, ferr := s.parseFilter(r, "displayName", "id")
	if ferr != nil {
		return ferr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []any
	for _, g := range s.groups {
		if g == nil || filtered && !matches(clauses, func(attr string) []string {
			if attr == "id" {
				return []string{g.id}
			}
			return []string{g.name}
		}) {
			continue
		}
		items = append(items, s.renderGroup(g, wantMembers(r)))
	}
	out, err := s.page(r, items)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// writeGroup answers with one group and its ETag. Callers hold s.mu.
func (s *Server) writeGroup(w http.ResponseWriter, r *http.Request, status int, g *group) {
	if !s.knobs.noETag {
		w.Header().Set("ETag", etag(g))
	}
	writeJSON(w, status, s.renderGroup(g, wantMembers(r)))
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) *scimError {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.byID[lastSegment(r)]
	if g == nil {
		return errNotFound
	}
	s.writeGroup(w, r, http.StatusOK, g)
	return nil
}

type memberIn struct {
	Value string `json:"value"`
	Type  string `json:"type"`
}

type groupIn struct {
	Schemas     []string    `json:"schemas"`
	DisplayName *string     `json:"displayName"`
	Members     *[]memberIn `json:"members"`
}

// nameTaken reports whether another group holds name (displayName is unique here, compared
// case-insensitively as caseExact false says). Callers hold s.mu.
func (s *Server) nameTaken(name string, except *group) bool {
	for _, g := range s.groups {
		if g != nil && g != except && strings.EqualFold(g.name, name) {
			return true
		}
	}
	return false
}

var errUniqueness = &scimError{status: http.StatusConflict, scimType: "uniqueness", detail: "displayName is already in use"}

// createGroup creates a group, with members if the body has them: 201, Location, ETag.
func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) *scimError {
	in, serr := readGroup(r)
	if serr != nil {
		return serr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nameTaken(*in.DisplayName, nil) {
		return errUniqueness
	}
	d := &draft{name: *in.DisplayName}
	if in.Members != nil {
		if err := s.setMembers(d, *in.Members); err != nil {
			return err
		}
	}
	now := s.now()
	g := &group{id: s.newID(), name: d.name, created: now, changed: now, version: 1}
	s.groups = append(s.groups, g)
	s.byID[g.id] = g
	s.effects.Created(g.name)
	s.commit(g, d)
	w.Header().Set("Location", Prefix+"/Groups/"+g.id)
	s.writeGroup(w, r, http.StatusCreated, g)
	return nil
}

// draft is a group being changed by a PUT or PATCH: operations apply to it in order and it
// is committed only when all of them succeeded.
type draft struct {
	name    string
	members []string
}

// setMembers replaces a draft's members, each of which must be a known user. Callers hold
// s.mu.
func (s *Server) setMembers(d *draft, ms []memberIn) *scimError {
	d.members = d.members[:0:0]
	return s.addMembers(d, ms)
}

func (s *Server) addMembers(d *draft, ms []memberIn) *scimError {
	for _, m := range ms {
		if s.byUser[m.Value] == nil {
			return errorf(http.StatusBadRequest, "invalidValue", "member %q is not a known user", m.Value)
		}
		if !slices.Contains(d.members, m.Value) {
			d.members = append(d.members, m.Value)
		}
	}
	return nil
}

// checkIfMatch answers 412 when If-Match names another version (RFC 7644 §3.14). Callers
// hold s.mu.
func (s *Server) checkIfMatch(r *http.Request, g *group) *scimError {
	want := r.Header.Get("If-Match")
	if want == "" || s.knobs.noETag || want == "*" || want == etag(g) {
		return nil
	}
	return errorf(http.StatusPreconditionFailed, "", "resource version %s does not match If-Match", etag(g))
}

// commit applies a draft, counting effective member changes. Callers hold s.mu.
func (s *Server) commit(g *group, d *draft) {
	changed := d.name != g.name
	for _, id := range g.members {
		if !slices.Contains(d.members, id) {
			s.effects.Removed(g.id, id)
			changed = true
		}
	}
	for _, id := range d.members {
		if !slices.Contains(g.members, id) {
			s.effects.Added(g.id, id)
			changed = true
		}
	}
	g.name, g.members = d.name, d.members
	if changed {
		g.changed, g.version = s.now(), g.version+1
	}
}

// putGroup replaces the group: displayName is required and members absent means none
// (PUT replaces every attribute, RFC 7644 §3.5.1); id and meta are read-only and ignored.
func (s *Server) putGroup(w http.ResponseWriter, r *http.Request) *scimError {
	in, serr := readGroup(r)
	if serr != nil {
		return serr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, serr := s.groupToWrite(r)
	if serr != nil {
		return serr
	}
	d := &draft{name: *in.DisplayName}
	var ms []memberIn
	if in.Members != nil {
		ms = *in.Members
	}
	if s.knobs.membersReadOnly && !sameMembers(g.members, ms) {
		return errorf(http.StatusBadRequest, "mutability", "members is readOnly")
	}
	if err := s.setMembers(d, ms); err != nil {
		return err
	}
	if s.nameTaken(d.name, g) {
		return errUniqueness
	}
	s.commit(g, d)
	s.writeGroup(w, r, http.StatusOK, g)
	return nil
}

func sameMembers(have []string, ms []memberIn) bool {
	if len(have) != len(ms) {
		return false
	}
	for _, m := range ms {
		if !slices.Contains(have, m.Value) {
			return false
		}
	}
	return true
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) *scimError {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, serr := s.groupToWrite(r)
	if serr != nil {
		return serr
	}
	delete(s.byID, g.id)
	for i, x := range s.groups {
		if x == g {
			s.groups[i] = nil
		}
	}
	w.WriteHeader(http.StatusNoContent)
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

// patchGroup applies a PatchOp's operations in order to a draft and commits it only when
// all succeeded (RFC 7644 §3.5.2: a PatchOp is atomic).
func (s *Server) patchGroup(w http.ResponseWriter, r *http.Request) *scimError {
	s.mu.Lock()
	noPatch := s.knobs.noPatch
	s.mu.Unlock()
	if noPatch {
		return errorf(http.StatusNotImplemented, "", "PATCH is not supported")
	}
	var in patchIn
	if err := readBody(r, &in); err != nil {
		return err
	}
	if !slices.Contains(in.Schemas, SchemaPatchOp) {
		return errorf(http.StatusBadRequest, "invalidValue", "schemas must include %s", SchemaPatchOp)
	}
	if len(in.Operations) == 0 {
		return errorf(http.StatusBadRequest, "invalidValue", "Operations must not be empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, serr := s.groupToWrite(r)
	if serr != nil {
		return serr
	}
	d := &draft{name: g.name, members: slices.Clone(g.members)}
	for i, op := range in.Operations {
		if err := s.applyOp(d, strings.ToLower(op.Op), strings.TrimSpace(op.Path), op.Value); err != nil {
			err.detail = fmt.Sprintf("operation %d: %s", i, err.detail)
			return err
		}
	}
	if s.knobs.membersReadOnly && !slices.Equal(d.members, g.members) {
		return errorf(http.StatusBadRequest, "mutability", "members is readOnly")
	}
	if d.name != g.name && s.nameTaken(d.name, g) {
		return errUniqueness
	}
	if strings.TrimSpace(d.name) == "" {
		return errorf(http.StatusBadRequest, "invalidValue", "displayName must not be empty")
	}
	s.commit(g, d)
	s.writeGroup(w, r, http.StatusOK, g)
	return nil
}

// memberFilterRe matches members[value eq "…"].
var memberFilterRe = regexp.MustCompile(`(?i)^members\[\s*value\s+eq\s+("(?:[^"\\]|\\.)*")\s*\]$`)

// memberValues reads a members value: an array of {value} (the RFC's form) or one object.
func memberValues(raw json.RawMessage) ([]memberIn, *scimError) {
	raw = bytes.TrimSpace(raw)
	var ms []memberIn
	if len(raw) > 0 && raw[0] == '{' {
		var one memberIn
		if err := json.Unmarshal(raw, &one); err != nil {
			return nil, errorf(http.StatusBadRequest, "invalidValue", "members value: %v", err)
		}
		return []memberIn{one}, nil
	}
	if err := json.Unmarshal(raw, &ms); err != nil {
		return nil, errorf(http.StatusBadRequest, "invalidValue", "members value must be an array of {\"value\": id}")
	}
	return ms, nil
}

// applyOp applies one operation to a draft. Callers hold s.mu.
func (s *Server) applyOp(d *draft, op, path string, value json.RawMessage) *scimError {
	lower := strings.ToLower(path)
	switch {
	case op != "add" && op != "replace" && op != "remove":
		return errorf(http.StatusBadRequest, "invalidSyntax", "unknown op %q", op)
	case path == "" && op == "remove":
		return errorf(http.StatusBadRequest, "noTarget", "remove needs a path")
	case path == "":
		// No path: the value is an object of attributes (RFC 7644 §3.5.2.1, §3.5.2.3).
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(value, &obj); err != nil {
			return errorf(http.StatusBadRequest, "invalidValue", "value must be an object when path is absent")
		}
		for k, v := range obj {
			if err := s.applyOp(d, op, k, v); err != nil {
				return err
			}
		}
		return nil
	case lower == "displayname" && op != "remove":
		var name string
		if err := json.Unmarshal(value, &name); err != nil {
			return errorf(http.StatusBadRequest, "invalidValue", "displayName must be a string")
		}
		d.name = name
		return nil
	case lower == "members":
		return s.applyMembers(d, op, value)
	case op == "remove" && memberFilterRe.MatchString(path):
		var id string
		if err := json.Unmarshal([]byte(memberFilterRe.FindStringSubmatch(path)[1]), &id); err != nil {
			return errorf(http.StatusBadRequest, "invalidFilter", "malformed string in path")
		}
		if !slices.Contains(d.members, id) {
			if s.knobs.lenientRemove {
				return nil
			}
			return errorf(http.StatusBadRequest, "noTarget", "no member matches %s", path)
		}
		d.members = slices.DeleteFunc(d.members, func(m string) bool { return m == id })
		return nil
	}
	return errorf(http.StatusBadRequest, "invalidPath", "unsupported path %q", path)
}

// applyMembers applies an operation whose path is members. Callers hold s.mu.
func (s *Server) applyMembers(d *draft, op string, value json.RawMessage) *scimError {
	if op == "remove" && len(bytes.TrimSpace(value)) == 0 {
		d.members = nil // remove without a filter clears the attribute
		return nil
	}
	ms, err := memberValues(value)
	if err != nil {
		return err
	}
	switch op {
	case "add":
		return s.addMembers(d, ms)
	case "replace":
		return s.setMembers(d, ms)
	}
	for _, m := range ms {
		d.members = slices.DeleteFunc(d.members, func(id string) bool { return id == m.Value })
	}
	return nil
}

// readGroup reads a Group resource body for a create or a replace: the Group schema and a
// non-blank displayName are required (RFC 7643 §4.2).
func readGroup(r *http.Request) (groupIn, *scimError) {
	var in groupIn
	if err := readBody(r, &in); err != nil {
		return in, err
	}
	if !slices.Contains(in.Schemas, SchemaGroup) {
		return in, errorf(http.StatusBadRequest, "invalidValue", "schemas must include %s", SchemaGroup)
	}
	if in.DisplayName == nil || strings.TrimSpace(*in.DisplayName) == "" {
		return in, errorf(http.StatusBadRequest, "invalidValue", "displayName is required")
	}
	return in, nil
}

// groupToWrite is the group a PUT, PATCH or DELETE names, once its If-Match (where ETags
// are on) matches; s.mu is held.
func (s *Server) groupToWrite(r *http.Request) (*group, *scimError) {
	g := s.byID[lastSegment(r)]
	if g == nil {
		return nil, errNotFound
	}
	if err := s.checkIfMatch(r, g); err != nil {
		return nil, err
	}
	return g, nil
}
