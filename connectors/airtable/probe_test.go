package airtable_test

import (
	"errors"
	"testing"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/airtable/airtablesim"
	"github.com/groupsync/groupsync/connectors/conformance"
)

// TestProbeWrite: the write probe is one SCIM read; a token SCIM refuses (403, while the
// meta API still answers) fails it as ErrUnauthorized, as the first write would.
func TestProbeWrite(t *testing.T) {
	h := newHarness(t, conformance.Options{MaxAttempts: 1})
	p, ok := h.conn.(connectors.WriteProber)
	if !ok {
		t.Fatal("the airtable connector does not implement connectors.WriteProber")
	}
	if _, err := p.ProbeWrite(t.Context()); err != nil {
		t.Fatalf("probe with an admin token = %v", err)
	}
	if n := h.sim.Counter().Count(airtablesim.RouteSCIMList); n != 1 {
		t.Errorf("probe made %d SCIM list calls, want 1", n)
	}
	h.sim.Faults().StatusNext(airtablesim.RouteSCIMList, -1, 403)
	if _, err := p.ProbeWrite(t.Context()); !errors.Is(err, connectors.ErrUnauthorized) {
		t.Errorf("probe with a token SCIM refuses = %v, want ErrUnauthorized", err)
	}
}
