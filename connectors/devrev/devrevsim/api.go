package devrevsim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// The request rules below are transcribed from the beta spec's *-request schemas
// (devrev_test in the connector package checks the connector's requests against the spec
// file itself). Unknown top-level fields are refused with invalid_field: the real API is
// lenient about some, but a typo such as `members` for `member` must not pass unnoticed.

type fieldKind int

const (
	fString fieldKind = iota
	fInt
	fBool
	fStrings // array of strings (enum-checked when enum is set)
	fArray   // array of anything
	fObject
)

type field struct {
	kind fieldKind
	enum []string
	// nullable accepts JSON null (groups.update owner clears the owner).
	nullable bool
}

type rules struct {
	fields   map[string]field
	required []string
	// methods are the HTTP methods the path serves.
	methods []string
}

var (
	listMode     = []string{"after", "before"}
	groupTypes   = []string{"dynamic", "static"}
	memberTypes  = []string{"dev_user", "rev_user"}
	userStates   = []string{"active", "deactivated", "deleted", "locked", "shadow", "unassigned"}
	readMethods  = []string{http.MethodGet, http.MethodPost}
	writeMethods = []string{http.MethodPost}
)

var endpoints = map[string]rules{
	"groups.list": {methods: readMethods, fields: map[string]field{
		"cursor": {kind: fString}, "limit": {kind: fInt}, "mode": {kind: fString, enum: listMode},
		"created_by": {kind: fStrings}, "group_type": {kind: fStrings, enum: groupTypes},
		"ingestion_source": {kind: fStrings, enum: []string{"airdrop", "scim"}}, "is_default": {kind: fBool},
		"member_type": {kind: fStrings, enum: memberTypes}, "name": {kind: fStrings}, "sort_by": {kind: fStrings},
		"sync_metadata": {kind: fObject},
	}},
	"groups.get": {methods: readMethods, required: []string{"id"}, fields: map[string]field{"id": {kind: fString}}},
	"groups.create": {methods: writeMethods, required: []string{"description", "name"}, fields: map[string]field{
		"name": {kind: fString}, "description": {kind: fString}, "type": {kind: fString, enum: groupTypes},
		"member_type": {kind: fString, enum: memberTypes}, "owner": {kind: fString}, "dynamic_group_info": {kind: fObject},
	}},
	"groups.update": {methods: writeMethods, required: []string{"id"}, fields: map[string]field{
		"id": {kind: fString}, "name": {kind: fString}, "description": {kind: fString},
		"owner": {kind: fString, nullable: true}, "dynamic_group_info": {kind: fObject},
	}},
	"groups.members.list": {methods: readMethods, required: []string{"group"}, fields: map[string]field{
		"group": {kind: fString}, "cursor": {kind: fString}, "limit": {kind: fInt}, "mode": {kind: fString, enum: listMode},
	}},
	"groups.members.add": {methods: writeMethods, required: []string{"group", "member"}, fields: map[string]field{
		"group": {kind: fString}, "member": {kind: fString}, "member_rev_org": {kind: fString},
	}},
	"groups.members.remove": {methods: writeMethods, required: []string{"group", "member"}, fields: map[string]field{
		"group": {kind: fString}, "member": {kind: fString}, "member_rev_org": {kind: fString},
	}},
	"dev-users.list": {methods: readMethods, fields: map[string]field{
		"cursor": {kind: fString}, "limit": {kind: fInt}, "mode": {kind: fString, enum: listMode},
		"email": {kind: fStrings}, "state": {kind: fStrings, enum: userStates}, "sort_by": {kind: fStrings},
		"created_date": {kind: fObject}, "modified_date": {kind: fObject}, "custom_fields": {kind: fObject},
		"external_identity": {kind: fArray},
	}},
	"dev-users.get": {methods: readMethods, required: []string{"id"}, fields: map[string]field{"id": {kind: fString}}},
	"rev-users.get": {methods: readMethods, required: []string{"id"}, fields: map[string]field{"id": {kind: fString}}},
}

