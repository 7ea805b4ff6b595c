package devrev

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/groupsync/groupsync/connectors/devrev/devrevsim"
)

// The checks here use an OpenAPI validator nobody on this project wrote (kin-openapi), so
// the simulator is held to DevRev's published description independently of the
// hand-written checks in spec_test.go: every request the connector sends and every answer
// the simulator gives, for every operation the connector has.

// The published description has two kinds of schemas a plain JSON Schema reading cannot
// satisfy, a by-product of how it was generated. Neither is skipped:
//
//   - knownIdenticalOneOf: a oneOf whose alternatives include two identical ones (inside
//     user-summary, dev-user-summary and sys-user-summary are the same schema): no value
//     matches exactly one of them. All of them carry a discriminator, which kin-openapi uses
//     to pick the alternative, so they validate strictly here; a oneOf like them without a
//     discriminator would be validated as anyOf. The list is pinned (the spec file is), and
//     the test fails when it changes.
//   - closed subtypes: the alternatives of a discriminated oneOf are objects with
//     additionalProperties false and no properties of their own (error-not-found-not-found,
//     …); evaluated apart from the allOf siblings that hold the fields, they reject every
//     real body (a DevRev error has type and message). They are validated with additional
//     properties allowed; the fields are still checked by the siblings.
var knownIdenticalOneOf = []string{"associated-to-summary", "atom", "atom-summary", "custom-schema-fragment-summary",
	"error-bad-request-customization-validation-error", "link-endpoint-summary", "member-summary", "org-summary",
	"part", "part-summary", "parts-update-request", "schema-field-descriptor", "schema-field-descriptor-array-type",
	"user-summary"}

