package devrev

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/devrev/devrevsim"
	"github.com/groupsync/groupsync/connectors/simkit"
)

// testdata/openapi-beta.yaml.gz is DevRev's official beta OpenAPI description,
// devrev/fern-api-docs fern/apis/beta/openapi-beta.yaml at 7da689d41de00fd339bbb567991c4e6163b28956
// (sha256 of the uncompressed file c596781bcbe91c7faaa912bd1269dff5c55a9ed249ef230c2c86139d9e339c4b),
// gzipped to keep the repository small.
const specFile = "testdata/openapi-beta.yaml.gz"

type openAPI struct {
	root map[string]any
}

var (
	specOnce sync.Once
	specDoc  *openAPI
	specErr  error
)

func loadSpec(t *testing.T) *openAPI {
	t.Helper()
	specOnce.Do(func() {
		f, err := os.Open(specFile)
		if err != nil {
			specErr = err
			return
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			specErr = err
			return
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			specErr = err
			return
		}
		var root map[string]any
		if err := yaml.Unmarshal(data, &root); err != nil {
			specErr = err
			return
		}
		specDoc = &openAPI{root: root}
	})
	if specErr != nil {
		t.Fatalf("load %s: %v (restore it from devrev/fern-api-docs fern/apis/beta/openapi-beta.yaml, gzipped)", specFile, specErr)
	}
	return specDoc
}

func (s *openAPI) operation(path, method string) (map[string]any, bool) {
	paths, _ := s.root["paths"].(map[string]any)
	item, _ := paths[path].(map[string]any)
	op, ok := item[strings.ToLower(method)].(map[string]any)
	return op, ok
}

// deref follows $ref to components/schemas.
func (s *openAPI) deref(node any) map[string]any {
	m, _ := node.(map[string]any)
	for m != nil {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		comps, _ := s.root["components"].(map[string]any)
		schemas, _ := comps["schemas"].(map[string]any)
		m, _ = schemas[name].(map[string]any)
	}
	return m
}

// object merges an object schema's properties and required list across allOf.
func (s *openAPI) object(node any) (map[string]any, []string) {
	n := s.deref(node)
	props := map[string]any{}
	var required []string
	for _, part := range asList(n["allOf"]) {
		p, r := s.object(part)
		for k, v := range p {
			props[k] = v
		}
		required = append(required, r...)
	}
	if p, ok := n["properties"].(map[string]any); ok {
		for k, v := range p {
			props[k] = v
		}
	}
	for _, r := range asList(n["required"]) {
		required = append(required, r.(string))
	}
	return props, required
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// check validates a decoded JSON value against a schema node and returns the problems.
func (s *openAPI) check(where string, node any, v any) []string {
	n := s.deref(node)
	if n == nil {
		return []string{where + ": schema not found"}
	}
	if enum := asList(n["enum"]); enum != nil {
		sv, ok := v.(string)
		found := false
		for _, e := range enum {
			found = found || (ok && e == sv)
		}
		if !found {
			return []string{fmt.Sprintf("%s: %v is not one of %v", where, v, enum)}
		}
	}
	typ, _ := n["type"].(string)
	if typ == "" && (n["allOf"] != nil || n["properties"] != nil) {
		typ = "object"
	}
	switch typ {
	case "string":
		if _, ok := v.(string); !ok {
			return []string{fmt.Sprintf("%s: %v is not a string", where, v)}
		}
	case "integer":
		num, ok := v.(json.Number)
		if _, err := num.Int64(); !ok || err != nil {
			return []string{fmt.Sprintf("%s: %v is not an integer", where, v)}
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return []string{fmt.Sprintf("%s: %v is not a boolean", where, v)}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %v is not an array", where, v)}
		}
		var out []string
		for i, item := range arr {
			out = append(out, s.check(fmt.Sprintf("%s[%d]", where, i), n["items"], item)...)
		}
		return out
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %v is not an object", where, v)}
		}
		props, required := s.object(n)
		var out []string
		for _, r := range required {
			if _, ok := obj[r]; !ok {
				out = append(out, fmt.Sprintf("%s: required field %s missing", where, r))
			}
		}
		for k, fv := range obj {
			ps, ok := props[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s: field %s is not in the schema", where, k))
				continue
			}
			out = append(out, s.check(where+"."+k, ps, fv)...)
		}
		return out
	}
	return nil
}