// Endpoints returns the operation names the simulator serves, sorted.
func Endpoints() []string {
	out := make([]string, 0, len(endpoints))
	for k := range endpoints {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// EndpointRules reports, for the spec check, the fields an endpoint accepts and requires.
func EndpointRules(endpoint string) (fields, required []string, ok bool) {
	r, ok := endpoints[endpoint]
	if !ok {
		return nil, nil, false
	}
	for k := range r.fields {
		fields = append(fields, k)
	}
	sort.Strings(fields)
	return fields, append([]string(nil), r.required...), true
}

func routeLabel(r *http.Request) string {
	name := strings.TrimPrefix(r.URL.Path, "/")
	if _, ok := endpoints[name]; ok {
		return name
	}
	return "unknown"
}

type badRequest struct {
	typ, msg string
	extra    map[string]any
}

func (e *badRequest) Error() string { return e.typ + ": " + e.msg }

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "bool"
	case json.Number:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "object"
}

func typeErr(name, expected string, v any) *badRequest {
	return &badRequest{typ: "unexpected_json_type", msg: fmt.Sprintf("field %s must be %s", name, expected),
		extra: map[string]any{"field_name": name, "expected": expected, "actual": jsonType(v)}}
}

func enumErr(name, value string, allowed []string) *badRequest {
	return &badRequest{typ: "invalid_enum_value", msg: fmt.Sprintf("invalid value %q for field %s", value, name),
		extra: map[string]any{"field_name": name, "value": value, "allowed_values": allowed}}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// validate checks a request body against the endpoint's rules.
func validate(rl rules, body map[string]any) *badRequest {
	for _, k := range rl.required {
		if v, ok := body[k]; !ok || v == nil {
			return &badRequest{typ: "missing_required_field", msg: "missing required field " + k,
				extra: map[string]any{"field_name": k}}
		}
	}
	for name, v := range body {
		f, ok := rl.fields[name]
		if !ok {
			return &badRequest{typ: "invalid_field", msg: "unknown field " + name, extra: map[string]any{"field_name": name}}
		}
		if v == nil {
			if f.nullable {
				continue
			}
			return typeErr(name, expected(f.kind), v)
		}
		switch f.kind {
		case fString:
			sv, ok := v.(string)
			if !ok {
				return typeErr(name, "string", v)
			}
			if f.enum != nil && !contains(f.enum, sv) {
				return enumErr(name, sv, f.enum)
			}
		case fInt:
			n, ok := v.(json.Number)
			if !ok {
				return typeErr(name, "number", v)
			}
			if _, err := n.Int64(); err != nil {
				return typeErr(name, "number", v)
			}
		case fBool:
			if _, ok := v.(bool); !ok {
				return typeErr(name, "bool", v)
			}
		case fStrings:
			arr, ok := v.([]any)
			if !ok {
				return typeErr(name, "array", v)
			}
			for _, item := range arr {
				sv, ok := item.(string)
				if !ok {
					return typeErr(name, "string", item)
				}
				if f.enum != nil && !contains(f.enum, sv) {
					return enumErr(name, sv, f.enum)
				}
			}
		case fArray:
			if _, ok := v.([]any); !ok {
				return typeErr(name, "array", v)
			}
		case fObject:
			if _, ok := v.(map[string]any); !ok {
				return typeErr(name, "object", v)
			}
		}
	}
	return nil
}

func expected(k fieldKind) string {
	switch k {
	case fInt:
		return "number"
	case fBool:
		return "bool"
	case fStrings, fArray:
		return "array"
	case fObject:
		return "object"
	}
	return "string"
}

// readBody turns a POST JSON body or GET query (arrays comma-separated, explode: false)
// into one field map.
func readBody(r *http.Request, rl rules) (map[string]any, *badRequest) {
	body := map[string]any{}
	if r.Method == http.MethodGet {
		for k, vs := range r.URL.Query() {
			v := strings.Join(vs, ",")
			switch rl.fields[k].kind {
			case fStrings, fArray:
				items := []any{}
				for _, p := range strings.Split(v, ",") {
					items = append(items, p)
				}
				body[k] = items
			case fInt:
				body[k] = json.Number(v)
			case fBool:
				b, err := strconv.ParseBool(v)
				if err != nil {
					return nil, typeErr(k, "bool", v)
				}
				body[k] = b
			default:
				body[k] = v
			}
		}
		return body, nil
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, &badRequest{typ: "bad_request", msg: "reading body"}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return body, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		return nil, &badRequest{typ: "parse_error", msg: "request body is not a JSON object"}
	}
	return body, nil
}

func (s *Server) authorized(r *http.Request) bool {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	tok := strings.TrimSpace(strings.TrimPrefix(h, "Bearer "))
	if tok == "" {
		return false
	}
	return s.opts.Token == "" || tok == s.opts.Token
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	rl, ok := endpoints[name]
	if !ok || !contains(rl.methods, r.Method) {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "route not found"})
		return
	}
	if !s.takeQuota(w) {
		return
	}
	if !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, "unauthenticated", "Invalid or missing token", nil)
		return
	}
	body, bad := readBody(r, rl)
	if bad == nil {
		bad = validate(rl, body)
	}
	if bad != nil {
		writeError(w, http.StatusBadRequest, bad.typ, bad.msg, bad.extra)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	status, resp, bad := s.dispatch(name, body)
	if bad != nil {
		st := http.StatusBadRequest
		switch bad.typ {
		case "not_found":
			st = http.StatusNotFound
		case "conflict":
			st = http.StatusConflict
		case "forbidden":
			st = http.StatusForbidden
		}
		writeError(w, st, bad.typ, bad.msg, bad.extra)
		return
	}
	writeJSON(w, status, resp)
}

