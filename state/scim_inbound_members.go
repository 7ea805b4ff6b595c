package state

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// validIDs splits ids into uuids and the rest (which name no user).
func validIDs(ids []string) (ok, bad []string) {
	for _, id := range ids {
		if uuidPattern.MatchString(id) {
			ok = append(ok, id)
		} else {
			bad = append(bad, id)
		}
	}
	return ok, bad
}

// unknownUsers returns the ids of ids that are no user of the system.
func (w *InboundTx) unknownUsers(ctx context.Context, ids []string) ([]string, error) {
	ok, bad := validIDs(ids)
	rows, err := w.tx.Query(ctx, `
		SELECT v FROM unnest($2::text[]) v
		 WHERE NOT EXISTS (SELECT 1 FROM scim_users u WHERE u.system = $1 AND u.id = v::uuid)`, w.system, ok)
	if err != nil {
		return nil, err
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return append(bad, missing...), err
}

// AddMembers adds users to group id (those already in it stay). A value that is no user of
// the system fails the whole call with ErrInboundUnknownMember, naming it.
func (w *InboundTx) AddMembers(ctx context.Context, id string, userIDs []string) error {
	if len(userIDs) == 0 {
		return nil
	}
	missing, err := w.unknownUsers(ctx, userIDs)
	if err != nil {
		return fmt.Errorf("state: check members of group %s: %w", id, err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("member %q of group %s: %w", missing[0], id, ErrInboundUnknownMember)
	}
	w.wrote = true
	if _, err := w.tx.Exec(ctx, `
		INSERT INTO scim_members (system, group_id, user_id)
		SELECT $1, $2::uuid, v::uuid FROM unnest($3::text[]) v
		ON CONFLICT DO NOTHING`, w.system, id, userIDs); err != nil {
		return fmt.Errorf("state: add members to group %s: %w", id, err)
	}
	return w.touchGroup(ctx, id)
}

// RemoveMembers removes users from group id and reports how many were members.
func (w *InboundTx) RemoveMembers(ctx context.Context, id string, userIDs []string) (int64, error) {
	ok, _ := validIDs(userIDs)
	w.wrote = true
	tag, err := w.tx.Exec(ctx, `DELETE FROM scim_members WHERE system = $1 AND group_id = $2::uuid AND user_id = ANY($3::text[]::uuid[])`,
		w.system, id, ok)
	if err != nil {
		return 0, fmt.Errorf("state: remove members from group %s: %w", id, err)
	}
	return tag.RowsAffected(), w.touchGroup(ctx, id)
}

// SetMembers makes userIDs the whole membership of group id, writing only the difference.
func (w *InboundTx) SetMembers(ctx context.Context, id string, userIDs []string) error {
	userIDs = slices.Compact(slices.Sorted(slices.Values(userIDs)))
	if userIDs == nil {
		userIDs = []string{} // NULL would make NOT (user_id = ANY(NULL)) keep everyone
	}
	missing, err := w.unknownUsers(ctx, userIDs)
	if err != nil {
		return fmt.Errorf("state: check members of group %s: %w", id, err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("member %q of group %s: %w", missing[0], id, ErrInboundUnknownMember)
	}
	w.wrote = true
	if _, err := w.tx.Exec(ctx, `DELETE FROM scim_members WHERE system = $1 AND group_id = $2::uuid
		AND NOT (user_id = ANY($3::text[]::uuid[]))`, w.system, id, userIDs); err != nil {
		return fmt.Errorf("state: replace members of group %s: %w", id, err)
	}
	if _, err := w.tx.Exec(ctx, `INSERT INTO scim_members (system, group_id, user_id)
		SELECT $1, $2::uuid, v::uuid FROM unnest($3::text[]) v ON CONFLICT DO NOTHING`, w.system, id, userIDs); err != nil {
		return fmt.Errorf("state: replace members of group %s: %w", id, err)
	}
	return w.touchGroup(ctx, id)
}

// RemoveAllMembers empties group id.
func (w *InboundTx) RemoveAllMembers(ctx context.Context, id string) error {
	return w.SetMembers(ctx, id, nil)
}

// Members lists the members of groups ids (each group's in user id order), for the
// resources the face returns.
func (w *InboundTx) Members(ctx context.Context, ids []string) (map[string][]InboundMember, error) {
	ok, _ := validIDs(ids)
	rows, err := w.tx.Query(ctx, `
		SELECT m.group_id::text, m.user_id::text, coalesce(nullif(u.display_name, ''), u.user_name)
		  FROM scim_members m JOIN scim_users u ON u.system = m.system AND u.id = m.user_id
		 WHERE m.system = $1 AND m.group_id = ANY($2::text[]::uuid[])
		 ORDER BY m.group_id, m.user_id`, w.system, ok)
	if err != nil {
		return nil, fmt.Errorf("state: members of groups: %w", err)
	}
	defer rows.Close()
	out := map[string][]InboundMember{}
	for rows.Next() {
		var g string
		var m InboundMember
		if err := rows.Scan(&g, &m.UserID, &m.Display); err != nil {
			return nil, fmt.Errorf("state: members of groups: %w", err)
		}
		out[g] = append(out[g], m)
	}
	return out, rows.Err()
}
