package scim

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/scim/scimclient/scimclienttest"
	"github.com/groupsync/groupsync/connectors/scim/scimsim"
	"github.com/groupsync/groupsync/secret"
)

// TestSharedSCIMClientConformance runs the shared SCIM write client's suite on the client
// this connector writes with, its target learnt by discovery: PATCH where the provider
// announces it, else PUT, conditional where ETags are announced; and PUT by write_mode
// against a provider that has PATCH too.
func TestSharedSCIMClientConformance(t *testing.T) {
	for _, tc := range []struct {
		name              string
		patch, etag       bool
		writeMode         string
		wantPut, wantETag bool
	}{
		{"patch discovered", true, true, "", false, true},
		{"put discovered with etags", false, true, "", true, true},
		{"put discovered without etags", false, false, "", true, false},
		{"put by write_mode", true, true, WriteModePut, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scimclienttest.Run(t, func(t *testing.T) *scimclienttest.Fixture {
				sim := scimsim.New(scimsim.Options{Token: "tok"})
				sim.SetPatch(tc.patch)
				sim.SetETag(tc.etag)
				srv := httptest.NewServer(sim)
				t.Cleanup(srv.Close)
				c, err := Open(connectors.SystemConfig{Name: "scim-test", Kind: connectors.KindSCIM,
					BaseURL: srv.URL + scimsim.Prefix, Token: secret.New(sim.Token()), RateLimit: 1000, Burst: 50,
					Options: map[string]string{OptionWriteMode: tc.writeMode}},
					connectors.Deps{HTTPClient: srv.Client(), Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				return &scimclienttest.Fixture{Client: c.(*conn).groups, Sim: sim, PatchRoute: scimsim.RouteGroupPatch,
					PutRoute: scimsim.RouteGroupPut, Put: tc.wantPut, ETags: tc.wantETag,
					MaxMembersPerWrite: MaxMembersPerWrite, UnknownID: "nosuchgroup"}
			})
		})
	}
}
