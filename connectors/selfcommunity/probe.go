package selfcommunity

import (
	"context"
	"errors"
	"net/url"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/apiclient"
)

var _ connectors.WriteProber = (*conn)(nil)

// errProbeEnough stops the probe's group listing after its first page.
var errProbeEnough = errors.New("enough")

// ProbeWrite reads one group's pending invitations (`GET /api/v2/group/{id}/invite/`), a
// read SelfCommunity answers only for the group's manager, as it does member and group
// writes. It picks a group the user does not manage by managed_by when there is one: if
// that read is answered, the user manages groups beyond its own (an admin), which writing
// to groups adopted by name needs. With no group yet there is nothing to probe: creating
// one needs only a signed-in user.
func (c *conn) ProbeWrite(ctx context.Context) (string, error) {
	probe, others := "", false
	_, err := c.ListGroups(ctx, func(gs []connectors.Group) error {
		for _, g := range gs {
			if probe == "" {
				probe = g.ID
			}
			if c.actor != "" && c.managerOf(g.ID) != c.actor {
				probe, others = g.ID, true
				break
			}
		}
		return errProbeEnough
	})
	if err != nil && !errors.Is(err, errProbeEnough) {
		return "", err
	}
	if probe == "" {
		return "no group yet: creating one needs only a signed-in user", nil
	}
	if err := c.checkID(epInvitesList, "group", probe); err != nil {
		return "", err
	}
	_, _, err = c.api.DoRaw(ctx, apiclient.Request{
		Method: "GET", Path: "/api/v2/group/" + url.PathEscape(probe) + "/invite/", Endpoint: epInvitesList,
		Query: url.Values{"limit": {"1"}, "offset": {"0"}},
	})
	if err != nil {
		return "", err
	}
	if others {
		return "manages a group it is not the manager of (an admin)", nil
	}
	return "manages a listed group", nil
}
