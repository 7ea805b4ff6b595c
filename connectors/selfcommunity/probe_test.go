package selfcommunity

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/selfcommunity/selfcommunitysim"
	"github.com/groupsync/groupsync/connectors/simkit"
	"github.com/groupsync/groupsync/secret"
)

// TestProbeWrite: the write probe passes for an admin, fails (403, ErrUnauthorized) for a
// user who manages only some groups, and passes with nothing to probe on an empty community.
func TestProbeWrite(t *testing.T) {
	const jwtSecret = "community-shared-secret"
	e := newEnv(t, envOptions{sim: selfcommunitysim.Options{JWTSecret: jwtSecret, Token: canaryToken}})
	as := func(userID string) *conn {
		c, err := open(connectors.SystemConfig{Name: "sc-" + userID, BaseURL: e.srv.URL, JWTSecret: secret.New(jwtSecret),
			Options: map[string]string{"jwt_user_id": userID}, RateLimit: 1e6, Burst: 100},
			connectors.Deps{HTTPClient: e.srv.Client(), Sleep: e.sl.sleep}, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	if detail, err := as("1").ProbeWrite(t.Context()); err != nil || !strings.Contains(detail, "no group yet") {
		t.Fatalf("probe of an empty community = %q, %v; want ok with nothing to probe", detail, err)
	}

	e.sim.Seed(simkit.Tenant{People: []simkit.Person{{Email: "m@example.com"}, {Email: "x@example.com"}},
		Groups: []simkit.TenantGroup{{Name: "Mine", Members: []int32{0}, Managers: []int32{0}}, {Name: "Theirs", Members: []int32{1}}}})
	groups := collectGroups(t, e.conn)
	mgr := collectMembers(t, e.conn, groups["Mine"].ID)[0].AccountID

	if detail, err := as("1").ProbeWrite(t.Context()); err != nil || !strings.Contains(detail, "admin") {
		t.Errorf("admin probe = %q, %v; want ok as an admin", detail, err)
	}
	// The manager of Mine is probed on Theirs, which it cannot write.
	_, err := as(mgr).ProbeWrite(t.Context())
	if !errors.Is(err, connectors.ErrUnauthorized) || !strings.Contains(err.Error(), "permission") {
		t.Errorf("probe as the manager of one group = %v, want ErrUnauthorized with the API's message", err)
	}
	if err := as(mgr).AddMembers(t.Context(), groups["Theirs"].ID, []string{"1"}); !errors.Is(err, connectors.ErrUnauthorized) {
		t.Errorf("the write the probe predicts to fail = %v, want ErrUnauthorized", err)
	}
}