// validateRequest checks one request the connector sent against the spec.
func (s *openAPI) validateRequest(r sentRequest) []string {
	op, ok := s.operation(r.Path, r.Method)
	if !ok {
		return []string{fmt.Sprintf("%s %s: no such operation in the spec", r.Method, r.Path)}
	}
	rb, _ := op["requestBody"].(map[string]any)
	content, _ := rb["content"].(map[string]any)
	media, _ := content["application/json"].(map[string]any)
	if media == nil {
		return []string{fmt.Sprintf("%s %s: operation takes no JSON body", r.Method, r.Path)}
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	var body any
	if err := dec.Decode(&body); err != nil {
		return []string{fmt.Sprintf("%s %s: body is not JSON: %v", r.Method, r.Path, err)}
	}
	return s.check(r.Method+" "+r.Path, media["schema"], body)
}

// exerciseAll runs every operation the connector has against the harness: each listing,
// by-id and by-email lookups, creates, updates, adds and removes (rev users included, and
// the settling reads of an idempotent remove).
func exerciseAll(t *testing.T, h *harness) {
	t.Helper()
	h.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 12, People: 40, MembersPerGroup: 12, Seed: 3}))
	revID := h.sim.AddRevUser("c@example.org", "C", 2)
	custID, err := h.sim.AddGroup(devrevsim.GroupInit{Name: "Customers", MemberType: "rev_user"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	groups, _ := collectGroups(t, h.conn)
	collectMembers(t, h.conn, groups[0].ID)
	accounts, _ := collectAccounts(t, h.conn, nil)
	collectAccounts(t, h.conn, []string{accounts[0].ID, revID})
	var many []string
	for _, a := range accounts {
		many = append(many, a.ID)
	}
	collectAccounts(t, h.conn, many)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = h.conn.FindAccountByEmail(ctx, accounts[1].Email)
	must(err)
	_, err = h.conn.FindGroupByName(ctx, groups[1].Name)
	must(err)
	_, err = h.conn.GetGroup(ctx, groups[2].ID)
	must(err)
	g, err := h.conn.CreateGroup(ctx, connectors.GroupSpec{Name: "new"})
	must(err)
	_, err = h.conn.UpdateGroup(ctx, g.ID, connectors.GroupSpec{Name: "newer", Description: "d"})
	must(err)
	must(h.conn.AddMembers(ctx, g.ID, []string{accounts[0].ID}))
	must(h.conn.AddMembers(ctx, custID, []string{revID}))
	must(h.conn.RemoveMembers(ctx, g.ID, []string{accounts[0].ID}))
	must(h.conn.RemoveMembers(ctx, g.ID, []string{accounts[0].ID})) // absent: settles with groups.get
	must(h.conn.RemoveMembers(ctx, custID, []string{revID}))

}

// TestRequestsMatchSpec runs every operation the connector has and validates each request
// it sent against DevRev's OpenAPI description: the path and method exist, required fields
// are present, every field is in the request schema, enums and JSON types are right.
func TestRequestsMatchSpec(t *testing.T) {
	spec := loadSpec(t)
	h := newHarness(t, devrevsim.Options{}, nil)
	exerciseAll(t, h)

	used := map[string]bool{}
	for _, r := range h.Sent() {
		used[strings.TrimPrefix(r.Path, "/")] = true
		for _, problem := range spec.validateRequest(r) {
			t.Errorf("%s (body %s)", problem, r.Body)
		}
	}
	for _, ep := range []string{epGroupsList, epGroupsGet, epGroupsCreate, epGroupsUpdate, epMembersList,
		epMembersAdd, epMembersRemove, epDevUsersList, epDevUsersGet, epRevUsersGet} {
		if !used[ep] {
			t.Errorf("endpoint %s was not exercised", ep)
		}
	}
}

// TestSimulatorRulesMatchSpec checks the simulator's hand-written request rules against
// the spec, so its validation cannot drift from DevRev's.
func TestSimulatorRulesMatchSpec(t *testing.T) {
	spec := loadSpec(t)
	for _, ep := range devrevsim.Endpoints() {
		op, ok := spec.operation("/"+ep, "POST")
		if !ok {
			t.Errorf("%s: no POST operation in the spec", ep)
			continue
		}
		rb, _ := op["requestBody"].(map[string]any)
		content, _ := rb["content"].(map[string]any)
		media, _ := content["application/json"].(map[string]any)
		props, required := spec.object(media["schema"])
		fields, simRequired, _ := devrevsim.EndpointRules(ep)
		sort.Strings(required)
		sort.Strings(simRequired)
		if strings.Join(required, ",") != strings.Join(simRequired, ",") {
			t.Errorf("%s: simulator requires %v, spec requires %v", ep, simRequired, required)
		}
		for _, f := range fields {
			if _, ok := props[f]; !ok {
				t.Errorf("%s: simulator accepts %s, which the spec does not define", ep, f)
			}
		}
		for f := range props {
			found := false
			for _, sf := range fields {
				found = found || sf == f
			}
			if !found {
				t.Errorf("%s: spec field %s is refused by the simulator", ep, f)
			}
		}
	}
}

// TestSpecValidatorCatchesMistakes proves the validator above is not vacuous.
func TestSpecValidatorCatchesMistakes(t *testing.T) {
	spec := loadSpec(t)
	for _, tc := range []struct {
		req  sentRequest
		want string
	}{
		{sentRequest{Method: "POST", Path: "/groups.delete", Body: []byte(`{}`)}, "no such operation"},
		{sentRequest{Method: "POST", Path: "/groups.create", Body: []byte(`{"name":"x"}`)}, "required field description missing"},
		{sentRequest{Method: "POST", Path: "/groups.members.add", Body: []byte(`{"group":"g","members":["m"]}`)}, "field members is not in the schema"},
		{sentRequest{Method: "POST", Path: "/groups.list", Body: []byte(`{"group_type":["smart"]}`)}, "is not one of"},
		{sentRequest{Method: "POST", Path: "/groups.list", Body: []byte(`{"limit":"50"}`)}, "is not an integer"},
		{sentRequest{Method: "POST", Path: "/groups.list", Body: []byte(`{"mode":"sideways"}`)}, "is not one of"},
	} {
		problems := strings.Join(spec.validateRequest(tc.req), "; ")
		if !strings.Contains(problems, tc.want) {
			t.Errorf("%s %s: problems %q, want %q", tc.req.Path, tc.req.Body, problems, tc.want)
		}
	}
}