func str(body map[string]any, k string) string {
	v, _ := body[k].(string)
	return v
}

func strs(body map[string]any, k string) []string {
	arr, _ := body[k].([]any)
	out := make([]string, 0, len(arr))
	for _, v := range arr {
		out = append(out, v.(string))
	}
	return out
}

func notFound(what string) *badRequest {
	return &badRequest{typ: "not_found", msg: what + " not found"}
}

func (s *Server) dispatch(name string, body map[string]any) (int, any, *badRequest) {
	switch name {
	case "groups.list":
		return s.groupsList(body)
	case "groups.get":
		idx, ok := s.lookupGroup(str(body, "id"))
		if !ok {
			return 0, nil, notFound("group")
		}
		return http.StatusOK, map[string]any{"group": s.renderGroup(idx)}, nil
	case "groups.create":
		return s.groupsCreate(body)
	case "groups.update":
		return s.groupsUpdate(body)
	case "groups.members.list":
		return s.membersList(body)
	case "groups.members.add", "groups.members.remove":
		return s.membersWrite(name == "groups.members.add", body)
	case "dev-users.list":
		return s.devUsersList(body)
	case "dev-users.get":
		idx, ok := s.lookupDevUser(str(body, "id"))
		if !ok {
			return 0, nil, notFound("dev user")
		}
		return http.StatusOK, map[string]any{"dev_user": s.renderDevUser(idx)}, nil
	case "rev-users.get":
		idx, ok := s.lookupRevUser(str(body, "id"))
		if !ok {
			return 0, nil, notFound("rev user")
		}
		return http.StatusOK, map[string]any{"rev_user": s.renderRevSummary(idx)}, nil
	}
	return 0, nil, notFound("route")
}

// Cursors are opaque to clients: base64 of "<endpoint>:<next index>:<serial>". The serial
// makes every cursor handed out distinct, as a server's signed cursors would be.

func (s *Server) encodeCursor(endpoint string, next int) string {
	s.cursorSerial++
	return base64.RawURLEncoding.EncodeToString([]byte(endpoint + ":" + strconv.Itoa(next) + ":" + strconv.FormatUint(s.cursorSerial, 10)))
}

func decodeCursor(endpoint, c string) (int, *badRequest) {
	if c == "" {
		return 0, nil
	}
	bad := &badRequest{typ: "bad_request", msg: "invalid cursor"}
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, bad
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 3 || parts[0] != endpoint {
		return 0, bad
	}
	num := parts[1]
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, bad
	}
	return n, nil
}

