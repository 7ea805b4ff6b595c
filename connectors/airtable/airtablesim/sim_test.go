package airtablesim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors/airtable/airtablesim"
	"github.com/groupsync/groupsync/connectors/simkit"
)

type env struct {
	t   *testing.T
	sim *airtablesim.Server
	srv *httptest.Server
}

func newEnv(t *testing.T, o airtablesim.Options) *env {
	sim := airtablesim.New(o)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return &env{t: t, sim: sim, srv: srv}
}

// call sends a request with the simulator's token and decodes the JSON answer (nil for an
// empty body).
func (e *env) call(method, path string, body any) (int, map[string]any, http.Header) {
	return e.callAs(e.sim.Token(), method, path, body)
}

func (e *env) callAs(token, method, path string, body any) (int, map[string]any, http.Header) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			e.t.Fatalf("%s %s: body %q is not a JSON object: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, out, resp.Header
}

func patch(ops ...map[string]any) map[string]any {
	return map[string]any{"schemas": []string{airtablesim.SchemaPatchOp}, "Operations": ops}
}

func seeded(t *testing.T) (*env, []string) {
	e := newEnv(t, airtablesim.Options{})
	var ids []string
	for _, em := range []string{"a@example.com", "b@example.com", "c@example.com", "Dee@Example.com"} {
		ids = append(ids, e.sim.AddPerson(simkit.Person{Email: em, First: "F", Last: "L"}))
	}
	return e, ids
}

func (e *env) create(name string) string {
	e.t.Helper()
	st, out, _ := e.call("POST", "/scim/v2/Groups", map[string]any{"schemas": []string{airtablesim.SchemaGroup}, "displayName": name})
	if st != http.StatusOK {
		e.t.Fatalf("create %q: %d %v", name, st, out)
	}
	return out["id"].(string)
}

func (e *env) members(id string) []string {
	e.t.Helper()
	st, out, _ := e.call("GET", "/scim/v2/Groups/"+id, nil)
	if st != http.StatusOK {
		e.t.Fatalf("get %s: %d %v", id, st, out)
	}
	var ids []string
	ms, _ := out["members"].([]any)
	for _, m := range ms {
		ids = append(ids, m.(map[string]any)["value"].(string))
	}
	slices.Sort(ids)
	return ids
}

