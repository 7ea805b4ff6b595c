package scimsim_test

// Direct tests of the simulator's RFC 7644 behaviour, so the connector's tests rest on a
// simulator that is itself checked: paging, filters, PatchOp errors.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/groupsync/groupsync/connectors/scim/scimsim"
	"github.com/groupsync/groupsync/connectors/simkit"
)

type client struct {
	t   *testing.T
	srv *httptest.Server
	sim *scimsim.Server
}

func start(t *testing.T, o scimsim.Options) client {
	sim := scimsim.New(o)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return client{t: t, srv: srv, sim: sim}
}

// do sends one request and decodes the JSON answer.
func (c client) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, _ := http.NewRequestWithContext(c.t.Context(), method, c.srv.URL+scimsim.Prefix+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+c.sim.Token())
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := c.srv.Client().Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// list GETs a listing with the query and returns the page and the status.
func (c client) list(path string, q url.Values) (int, map[string]any) {
	c.t.Helper()
	return c.do(http.MethodGet, path+"?"+q.Encode(), nil)
}

func resources(page map[string]any) []any { r, _ := page["Resources"].([]any); return r }

func TestPaging(t *testing.T) {
	c := start(t, scimsim.Options{MaxResults: 3})
	c.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 7, People: 1, Seed: 1}))
	for _, tc := range []struct {
		query         string
		n, startIndex int
	}{
		{"", 3, 1},                      // count absent: maxResults
		{"count=50", 3, 1},              // count above maxResults: maxResults
		{"startIndex=7&count=3", 1, 7},  // the last page is short
		{"startIndex=9&count=3", 0, 8},  // past the end: empty
		{"startIndex=0&count=2", 2, 1},  // below 1 means 1
		{"startIndex=2&count=-1", 0, 2}, // negative count means 0
		{"startIndex=4&count=2", 2, 4},  // a middle page
		{"excludedAttributes=members", 3, 1},
	} {
		q, _ := url.ParseQuery(tc.query)
		status, page := c.list("/Groups", q)
		if status != http.StatusOK || len(resources(page)) != tc.n || page["totalResults"] != float64(7) ||
			page["itemsPerPage"] != float64(tc.n) || page["startIndex"] != float64(tc.startIndex) {
			t.Errorf("GET /Groups?%s = %d, %d resources, totalResults %v, itemsPerPage %v, startIndex %v; want %d from %d of 7",
				tc.query, status, len(resources(page)), page["totalResults"], page["itemsPerPage"], page["startIndex"], tc.n, tc.startIndex)
		}
	}
	if status, body := c.list("/Groups", url.Values{"count": {"ten"}}); status != http.StatusBadRequest || body["scimType"] != "invalidValue" {
		t.Errorf("count=ten = %d %v, want 400 invalidValue", status, body)
	}
}

func TestFilter(t *testing.T) {
	c := start(t, scimsim.Options{})
	tn := simkit.Generate(simkit.GenOptions{Groups: 2, People: 3, Seed: 1})
	c.sim.Seed(tn)
	quoted := `a "quoted" \ name`
	if status, body := c.do(http.MethodPost, "/Groups", map[string]any{"schemas": []string{scimsim.SchemaGroup}, "displayName": quoted}); status != http.StatusCreated {
		t.Fatalf("POST /Groups = %d %v", status, body)
	}
	str := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	for _, tc := range []struct {
		path, filter string
		n            int
	}{
		{"/Users", "userName eq " + str(upper(tn.People[0].Email)), 1}, // caseExact false
		{"/Users", "EMAILS.VALUE EQ " + str(tn.People[1].Email), 1},    // names and operators in any case
		{"/Users", fmt.Sprintf("userName eq %s or userName eq %s", str(tn.People[0].Email), str(tn.People[2].Email)), 2},
		{"/Users", `userName eq "nobody@example.com"`, 0},
		{"/Groups", "displayName eq " + str(quoted), 1}, // JSON escapes decoded (RFC 7644 §3.4.2.2)
	} {
		status, page := c.list(tc.path, url.Values{"filter": {tc.filter}})
		if status != http.StatusOK || len(resources(page)) != tc.n || page["totalResults"] != float64(tc.n) {
			t.Errorf("%s filter=%s = %d, %d resources (%v), want %d", tc.path, tc.filter, status, len(resources(page)), page["totalResults"], tc.n)
		}
	}
	for _, f := range []string{`displayName co "a"`, `description eq "x"`, `displayName eq "unterminated`, `displayName eq "a" and id eq "b"`} {
		if status, body := c.list("/Groups", url.Values{"filter": {f}}); status != http.StatusBadRequest || body["scimType"] != "invalidFilter" {
			t.Errorf("filter=%s = %d %v, want 400 invalidFilter", f, status, body)
		}
	}
	c.sim.SetFilter(false)
	if status, body := c.list("/Groups", url.Values{"filter": {`displayName eq "x"`}}); status != http.StatusBadRequest || body["scimType"] != "invalidFilter" {
		t.Errorf("filter with filtering off = %d %v, want 400 invalidFilter", status, body)
	}
}