// pageParams reads cursor, limit and mode; mode before is not simulated.
func (s *Server) pageParams(endpoint string, body map[string]any) (start, limit int, bad *badRequest) {
	if m := str(body, "mode"); m == "before" {
		return 0, 0, &badRequest{typ: "bad_request", msg: "mode before is not supported by the simulator"}
	}
	start, bad = decodeCursor(endpoint, str(body, "cursor"))
	if bad != nil {
		return 0, 0, bad
	}
	if str(body, "cursor") != "" && s.ignoreCursor[endpoint] > 0 {
		s.ignoreCursor[endpoint]--
		start = 0
	}
	limit = s.opts.PageSize
	if n, ok := body["limit"].(json.Number); ok {
		v, _ := n.Int64()
		if v < 1 || (s.opts.MaxPageSize > 0 && v > int64(s.opts.MaxPageSize)) {
			return 0, 0, &badRequest{typ: "bad_request", msg: fmt.Sprintf("limit %d out of range", v)}
		}
		limit = int(v)
	}
	return start, limit, nil
}

// page collects up to limit matching indexes from start and says where the next page
// starts, or -1 when no further match exists.
func page(n, start, limit int, match func(i int) bool) (idxs []int, next int) {
	next = -1
	for i := start; i < n; i++ {
		if !match(i) {
			continue
		}
		if len(idxs) == limit {
			return idxs, idxs[len(idxs)-1] + 1
		}
		idxs = append(idxs, i)
	}
	return idxs, next
}

func (s *Server) nextCursor(endpoint string, body map[string]any, next int) *string {
	if cur := str(body, "cursor"); cur != "" && s.repeatCursor[endpoint] > 0 {
		s.repeatCursor[endpoint]--
		return &cur
	}
	if next < 0 {
		return nil
	}
	c := s.encodeCursor(endpoint, next)
	return &c
}

func (s *Server) groupsList(body map[string]any) (int, any, *badRequest) {
	start, limit, bad := s.pageParams("groups.list", body)
	if bad != nil {
		return 0, nil, bad
	}
	names, types, mtypes := strs(body, "name"), strs(body, "group_type"), strs(body, "member_type")
	isDefault, hasDefault := body["is_default"].(bool)
	idxs, next := page(len(s.groups), start, limit, func(i int) bool {
		g := s.groups[i]
		if len(names) > 0 && !contains(names, g.name) {
			return false
		}
		if len(types) > 0 {
			t := "static"
			if g.dynamic {
				t = "dynamic"
			}
			if !contains(types, t) {
				return false
			}
		}
		if len(mtypes) > 0 && !contains(mtypes, g.memberType) {
			return false
		}
		return !hasDefault || g.isDefault == isDefault
	})
	out := make([]groupJSON, len(idxs))
	for i, idx := range idxs {
		out[i] = s.renderGroup(int32(idx))
	}
	return http.StatusOK, struct {
		Groups     []groupJSON `json:"groups"`
		NextCursor *string     `json:"next_cursor,omitempty"`
	}{out, s.nextCursor("groups.list", body, next)}, nil
}

func (s *Server) groupsCreate(body map[string]any) (int, any, *badRequest) {
	name := str(body, "name")
	if strings.TrimSpace(name) == "" {
		return 0, nil, &badRequest{typ: "bad_request", msg: "name must not be empty"}
	}
	if _, dup := s.groupByName[name]; dup {
		return 0, nil, &badRequest{typ: "conflict", msg: "a group with the same name already exists"}
	}
	dynamic := str(body, "type") == "dynamic"
	if _, has := body["dynamic_group_info"]; dynamic && !has {
		return 0, nil, &badRequest{typ: "missing_required_field", msg: "missing required field dynamic_group_info",
			extra: map[string]any{"field_name": "dynamic_group_info"}}
	}
	g := &group{name: name, description: str(body, "description"), dynamic: dynamic, memberType: "dev_user", owner: -1}
	if mt := str(body, "member_type"); mt != "" {
		g.memberType = mt
	}
	if o := str(body, "owner"); o != "" {
		idx, ok := s.lookupDevUser(o)
		if !ok {
			return 0, nil, &badRequest{typ: "invalid_id", msg: "owner is not a dev user", extra: map[string]any{"field_name": "owner"}}
		}
		g.owner = idx
	}
	g.created = s.now()
	g.modified = g.created
	idx := int32(len(s.groups))
	s.groups = append(s.groups, g)
	s.groupByName[name] = idx
	s.effects.Created(name)
	return http.StatusCreated, map[string]any{"group": s.renderGroup(idx)}, nil
}

