package state

import (
	"context"
	"errors"
	"fmt"

	"github.com/groupsync/groupsync/connectors"
	"github.com/jackc/pgx/v5"
)

// inboundPage is how many rows one read of an inbound listing takes (one short
// transaction each, so a flow's pull of a large system holds no snapshot between pages).
const inboundPage = 1000

// Inbound is the store as the scim_inbound connector reads it.
func (s *Store) Inbound() connectors.InboundSource { return inboundSource{s} }

type inboundSource struct{ s *Store }

func inboundGroup(g InboundGroup) connectors.Group {
	return connectors.Group{ID: g.ID, Name: g.DisplayName, State: "active", Raw: g.Attrs,
		CreatedAt: g.Created, ModifiedAt: g.Modified}
}

// inboundAccountState is the account state of an inbound user: a user the identity
// provider set active=false is deactivated, so the mirror tombstones it and nobody is
// added anywhere through it.
func inboundAccountState(active bool) string {
	if active {
		return "active"
	}
	return "deactivated"
}

func inboundAccount(u InboundUser) connectors.Account {
	name := u.DisplayName
	if name == "" {
		name = u.UserName
	}
	return connectors.Account{ID: u.ID, Email: u.Email, DisplayName: name, State: inboundAccountState(u.Active), Raw: u.Attrs}
}

func (i inboundSource) InboundGroups(ctx context.Context, system string, fn func([]connectors.Group) error) error {
	var after InboundCursor
	for {
		page, err := i.s.ScanInboundGroups(ctx, system, after, inboundPage)
		if err != nil || len(page) == 0 {
			return err
		}
		out := make([]connectors.Group, len(page))
		for k, g := range page {
			out[k] = inboundGroup(g)
		}
		if err := fn(out); err != nil {
			return err
		}
		last := page[len(page)-1]
		after = InboundCursor{Created: last.Created, ID: last.ID}
	}
}

func (i inboundSource) InboundGroup(ctx context.Context, system, id string) (connectors.Group, error) {
	var g InboundGroup
	err := i.s.InboundRead(ctx, system, func(tx *InboundTx) error {
		var err error
		g, err = tx.Group(ctx, id, false)
		return err
	})
	if errors.Is(err, ErrInboundNotFound) {
		return connectors.Group{}, fmt.Errorf("scim_inbound %s: group %s: %w", system, id, connectors.ErrNotFound)
	}
	return inboundGroup(g), err
}

func (i inboundSource) InboundMembers(ctx context.Context, system, id string, fn func([]connectors.Member) error) error {
	if _, err := i.InboundGroup(ctx, system, id); err != nil {
		return err
	}
	after := "00000000-0000-0000-0000-000000000000"
	for {
		rows, err := i.s.pool.Query(ctx, `
			SELECT m.user_id::text, coalesce(u.email, ''), coalesce(nullif(u.display_name, ''), u.user_name)
			  FROM scim_members m JOIN scim_users u ON u.system = m.system AND u.id = m.user_id
			 WHERE m.system = $1 AND m.group_id = $2::uuid AND m.user_id > $3::uuid
			 ORDER BY m.user_id LIMIT $4`, system, id, after, inboundPage)
		if err != nil {
			return fmt.Errorf("state: members of scim_inbound group %s/%s: %w", system, id, err)
		}
		page, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (connectors.Member, error) {
			m := connectors.Member{GroupID: id, Type: connectors.MemberUser, Role: "member"}
			return m, r.Scan(&m.AccountID, &m.Email, &m.DisplayName)
		})
		if err != nil {
			return fmt.Errorf("state: members of scim_inbound group %s/%s: %w", system, id, err)
		}
		if len(page) == 0 {
			return nil
		}
		if err := fn(page); err != nil {
			return err
		}
		after = page[len(page)-1].AccountID
	}
}

func (i inboundSource) InboundAccounts(ctx context.Context, system string, ids []string, fn func([]connectors.Account) error) error {
	if ids == nil {
		var after InboundCursor
		for {
			page, err := i.s.ScanInboundUsers(ctx, system, after, inboundPage)
			if err != nil || len(page) == 0 {
				return err
			}
			if err := fn(inboundAccounts(page)); err != nil {
				return err
			}
			last := page[len(page)-1]
			after = InboundCursor{Created: last.Created, ID: last.ID}
		}
	}
	ok, _ := validIDs(ids)
	for len(ok) > 0 {
		batch := ok[:min(len(ok), inboundPage)]
		ok = ok[len(batch):]
		rows, err := i.s.pool.Query(ctx, `SELECT `+userCols+` FROM scim_users t WHERE system = $1 AND id = ANY($2::text[]::uuid[])`,
			system, batch)
		if err != nil {
			return fmt.Errorf("state: users of scim_inbound system %s: %w", system, err)
		}
		page, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (InboundUser, error) { return scanUser(r) })
		if err != nil {
			return fmt.Errorf("state: users of scim_inbound system %s: %w", system, err)
		}
		if err := fn(inboundAccounts(page)); err != nil {
			return err
		}
	}
	return nil
}

func inboundAccounts(us []InboundUser) []connectors.Account {
	out := make([]connectors.Account, len(us))
	for k, u := range us {
		out[k] = inboundAccount(u)
	}
	return out
}

func (i inboundSource) InboundAccountByKey(ctx context.Context, system, key string) (connectors.Account, error) {
	u, err := scanUser(i.s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM scim_users t WHERE system = $1 AND email = $2
		ORDER BY active DESC, created_at LIMIT 1`, system, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return connectors.Account{}, fmt.Errorf("scim_inbound %s: no user with that identity key: %w", system, connectors.ErrNotFound)
	}
	if err != nil {
		return connectors.Account{}, fmt.Errorf("state: find a user of scim_inbound system %s: %w", system, err)
	}
	return inboundAccount(u), nil
}

func (i inboundSource) InboundGroupByName(ctx context.Context, system, name string) (connectors.Group, error) {
	g, err := scanGroup(i.s.pool.QueryRow(ctx, `SELECT `+groupCols+` FROM scim_groups t WHERE system = $1 AND display_name = $2`, system, name))
	if err == nil {
		return inboundGroup(g), nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return connectors.Group{}, fmt.Errorf("state: find a group of scim_inbound system %s: %w", system, err)
	}
	// The normalized key is Go's (NormalizeName), so compare in Go over a scan.
	key := connectors.NormalizeName(name)
	var hit *connectors.Group
	errFound := errors.New("found")
	err = i.InboundGroups(ctx, system, func(gs []connectors.Group) error {
		for _, g := range gs {
			if connectors.NormalizeName(g.Name) == key {
				hit = &g
				return errFound
			}
		}
		return nil
	})
	if hit != nil {
		return *hit, nil
	}
	if err != nil {
		return connectors.Group{}, err
	}
	return connectors.Group{}, fmt.Errorf("scim_inbound %s: no group named %q: %w", system, name, connectors.ErrNotFound)
}