func TestAuthInEachAPIsShape(t *testing.T) {
	e := newEnv(t, airtablesim.Options{})
	st, out, _ := e.callAs("wrong", "GET", "/v0/meta/enterpriseAccounts/"+e.sim.EnterpriseID(), nil)
	if st != 401 || out["error"].(map[string]any)["type"] != "AUTHENTICATION_REQUIRED" {
		t.Fatalf("meta 401 = %d %v", st, out)
	}
	st, out, _ = e.callAs("wrong", "GET", "/scim/v2/Groups", nil)
	if st != 401 || !slices.Contains(toStrings(out["schemas"]), airtablesim.SchemaError) || out["status"] != float64(401) {
		t.Fatalf("SCIM 401 = %d %v", st, out)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestPatchOpsApplyInOrderAllOrNothing(t *testing.T) {
	e, u := seeded(t)
	g := e.create("Team")
	// add then remove the same member: absent afterwards.
	st, out, _ := e.call("PATCH", "/scim/v2/Groups/"+g, patch(
		map[string]any{"op": "add", "path": "members", "value": []map[string]string{{"value": u[0]}, {"value": u[1]}}},
		map[string]any{"op": "remove", "path": `members[value eq "` + u[0] + `"]`},
	))
	if st != 200 || !reflect.DeepEqual(e.members(g), []string{u[1]}) {
		t.Fatalf("add+remove = %d %v, members %v", st, out, e.members(g))
	}
	// Airtable's own example shape: a single value object and no space before the quote.
	st, out, _ = e.call("PATCH", "/scim/v2/Groups/"+g, patch(
		map[string]any{"op": "add", "path": "members", "value": map[string]string{"value": u[2]}},
		map[string]any{"op": "Remove", "path": `members[value eq"` + u[1] + `"]`},
	))
	if st != 200 || !reflect.DeepEqual(e.members(g), []string{u[2]}) {
		t.Fatalf("doc-shaped patch = %d %v, members %v", st, out, e.members(g))
	}
	// A failing operation undoes the ones before it.
	st, out, _ = e.call("PATCH", "/scim/v2/Groups/"+g, patch(
		map[string]any{"op": "add", "path": "members", "value": []map[string]string{{"value": u[3]}}},
		map[string]any{"op": "remove", "path": `members[value eq "` + u[0] + `"]`},
	))
	if st != 400 || out["scimType"] != "noTarget" || !reflect.DeepEqual(e.members(g), []string{u[2]}) {
		t.Fatalf("patch with an absent remove = %d %v, members %v; want 400 noTarget and nothing applied", st, out, e.members(g))
	}
	// replace members, then rename.
	st, _, _ = e.call("PATCH", "/scim/v2/Groups/"+g, patch(
		map[string]any{"op": "replace", "path": "members", "value": []map[string]string{{"value": u[0]}, {"value": u[3]}}},
		map[string]any{"op": "replace", "path": "displayName", "value": "Team 2"},
	))
	want := []string{u[0], u[3]}
	slices.Sort(want)
	if st != 200 || !reflect.DeepEqual(e.members(g), want) || e.sim.Snapshot()[0].Name != "Team 2" {
		t.Fatalf("replace = %d, members %v, snapshot %+v", st, e.members(g), e.sim.Snapshot())
	}
	// Unknown users are refused, unknown groups answer 400 "invalid group ID".
	if st, out, _ := e.call("PATCH", "/scim/v2/Groups/"+g, patch(map[string]any{"op": "add", "path": "members", "value": []map[string]string{{"value": "usrNope"}}})); st != 400 || out["scimType"] != "invalidValue" {
		t.Fatalf("add unknown user = %d %v", st, out)
	}
	for _, m := range []string{"GET", "PATCH", "PUT", "DELETE"} {
		var body any
		switch m {
		case "PATCH":
			body = patch(map[string]any{"op": "replace", "path": "displayName", "value": "x"})
		case "PUT":
			body = map[string]any{"schemas": []string{airtablesim.SchemaGroup}, "displayName": "x"}
		}
		if st, out, _ := e.call(m, "/scim/v2/Groups/ugpUnknown0000000", body); st != 400 || out["detail"] != "invalid group ID" || out["status"] != float64(400) {
			t.Fatalf("%s unknown group = %d %v", m, st, out)
		}
	}
	if st, out, _ := e.call("PATCH", "/scim/v2/Groups/"+g, map[string]any{"schemas": []string{"wrong"}, "Operations": []any{}}); st != 400 {
		t.Fatalf("patch without the PatchOp schema = %d %v", st, out)
	}
}

func TestDisplayNameUniqueAndFilter(t *testing.T) {
	e, _ := seeded(t)
	name := `Say "hi" \ <b>&amp;</b>`
	g := e.create(name)
	other := e.create("Other")
	if st, out, _ := e.call("POST", "/scim/v2/Groups", map[string]any{"schemas": []string{airtablesim.SchemaGroup}, "displayName": name}); st != 409 || out["scimType"] != "uniqueness" {
		t.Fatalf("duplicate create = %d %v", st, out)
	}
	if st, out, _ := e.call("PATCH", "/scim/v2/Groups/"+other, patch(map[string]any{"op": "replace", "path": "displayName", "value": name})); st != 409 {
		t.Fatalf("rename onto a used name = %d %v", st, out)
	}
	if st, _, _ := e.call("PATCH", "/scim/v2/Groups/"+g, patch(map[string]any{"op": "replace", "path": "displayName", "value": name})); st != 200 {
		t.Fatalf("rename to its own name = %d", st)
	}
	if st, out, _ := e.call("POST", "/scim/v2/Groups", map[string]any{"displayName": "no schema"}); st != 400 {
		t.Fatalf("create without schemas = %d %v", st, out)
	}
	q, _ := json.Marshal(strings.ToUpper(name))
	st, out, _ := e.call("GET", "/scim/v2/Groups?filter="+url.QueryEscape("DISPLAYNAME eq "+string(q)), nil)
	res, _ := out["Resources"].([]any)
	if st != 200 || len(res) != 1 || res[0].(map[string]any)["id"] != g || out["totalResults"] != float64(1) {
		t.Fatalf("filter = %d %v", st, out)
	}
	if st, out, _ := e.call("GET", "/scim/v2/Groups?filter="+url.QueryEscape(`displayName co "x"`), nil); st != 400 || out["scimType"] != "invalidFilter" {
		t.Fatalf("unsupported filter = %d %v", st, out)
	}
}

func TestSCIMListPaging(t *testing.T) {
	e := newEnv(t, airtablesim.Options{PageSize: 3})
	e.sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 7, People: 8, MembersPerGroup: 2, Seed: 3}))
	var got []string
	for start := 1; start <= 7; start += 3 {
		st, out, _ := e.call("GET", "/scim/v2/Groups?count=10&startIndex="+itoa(start), nil)
		if st != 200 || out["startIndex"] != float64(start) || out["totalResults"] != float64(7) {
			t.Fatalf("page at %d = %d %v", start, st, out)
		}
		for _, r := range out["Resources"].([]any) {
			got = append(got, r.(map[string]any)["id"].(string))
		}
	}
	if len(got) != 7 || len(slices.Compact(slices.Sorted(slices.Values(got)))) != 7 {
		t.Fatalf("paged ids %v", got)
	}
	// Users: the email filter is case-insensitive; startIndex/count page the full list.
	st, out, _ := e.call("GET", "/scim/v2/Users?filter="+url.QueryEscape(`userName eq "USER000003@example.com"`), nil)
	res := out["Resources"].([]any)
	if st != 200 || len(res) != 1 || res[0].(map[string]any)["userName"] != "user000003@example.com" {
		t.Fatalf("user filter = %d %v", st, out)
	}
	st, out, _ = e.call("GET", "/scim/v2/Users?startIndex=7&count=3", nil)
	if st != 200 || out["itemsPerPage"] != float64(2) || out["totalResults"] != float64(8) {
		t.Fatalf("last users page = %d %v", st, out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestMetaRoutes(t *testing.T) {
	e := newEnv(t, airtablesim.Options{})
	tn := simkit.Generate(simkit.GenOptions{Groups: 2, People: 5, MembersPerGroup: 3, Seed: 5})
	e.sim.Seed(tn)
	ent := e.sim.EnterpriseID()
	st, out, _ := e.call("GET", "/v0/meta/enterpriseAccounts/"+ent, nil)
	if st != 200 || len(out["groupIds"].([]any)) != 2 || len(out["userIds"].([]any)) != 5 {
		t.Fatalf("enterprise = %d %v", st, out)
	}
	if st, out, _ := e.call("GET", "/v0/meta/enterpriseAccounts/entSomeoneElse000", nil); st != 403 || out["error"].(map[string]any)["type"] != "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND" {
		t.Fatalf("other enterprise = %d %v", st, out)
	}
	gid := out["groupIds"].([]any)[0].(string)
	st, out, _ = e.call("GET", "/v0/meta/groups/"+gid, nil)
	ms := out["members"].([]any)
	if st != 200 || len(ms) != 3 || out["enterpriseAccountId"] != ent {
		t.Fatalf("group = %d %v", st, out)
	}
	roles := map[string]int{}
	for _, m := range ms {
		roles[m.(map[string]any)["role"].(string)]++
	}
	if roles["manager"] != 1 || roles["member"] != 2 {
		t.Fatalf("roles %v, want one manager", roles)
	}
	if st, out, _ := e.call("GET", "/v0/meta/groups/ugpUnknown0000000", nil); st != 404 || out["error"] != "NOT_FOUND" {
		t.Fatalf("unknown group = %d %v", st, out)
	}
	uid := ms[0].(map[string]any)["userId"].(string)
	st, out, _ = e.call("GET", "/v0/meta/enterpriseAccounts/"+ent+"/users?id%5B%5D="+uid+"&id%5B%5D=usrGone&email%5B%5D="+url.QueryEscape("USER000001@example.com"), nil)
	us := out["users"].([]any)
	if st != 200 || len(us) < 1 || us[0].(map[string]any)["id"] != uid || len(us[0].(map[string]any)["groups"].([]any)) == 0 {
		t.Fatalf("users = %d %v", st, out)
	}
	if st, _, _ := e.call("GET", "/v0/meta/enterpriseAccounts/"+ent+"/users", nil); st != 422 {
		t.Fatalf("users without id[] or email[] = %d, want 422", st)
	}
	if st, _, _ := e.call("GET", "/v0/meta/groups/"+gid+"?pad="+strings.Repeat("x", airtablesim.MaxURLLength), nil); st != 414 {
		t.Fatalf("over-long URL = %d, want 414", st)
	}
}

func TestServerLimitLocksOut(t *testing.T) {
	e := newEnv(t, airtablesim.Options{})
	e.sim.Faults().Limit(1, 1, 30*time.Second)
	path := "/v0/meta/enterpriseAccounts/" + e.sim.EnterpriseID()
	var statuses []int
	for range 3 {
		st, out, hdr := e.call("GET", path, nil)
		statuses = append(statuses, st)
		if st == 429 {
			if out["error"].(map[string]any)["type"] != "RATE_LIMIT_REACHED" || hdr.Get("Retry-After") != "" {
				t.Fatalf("429 = %v %v; want RATE_LIMIT_REACHED and no Retry-After (none is documented)", out, hdr)
			}
		}
	}
	if !slices.Equal(statuses, []int{200, 429, 429}) {
		t.Fatalf("statuses %v, want 200 then a lockout", statuses)
	}
	// SCIM shares the lockout (the limit is per token) and answers in SCIM's shape.
	if st, out, _ := e.call("GET", "/scim/v2/Groups", nil); st != 429 || out["status"] != float64(429) {
		t.Fatalf("SCIM during lockout = %d %v", st, out)
	}
}

func TestEffectsCountOnlyRealChanges(t *testing.T) {
	e, u := seeded(t)
	g := e.create("G")
	add := patch(map[string]any{"op": "add", "path": "members", "value": []map[string]string{{"value": u[0]}}})
	e.call("PATCH", "/scim/v2/Groups/"+g, add)
	e.call("PATCH", "/scim/v2/Groups/"+g, add)
	if c, a, r := e.sim.Effects().Totals(); c != 1 || a != 1 || r != 0 {
		t.Fatalf("effects = %d creates, %d adds, %d removes; want 1, 1, 0", c, a, r)
	}
	if st, _, _ := e.call("DELETE", "/scim/v2/Groups/"+g, nil); st != 204 {
		t.Fatalf("delete = %d", st)
	}
	if len(e.sim.Snapshot()) != 0 {
		t.Fatalf("snapshot after delete: %+v", e.sim.Snapshot())
	}
}

func TestDeterministicIDs(t *testing.T) {
	tn := simkit.Generate(simkit.GenOptions{Groups: 5, People: 20, MembersPerGroup: 4, Seed: 9})
	a, b := airtablesim.New(airtablesim.Options{Seed: 4}), airtablesim.New(airtablesim.Options{Seed: 4})
	a.Seed(tn)
	b.Seed(tn)
	if !reflect.DeepEqual(a.Snapshot(), b.Snapshot()) || a.EnterpriseID() != b.EnterpriseID() {
		t.Fatal("same seed and tenant gave different state")
	}
	for _, g := range a.Snapshot() {
		if len(g.ID) != 17 || !strings.HasPrefix(g.ID, "ugp") || len(g.MemberEmails) != 4 {
			t.Fatalf("group %+v", g)
		}
	}
}

// BenchmarkSeedLarge seeds 10k groups, 100k people and 1M memberships.
func BenchmarkSeedLarge(b *testing.B) {
	tn := simkit.Generate(simkit.GenOptions{Groups: 10_000, People: 100_000, MembersPerGroup: 100, Seed: 1})
	sim := airtablesim.New(airtablesim.Options{})
	b.ReportAllocs()
	for b.Loop() {
		sim.Seed(tn)
	}
}

// BenchmarkGroupRequest renders one 100-member group from a large tenant.
func BenchmarkGroupRequest(b *testing.B) {
	tn := simkit.Generate(simkit.GenOptions{Groups: 10_000, People: 100_000, MembersPerGroup: 100, Seed: 1})
	sim := airtablesim.New(airtablesim.Options{})
	sim.Seed(tn)
	id := sim.Snapshot()[0].ID
	req := httptest.NewRequest("GET", "/v0/meta/groups/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+sim.Token())
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		sim.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d", rec.Code)
		}
	}
}
