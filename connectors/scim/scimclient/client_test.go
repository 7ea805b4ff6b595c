package scimclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/airtable/airtablesim"
	"github.com/groupsync/groupsync/connectors/apiclient"
	"github.com/groupsync/groupsync/connectors/scim/scimclient"
	"github.com/groupsync/groupsync/connectors/scim/scimclient/scimclienttest"
	"github.com/groupsync/groupsync/connectors/scim/scimsim"
	"github.com/groupsync/groupsync/connectors/simkit"
)

// httpClient is an apiclient.Client for a simulator at base, as a SCIM writer builds one:
// bearer token, SCIM's error bodies, retries that do not sleep.
func httpClient(t *testing.T, srv *httptest.Server, base, token string) *apiclient.Client {
	t.Helper()
	hc, err := apiclient.New(apiclient.Config{
		System: "scimclient-test", BaseURL: base, HTTPClient: srv.Client(), MaxAttempts: 2,
		DecodeError: scimclient.DecodeError,
		Auth: func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+token)
			return nil
		},
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	})
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

func newClient(t *testing.T, cfg scimclient.Config) *scimclient.Client {
	t.Helper()
	c, err := scimclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestConformanceOnSCIMSimulator runs the suite on a client configured by hand against
// the RFC-conformant simulator, in every way a target can take writes.
func TestConformanceOnSCIMSimulator(t *testing.T) {
	for _, tc := range []struct {
		name       string
		form       scimclient.Form
		put, etags bool
	}{
		{"patch array", scimclient.FormArray, false, true},
		{"patch object", scimclient.FormObject, false, true},
		{"put with etags", 0, true, true},
		{"put without etags", 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scimclienttest.Run(t, func(t *testing.T) *scimclienttest.Fixture {
				sim := scimsim.New(scimsim.Options{Token: "tok"})
				sim.SetPatch(!tc.put) // a PATCH sent under Put would fail with 501
				sim.SetETag(tc.etags)
				srv := httptest.NewServer(sim)
				t.Cleanup(srv.Close)
				c := newClient(t, scimclient.Config{
					HTTP:    httpClient(t, srv, srv.URL+scimsim.Prefix, sim.Token()),
					Target:  scimclient.Static(scimclient.Target{GroupsPath: "/Groups", Put: tc.put, ETags: tc.etags}),
					AddForm: tc.form, ContentType: "application/scim+json",
				})
				return &scimclienttest.Fixture{Client: c, Sim: sim, PatchRoute: scimsim.RouteGroupPatch,
					PutRoute: scimsim.RouteGroupPut, Put: tc.put, ETags: tc.etags, UnknownID: "nosuchgroup"}
			})
		})
	}
}

// recorder keeps the PatchOp bodies a handler was sent.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	ops  [][]map[string]any
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodPatch {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		var p struct {
			Operations []map[string]any `json:"Operations"`
		}
		_ = json.Unmarshal(body, &p)
		r.mu.Lock()
		r.ops = append(r.ops, p.Operations)
		r.mu.Unlock()
	}
	r.next.ServeHTTP(w, req)
}

// TestAddFormsOnTheWire: FormArray sends RFC 7644's one add with an array value; FormObject
// (Airtable's example) one add per member, each value a single object.
func TestAddFormsOnTheWire(t *testing.T) {
	for _, form := range []scimclient.Form{scimclient.FormArray, scimclient.FormObject} {
		sim := scimsim.New(scimsim.Options{Token: "tok"})
		rec := &recorder{next: sim}
		srv := httptest.NewServer(rec)
		t.Cleanup(srv.Close)
		c := newClient(t, scimclient.Config{HTTP: httpClient(t, srv, srv.URL+scimsim.Prefix, sim.Token()),
			Target: scimclient.Static(scimclient.Target{GroupsPath: "/Groups"}), AddForm: form})
		g, err := c.Create(t.Context(), "forms")
		if err != nil {
			t.Fatal(err)
		}
		a, b := sim.AddPerson(simkit.Person{Email: "a@example.com"}), sim.AddPerson(simkit.Person{Email: "b@example.com"})
		if err := c.AddMembers(t.Context(), g.ID, []string{a, b}); err != nil {
			t.Fatalf("%s: AddMembers: %v", form, err)
		}
		want := `[{"op":"add","path":"members","value":[{"value":"` + a + `"},{"value":"` + b + `"}]}]`
		if form == scimclient.FormObject {
			want = `[{"op":"add","path":"members","value":{"value":"` + a + `"}},{"op":"add","path":"members","value":{"value":"` + b + `"}}]`
		}
		rec.mu.Lock()
		got, _ := json.Marshal(rec.ops)
		rec.mu.Unlock()
		if string(got) != "["+want+"]" {
			t.Errorf("%s form sent %s, want [%s]", form, got, want)
		}
	}
}

