// Package conformance is the suite every connector passes against its simulator: paging to
// the end, request counts, completeness, 429/5xx/4xx handling, cancellation, malformed and
// oversized bodies, names that need escaping, and writes visible on the next read.
package conformance

import (
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/simkit"
)

// Options are what the suite asks of a fixture's connector.
type Options struct {
	// MaxAttempts for the connector's client (the suite counts retries against it).
	MaxAttempts int
	// MaxRetryWait for the connector's client.
	MaxRetryWait time.Duration
	// MaxBodyBytes for the connector's client.
	MaxBodyBytes int64
	// Timeout per request.
	Timeout time.Duration
	// PageSize for list calls (the suite picks small pages to exercise paging).
	PageSize int
}

// Fixture is one connector opened against a fresh simulator.
type Fixture struct {
	Conn connectors.Connector
	Sim  simkit.Sim
	// GroupsEndpoint and MembersEndpoint are the simulator's endpoint labels for the group
	// listing and the member listing (what simkit.Counter counts and faults match).
	GroupsEndpoint  string
	MembersEndpoint string
	// MinGroupRequests is the least number of requests a complete ListGroups over n groups
	// can take with Options.PageSize (ceil(n/size), at least 1, for paged APIs).
	MinGroupRequests func(n int) int
	// MinMemberRequests is the same for ListMembers over n members.
	MinMemberRequests func(n int) int
	// Waits returns the waits the connector's client slept so far (its injected Sleep), so
	// the suite checks Retry-After handling without sleeping.
	Waits func() []time.Duration
	// RateLimitWait is the wait the simulator's 429 asks for when armed with 0 (Airtable's
	// fixed 30 s); the client must wait at least that long.
	RateLimitWait time.Duration
}

// Factory opens a connector against a fresh simulator. It must use t.Cleanup for teardown,
// an injected Sleep that records waits and returns at once (honouring ctx), and the
// httptest server's own client.
type Factory func(t *testing.T, o Options) *Fixture
