package selfcommunity

import (
	"context"
	"errors"
	"fmt"

	"github.com/groupsync/groupsync/connectors"
)

var _ connectors.UnlistedReader = (*conn)(nil)

// ReadUnlisted reads by id the groups the engine expected in a listing that did not return
// them. `GET /api/v2/group/search/` returns "groups with visible=true, plus hidden groups
// the caller belongs to" (apis.md §1.1), with no exception documented for admins, so a
// hidden group groupsync created (the creator does not join it) or that was hidden since
// the last pull drops out of the search while it still exists. Per group:
//
//   - 200: the group exists and this token can read it: handed to fn as listed;
//   - 403: it exists and the token may not read it: unreadable;
//   - 404 on a group last seen hidden, or on an id only the configuration names: the API
//     answers the same for "gone" and "hidden from you", so it is unreadable, not gone;
//   - 404 on a group last seen visible: gone (it would have to have been hidden and made
//     unreadable since the last pull, which the API cannot tell from a delete).
//
// Unreadable groups keep their mirror rows and get no removals (Listing.Unreadable); the
// reason for each is in Listing.UnreadableReasons and logged.
func (c *conn) ReadUnlisted(ctx context.Context, expected []connectors.ExpectedGroup, fn func([]connectors.Group) error) (connectors.Listing, error) {
	l := connectors.Listing{UnreadableReasons: map[string]string{}}
	unreadable := func(id, reason string) {
		l.Unreadable = append(l.Unreadable, id)
		l.UnreadableReasons[id] = reason
		c.log.Warn("group not listed by the group search and not readable by id: kept, not taken as deleted, no removals",
			"group_id", id, "reason", reason)
	}
	for _, e := range expected {
		if err := c.checkID(epGroupGet, "group", e.ID); err != nil {
			unreadable(e.ID, "not a SelfCommunity group id")
			continue
		}
		g, err := c.GetGroup(ctx, e.ID)
		var ce *connectors.Error
		switch {
		case err == nil:
			l.Pages++
			l.Items++
			if err := fn([]connectors.Group{g}); err != nil {
				return l, err
			}
		case errors.As(err, &ce) && ce.Status == 403:
			unreadable(e.ID, "hidden: the group search leaves it out and reading it by id answers 403 (the token's user is not in it)")
		case errors.Is(err, connectors.ErrNotFound) && e.Visibility == connectors.VisibilityHidden:
			unreadable(e.ID, "hidden: the group search leaves out hidden groups the token's user is not in, and reading it by id answers 404")
		case errors.Is(err, connectors.ErrNotFound) && e.Visibility == connectors.VisibilityUnknown:
			unreadable(e.ID, "named by the configuration but neither listed nor readable by id (404): hidden from this token, or no such group")
		case errors.Is(err, connectors.ErrNotFound):
			// Gone: last seen visible.
		default:
			return l, fmt.Errorf("read unlisted group %s: %w", e.ID, err)
		}
	}
	l.Complete = true
	return l, nil
}