func (s *Server) groupsUpdate(body map[string]any) (int, any, *badRequest) {
	idx, ok := s.lookupGroup(str(body, "id"))
	if !ok {
		return 0, nil, notFound("group")
	}
	g := s.groups[idx]
	if g.isDefault {
		return 0, nil, &badRequest{typ: "forbidden", msg: "default groups cannot be updated"}
	}
	if _, has := body["dynamic_group_info"]; has && !g.dynamic {
		return 0, nil, &badRequest{typ: "bad_request", msg: "dynamic_group_info on a static group"}
	}
	if name, has := body["name"].(string); has && name != g.name {
		if strings.TrimSpace(name) == "" {
			return 0, nil, &badRequest{typ: "bad_request", msg: "name must not be empty"}
		}
		if _, dup := s.groupByName[name]; dup {
			return 0, nil, &badRequest{typ: "conflict", msg: "a group with the same name already exists"}
		}
		delete(s.groupByName, g.name)
		g.name = name
		s.groupByName[name] = idx
	}
	if d, has := body["description"].(string); has {
		g.description = d
	}
	if o, has := body["owner"]; has {
		if o == nil {
			g.owner = -1
		} else if u, ok := s.lookupDevUser(o.(string)); ok {
			g.owner = u
		} else {
			return 0, nil, &badRequest{typ: "invalid_id", msg: "owner is not a dev user", extra: map[string]any{"field_name": "owner"}}
		}
	}
	g.modified = s.now()
	return http.StatusOK, map[string]any{"group": s.renderGroup(idx)}, nil
}

type memberItem struct {
	Member       userSummary `json:"member"`
	MemberRevOrg *orgSummary `json:"member_rev_org,omitempty"`
}

func (s *Server) membersList(body map[string]any) (int, any, *badRequest) {
	gidx, ok := s.lookupGroup(str(body, "group"))
	if !ok {
		return 0, nil, notFound("group")
	}
	start, limit, bad := s.pageParams("groups.members.list", body)
	if bad != nil {
		return 0, nil, bad
	}
	g := s.groups[gidx]
	idxs, next := page(len(g.members), start, limit, func(int) bool { return true })
	out := make([]memberItem, len(idxs))
	for i, mi := range idxs {
		m := g.members[mi]
		switch m.kind {
		case kindDev:
			out[i] = memberItem{Member: s.renderDevSummary(m.idx)}
		case kindRev:
			out[i] = memberItem{Member: s.renderRevSummary(m.idx), MemberRevOrg: s.renderRevOrg(s.revUsers[m.idx].org)}
		case kindGroup:
			ng := s.groups[m.idx]
			out[i] = memberItem{Member: userSummary{Type: "group", ID: s.groupID(m.idx), DisplayID: s.groupDisplayID(m.idx),
				Name: ng.name, MemberType: ng.memberType}}
		}
	}
	return http.StatusOK, struct {
		Members    []memberItem `json:"members"`
		NextCursor *string      `json:"next_cursor,omitempty"`
	}{out, s.nextCursor("groups.members.list", body, next)}, nil
}