// TestAddFormNegotiation: with NegotiateAddForm a server refusing the configured form is
// sent the other one once, and that form is kept; without it the refusal stands.
func TestAddFormNegotiation(t *testing.T) {
	sim := airtablesim.New(airtablesim.Options{Token: "tok", MemberValue: airtablesim.MemberValueArray})
	sim.Seed(simkit.Generate(simkit.GenOptions{Groups: 1, People: 3, Seed: 1}))
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	gid := sim.Snapshot()[0].ID
	people := []string{sim.AddPerson(simkit.Person{Email: "x@example.com"}), sim.AddPerson(simkit.Person{Email: "y@example.com"})}
	cfg := scimclient.Config{HTTP: httpClient(t, srv, srv.URL+airtablesim.SCIMPrefix, sim.Token()),
		Target: scimclient.Static(scimclient.Target{GroupsPath: "/Groups"}), AddForm: scimclient.FormObject}

	strict := newClient(t, cfg)
	if err := strict.AddMembers(t.Context(), gid, people[:1]); !errors.Is(err, connectors.ErrPermanent) {
		t.Fatalf("object form to an array-only server without negotiation = %v, want its 400", err)
	}
	cfg.NegotiateAddForm = true
	c := newClient(t, cfg)
	sim.Counter().Reset()
	for _, p := range people {
		if err := c.AddMembers(t.Context(), gid, []string{p}); err != nil {
			t.Fatalf("AddMembers with negotiation: %v", err)
		}
	}
	if c.AddForm() != scimclient.FormArray {
		t.Fatalf("AddForm after the server took the array = %s", c.AddForm())
	}
	if n := sim.Counter().Count(airtablesim.RouteSCIMPatch); n != 3 {
		t.Fatalf("%d PATCHes, want 3 (one refused in the object form, then one per add)", n)
	}
}

// TestFilterString: a SCIM filter string is a JSON string with only JSON's escapes, so
// quotes, backslashes and HTML reach the provider as written.
func TestFilterString(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:          `"plain"`,
		`say "hi"`:       `"say \"hi\""`,
		`back\slash`:     `"back\\slash"`,
		`<b>&amp;</b>`:   `"<b>&amp;</b>"`,
		"tab\tnewline\n": `"tab\tnewline\n"`,
	} {
		if got := scimclient.FilterString(in); got != want {
			t.Errorf("FilterString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestDecodeError(t *testing.T) {
	for body, want := range map[string]apiclient.ErrorInfo{
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"scimType":"noTarget","detail":"no match","status":"400"}`: {Type: "noTarget", Message: "no match"},
		`{"detail":"in use","status":409,"scimType":"uniqueness"}`:                                                             {Type: "uniqueness", Message: "in use"},
		`{"detail":"odd status","status":{"code":400}}`:                                                                        {Message: "odd status"},
		`<html>Bad gateway</html>`: {Message: "<html>Bad gateway</html>"},
	} {
		if got := scimclient.DecodeError(400, http.Header{"Authorization": {"Bearer canary"}}, []byte(body)); got != want {
			t.Errorf("DecodeError(%s) = %+v, want %+v", body, got, want)
		}
	}
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	hc, err := apiclient.New(apiclient.Config{System: "s", BaseURL: "https://scim.example.com/v2"})
	if err != nil {
		t.Fatal(err)
	}
	target := scimclient.Static(scimclient.Target{GroupsPath: "/Groups"})
	for what, cfg := range map[string]scimclient.Config{
		"no HTTP client": {Target: target},
		"no target":      {HTTP: hc},
		"unknown form":   {HTTP: hc, Target: target, AddForm: 7},
	} {
		if _, err := scimclient.New(cfg); err == nil || !strings.Contains(err.Error(), "scimclient") {
			t.Errorf("New with %s = %v, want an error", what, err)
		}
	}
}