func upper(s string) string { return string(bytes.ToUpper([]byte(s))) }

// TestPatchOpErrors: each refused PatchOp answers its RFC 7644 §3.12 error and changes
// nothing (a PatchOp is atomic, §3.5.2).
func TestPatchOpErrors(t *testing.T) {
	c := start(t, scimsim.Options{})
	c.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 2, MembersPerGroup: 1, Seed: 1}))
	_, page := c.list("/Groups", nil)
	g := resources(page)[0].(map[string]any)
	path := "/Groups/" + g["id"].(string)
	rename := map[string]any{"op": "replace", "path": "displayName", "value": "Renamed"}
	absent := map[string]any{"op": "remove", "path": `members[value eq "nobody"]`}
	patch := func(ops ...any) map[string]any {
		return map[string]any{"schemas": []string{scimsim.SchemaPatchOp}, "Operations": ops}
	}
	for _, tc := range []struct {
		name     string
		body     any
		status   int
		scimType string
	}{
		{"no PatchOp schema", map[string]any{"schemas": []string{"urn:x"}, "Operations": []any{rename}}, 400, "invalidValue"},
		{"no operations", patch(), 400, "invalidValue"},
		{"unknown op", patch(map[string]any{"op": "move", "path": "displayName", "value": "x"}), 400, "invalidSyntax"},
		{"remove without path", patch(map[string]any{"op": "remove"}), 400, "noTarget"},
		{"absent member after a rename", patch(rename, absent), 400, "noTarget"},
		{"unsupported path", patch(map[string]any{"op": "replace", "path": "description", "value": "x"}), 400, "invalidPath"},
		{"displayName not a string", patch(map[string]any{"op": "replace", "path": "displayName", "value": 7}), 400, "invalidValue"},
	} {
		status, body := c.do(http.MethodPatch, path, tc.body)
		if status != tc.status || body["scimType"] != tc.scimType {
			t.Errorf("%s: PATCH = %d %v, want %d %s", tc.name, status, body, tc.status, tc.scimType)
		}
	}
	if _, now := c.do(http.MethodGet, path, nil); now["displayName"] != g["displayName"] {
		t.Errorf("a refused PatchOp changed the group: %v", now)
	}
	if status, _ := c.do(http.MethodPatch, "/Groups/missing", patch(rename)); status != http.StatusNotFound {
		t.Errorf("PATCH of a missing group = %d, want 404", status)
	}
	c.sim.SetLenientRemove(true)
	if status, body := c.do(http.MethodPatch, path, patch(rename, absent)); status != http.StatusOK || body["displayName"] != "Renamed" {
		t.Errorf("lenient remove of an absent member = %d %v, want 200 with the rename applied", status, body)
	}
	c.sim.SetPatch(false)
	if status, _ := c.do(http.MethodPatch, path, patch(rename)); status != http.StatusNotImplemented {
		t.Errorf("PATCH with PATCH off = %d, want 501", status)
	}
}
