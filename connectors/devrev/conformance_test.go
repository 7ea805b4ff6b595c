package devrev

import (
	"testing"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/conformance"
	"github.com/groupsync/groupsync/connectors/devrev/devrevsim"
)

func newFixture(t *testing.T, o conformance.Options) *conformance.Fixture {
	h := newHarness(t, devrevsim.Options{}, func(c *connectors.SystemConfig) {
		c.MaxAttempts, c.MaxRetryWait, c.MaxBodyBytes = o.MaxAttempts, o.MaxRetryWait, o.MaxBodyBytes
		c.Timeout, c.PageSize = o.Timeout, o.PageSize
	})
	pages := func(n int) int { return max(1, (n+o.PageSize-1)/o.PageSize) }
	return &conformance.Fixture{
		Conn:            h.conn,
		Sim:             h.sim,
		GroupsEndpoint:  "groups.list",
		MembersEndpoint: "groups.members.list",
		// ListGroups first lists the dynamic groups (DevRev's group object does not carry
		// its type), which costs one more groups.list request while they fit on a page.
		MinGroupRequests:  func(n int) int { return pages(n) + 1 },
		MinMemberRequests: pages,
		Waits:             h.Waits,
		// DevRev's 429 names its wait (Retry-After and retry_after), so the suite checks
		// the wait it armed, not a fixed penalty.
		RateLimitWait: 0,
	}
}

func TestConformance(t *testing.T) { conformance.Run(t, newFixture) }