func (s *Server) membersWrite(add bool, body map[string]any) (int, any, *badRequest) {
	gidx, ok := s.lookupGroup(str(body, "group"))
	if !ok {
		return 0, nil, notFound("group")
	}
	g := s.groups[gidx]
	memberID := str(body, "member")
	ref, ok := s.resolveMember(memberID)
	if !ok {
		return 0, nil, notFound("member")
	}
	if g.dynamic {
		return 0, nil, &badRequest{typ: "bad_request", msg: "members of a dynamic group are computed from its membership expression"}
	}
	if ref.kind == kindGroup && ref.idx == gidx {
		return 0, nil, &badRequest{typ: "bad_request", msg: "a group cannot be a member of itself"}
	}
	if ref.kind == kindRev {
		if g.memberType != "rev_user" {
			return 0, nil, &badRequest{typ: "bad_request", msg: "group does not take rev users"}
		}
		org := str(body, "member_rev_org")
		if org == "" {
			return 0, nil, &badRequest{typ: "missing_required_field", msg: "member_rev_org is required for a rev user",
				extra: map[string]any{"field_name": "member_rev_org"}}
		}
		if org != s.revOrgID(s.revUsers[ref.idx].org) && org != "REV-"+strconv.Itoa(int(s.revUsers[ref.idx].org)) {
			return 0, nil, &badRequest{typ: "bad_request", msg: "rev user does not belong to member_rev_org"}
		}
	} else if _, has := body["member_rev_org"]; has {
		return 0, nil, &badRequest{typ: "bad_request", msg: "member_rev_org is only for rev users"}
	}
	if ref.kind == kindDev && g.memberType == "rev_user" {
		return 0, nil, &badRequest{typ: "bad_request", msg: "group does not take dev users"}
	}
	pos := -1
	for i, m := range g.members {
		if m == ref {
			pos = i
			break
		}
	}
	groupID := s.groupID(gidx)
	canonical := s.memberID(ref)
	switch {
	case add && pos >= 0:
		// The spec lists no 409 for groups.members.add: a duplicate is one of its 400s.
		return 0, nil, &badRequest{typ: "bad_request", msg: "member already exists in the group"}
	case add:
		g.members = append(g.members, ref)
		s.effects.Added(groupID, canonical)
	case pos < 0:
		return 0, nil, &badRequest{typ: "not_found", msg: "member is not in the group"}
	default:
		g.members = append(g.members[:pos], g.members[pos+1:]...)
		s.effects.Removed(groupID, canonical)
	}
	g.modified = s.now()
	return http.StatusOK, map[string]any{}, nil
}

func (s *Server) memberID(m memberRef) string {
	switch m.kind {
	case kindRev:
		return s.revUserID(m.idx)
	case kindGroup:
		return s.groupID(m.idx)
	}
	return s.devUserID(m.idx)
}

func (s *Server) devUsersList(body map[string]any) (int, any, *badRequest) {
	start, limit, bad := s.pageParams("dev-users.list", body)
	if bad != nil {
		return 0, nil, bad
	}
	emails := strs(body, "email")
	for i := range emails {
		emails[i] = normalizeEmail(emails[i])
	}
	states := strs(body, "state")
	n := len(s.users)
	match := func(i int) bool {
		return len(states) == 0 || contains(states, s.users[i].state)
	}
	var idxs []int
	next := -1
	if len(emails) > 0 {
		// The email filter goes through the index rather than a scan of every user.
		var hits []int
		for _, e := range emails {
			if i, ok := s.userByEmail[e]; ok && match(int(i)) {
				hits = append(hits, int(i))
			}
		}
		sort.Ints(hits)
		idxs, next = page(len(hits), start, limit, func(int) bool { return true })
		for k := range idxs {
			idxs[k] = hits[idxs[k]]
		}
	} else {
		idxs, next = page(n, start, limit, match)
	}
	out := make([]devUserJSON, len(idxs))
	for i, idx := range idxs {
		out[i] = s.renderDevUser(int32(idx))
	}
	return http.StatusOK, struct {
		DevUsers   []devUserJSON `json:"dev_users"`
		NextCursor *string       `json:"next_cursor,omitempty"`
	}{out, s.nextCursor("dev-users.list", body, next)}, nil
}
