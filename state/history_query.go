package state

import (
	"context"
	"fmt"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/jackc/pgx/v5"
)

// GroupHistoryFilter selects the history `groupsync history` prints.
type GroupHistoryFilter struct {
	// Group is a group's external id or its name (compared as normalized names), in any
	// system unless System is set.
	Group  string
	System string // "" = every system
	// Since: only events at or after it; zero = all history kept.
	Since time.Time
}

// HistoryEvent is one change of a group: a member joined or left (membership_changes), or
// the group took a name and visibility (group_intervals).
type HistoryEvent struct {
	At        time.Time `json:"at"`
	System    string    `json:"system"`
	GroupID   string    `json:"group_id"`
	GroupName string    `json:"group_name"`
	// Change is joined, left or named.
	Change string `json:"change"`
	// MemberID and MemberEmail are the member's account id and normalized email (joined,
	// left); Name and Visibility what the group took (named).
	MemberID    string `json:"member_id,omitempty"`
	MemberEmail string `json:"member_email,omitempty"`
	Name        string `json:"name,omitempty"`
	Visibility  string `json:"visibility,omitempty"`
	// Via is observed (a pull saw it) or written (groupsync's push did it); RunID the run
	// of that pull or push, 0 for a pull outside a run.
	Via   string `json:"via"`
	RunID int64  `json:"run_id,omitempty"`
}

// GroupHistory returns the history of the groups f names, oldest first. It is the
// membership_changes view and the group_intervals openings of those groups; ErrNotFound
// when no group (live or tombstoned) has that id or name.
func (s *Store) GroupHistory(ctx context.Context, f GroupHistoryFilter) ([]HistoryEvent, error) {
	var since *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM groups WHERE (external_id = $1 OR name_key = $2) AND ($3 = '' OR system = $3)`,
		f.Group, connectors.NormalizeName(f.Group), f.System).Scan(&n); err != nil {
		return nil, fmt.Errorf("state: look up group %q: %w", f.Group, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("state: no group with id or name %q%s: %w", f.Group, inSystem(f.System), ErrNotFound)
	}
	rows, err := s.pool.Query(ctx, `
WITH target AS (
	SELECT system, external_id FROM groups WHERE (external_id = $1 OR name_key = $2) AND ($3 = '' OR system = $3)
)
SELECT * FROM (
	SELECT c.at, c.system, c.group_id, coalesce(c.group_name, ''), c.change, c.member_id, c.member_email_key, '', '',
	       c.via, coalesce(c.run_id, 0)
	  FROM membership_changes c JOIN target t ON t.system = c.system AND t.external_id = c.group_id
	UNION ALL
	SELECT i.valid_from, i.system, i.group_id, coalesce(g.name, ''), 'named', '', '', i.name, i.visibility,
	       i.opened_by, coalesce(i.opened_run, 0)
	  FROM group_intervals i JOIN target t ON t.system = i.system AND t.external_id = i.group_id
	  LEFT JOIN groups g ON g.system = i.system AND g.external_id = i.group_id
) e
WHERE $4::timestamptz IS NULL OR e.at >= $4
ORDER BY 1, 2, 3, 5 DESC, 6`, f.Group, connectors.NormalizeName(f.Group), f.System, since)
	if err != nil {
		return nil, fmt.Errorf("state: history of group %q: %w", f.Group, err)
	}
	events, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (HistoryEvent, error) {
		var e HistoryEvent
		err := r.Scan(&e.At, &e.System, &e.GroupID, &e.GroupName, &e.Change, &e.MemberID, &e.MemberEmail,
			&e.Name, &e.Visibility, &e.Via, &e.RunID)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("state: history of group %q: %w", f.Group, err)
	}
	return events, nil
}

func inSystem(system string) string {
	if system == "" {
		return ""
	}
	return " in system " + system
}