func loadKinSpec(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	f, err := os.Open(specFile)
	if err != nil {
		t.Fatalf("open %s: %v", specFile, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatalf("kin-openapi cannot load %s: %v", specFile, err)
	}
	if got := relaxIdenticalOneOf(doc); !slices.Equal(got, knownIdenticalOneOf) {
		t.Errorf("schemas whose oneOf has identical alternatives = %v, want %v (update knownIdenticalOneOf)", got, knownIdenticalOneOf)
	}
	t.Logf("spec: %d oneOf with identical alternatives (discriminated), %d closed subtypes opened (see knownIdenticalOneOf)",
		len(knownIdenticalOneOf), openClosedSubtypes(doc))
	// One server, so requests to the simulator's address route (the spec's server is a
	// {protocol}://{hostname} template).
	doc.Servers = openapi3.Servers{{URL: "https://api.devrev.ai"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router over the spec: %v", err)
	}
	return doc, router
}

// relaxIdenticalOneOf returns the names of the component schemas whose oneOf has two
// identical alternatives, sorted, and turns those without a discriminator (which would pick
// one) into anyOf.
func relaxIdenticalOneOf(doc *openapi3.T) []string {
	var names []string
	for name, ref := range doc.Components.Schemas {
		s := ref.Value
		if s == nil || len(s.OneOf) < 2 || !hasIdentical(s.OneOf) {
			continue
		}
		names = append(names, name)
		if s.Discriminator == nil {
			s.AnyOf, s.OneOf = s.OneOf, nil
		}
	}
	sort.Strings(names)
	return names
}

// openClosedSubtypes allows additional properties on the property-less, closed
// alternatives of every discriminated oneOf, wherever it sits (inside allOf included), and
// returns how many it opened.
func openClosedSubtypes(doc *openapi3.T) int {
	opened := map[*openapi3.Schema]bool{}
	var visit func(s *openapi3.Schema, depth int)
	visit = func(s *openapi3.Schema, depth int) {
		if s == nil || depth > 8 {
			return
		}
		if s.Discriminator != nil {
			for _, alt := range s.OneOf {
				v := alt.Value
				if v != nil && len(v.Properties) == 0 && v.AdditionalProperties.Has != nil && !*v.AdditionalProperties.Has {
					v.AdditionalProperties = openapi3.AdditionalProperties{}
					opened[v] = true
				}
			}
		}
		for _, part := range s.AllOf {
			visit(part.Value, depth+1)
		}
	}
	for _, ref := range doc.Components.Schemas {
		visit(ref.Value, 0)
	}
	return len(opened)
}

func hasIdentical(alts openapi3.SchemaRefs) bool {
	for i := range alts {
		for j := i + 1; j < len(alts); j++ {
			if alts[i].Value != nil && alts[j].Value != nil && sameSchema(alts[i].Value, alts[j].Value) {
				return true
			}
		}
	}
	return false
}

// sameSchema compares two schemas by their JSON form less their titles (identical shapes
// under two names).
func sameSchema(a, b *openapi3.Schema) bool {
	norm := func(s *openapi3.Schema) any {
		c := *s
		c.Title = ""
		raw, _ := json.Marshal(&c)
		var v any
		_ = json.Unmarshal(raw, &v)
		return v
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// TestTrafficValidatesAgainstTheOpenAPIDescription runs every operation and validates each
// request (path, method, parameters, body) and each simulator response (status listed for
// the operation, headers, body schema) with kin-openapi.
func TestTrafficValidatesAgainstTheOpenAPIDescription(t *testing.T) {
	_, router := loadKinSpec(t)
	h := newHarness(t, devrevsim.Options{}, nil)
	exerciseAll(t, h)
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true,
		IncludeResponseStatus: true}
	validated := 0
	for _, x := range h.Sent() {
		req, err := http.NewRequest(x.Method, "https://api.devrev.ai"+x.Path+querySuffix(x.Query), bytes.NewReader(x.Body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = x.Header.Clone()
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Errorf("%s %s: no such operation in the spec: %v", x.Method, x.Path, err)
			continue
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("request %s %s (body %s) violates the spec: %v", x.Method, x.Path, x.Body, err)
		}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: x.Status, Header: x.RespHeader,
			Options: opts}
		out.SetBodyBytes(x.RespBody)
		if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
			t.Errorf("simulator's %d to %s %s violates the spec: %v\nbody: %s", x.Status, x.Method, x.Path, err, truncateBody(x.RespBody))
		}
		validated++
	}
	if validated < 20 {
		t.Fatalf("only %d exchanges validated", validated)
	}
	t.Logf("%d request/response pairs validated with kin-openapi", validated)
}

func querySuffix(q string) string {
	if q == "" {
		return ""
	}
	return "?" + q
}

func truncateBody(b []byte) string {
	s := string(b)
	if len(s) > 400 {
		return s[:400] + "…"
	}
	return strings.TrimSpace(s)
}

// TestOpenAPIValidatorCatchesMistakes: the relaxations leave the check strict: a status
// the operation does not list (the 409 the simulator once gave a duplicate add) and a
// response without a required field are caught. (Request fields the schema does not name
// are allowed by JSON Schema here, since the spec does not close its request objects; the
// hand-written TestRequestsMatchSpec checks those.)
func TestOpenAPIValidatorCatchesMistakes(t *testing.T) {
	_, router := loadKinSpec(t)
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	check := func(path, reqBody string, status int, respBody string) (reqErr, respErr error) {
		req, _ := http.NewRequest("POST", "https://api.devrev.ai"+path, strings.NewReader(reqBody))
		req.Header.Set("Content-Type", "application/json")
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatal(err)
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
		reqErr = openapi3filter.ValidateRequest(context.Background(), in)
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status,
			Header: http.Header{"Content-Type": {"application/json"}}, Options: opts}
		out.SetBodyBytes([]byte(respBody))
		return reqErr, openapi3filter.ValidateResponse(context.Background(), out)
	}
	add := `{"group": "don:identity:dvrv-us-1:devo/0:group/1", "member": "don:identity:dvrv-us-1:devo/0:devu/1"}`
	if _, err := check("/groups.members.add", add, 409, `{"type": "conflict", "message": "dup"}`); err == nil {
		t.Error("a 409 from groups.members.add (not in the spec) passed")
	}
	if _, err := check("/groups.members.add", add, 400, `{"type": "bad_request", "message": "member already exists"}`); err != nil {
		t.Errorf("a 400 bad_request from groups.members.add was refused: %v", err)
	}
	if _, err := check("/groups.get", `{"id": "don:identity:dvrv-us-1:devo/0:group/1"}`, 200, `{}`); err == nil {
		t.Error("a groups.get answer without its group passed")
	}
}
