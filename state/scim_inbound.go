package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The SCIM face's storage (migration 022): the users, groups and members identity
// providers push to a scim_inbound system. The face (package scimface) turns RFC 7644
// requests into the calls below; the system's connector (connectors/sciminbound) reads the
// same rows back through InboundSource when a flow pulls it.

// Errors of inbound writes, which the face answers as SCIM errors.
var (
	// ErrInboundNotFound: no such user or group in this system (404).
	ErrInboundNotFound = errors.New("no such resource")
	// ErrInboundUniqueness: another resource holds the userName or displayName (409).
	ErrInboundUniqueness = errors.New("another resource holds this name")
	// ErrInboundUnknownMember: a member value names no user of this system (400).
	ErrInboundUnknownMember = errors.New("member is not a user of this system")
)

// InboundUser is one user an identity provider pushed.
type InboundUser struct {
	ID          string
	UserName    string
	ExternalID  string
	Active      bool
	Email       string // the identity key's source (see migration 022)
	DisplayName string
	Attrs       json.RawMessage // every attribute as accepted, id/meta/schemas left out
	Version     int64
	Created     time.Time
	Modified    time.Time
}

// InboundGroup is one group an identity provider pushed; its members are apart (Members).
type InboundGroup struct {
	ID          string
	DisplayName string
	ExternalID  string
	Attrs       json.RawMessage
	Version     int64
	Created     time.Time
	Modified    time.Time
}

// InboundMember is one member of an inbound group, with what a SCIM member's display shows.
type InboundMember struct {
	UserID  string
	Display string
}

// uuidPattern: ids are uuids; anything else is a resource that does not exist, never a
// cast error from Postgres.
var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// InboundTx is one transaction on one scim_inbound system's resources.
type InboundTx struct {
	tx     pgx.Tx
	system string
	wrote  bool
}

// InboundWrite runs fn in one transaction on system's resources and commits before it
// returns, so a write the face answers is durable. A transaction that wrote anything also
// records the write for the debounced trigger (ClaimInboundTriggers).
func (s *Store) InboundWrite(ctx context.Context, system string, fn func(*InboundTx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		w := &InboundTx{tx: tx, system: system}
		if err := fn(w); err != nil {
			return err
		}
		if !w.wrote {
			return nil
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO scim_inbound_writes (system, writes, last_write_at, first_pending_at)
			VALUES ($1, 1, now(), now())
			ON CONFLICT (system) DO UPDATE SET writes = scim_inbound_writes.writes + 1, last_write_at = now(),
			       first_pending_at = coalesce(scim_inbound_writes.first_pending_at, now())`, system)
		if err != nil {
			return fmt.Errorf("state: record a write to scim_inbound system %s: %w", system, err)
		}
		return nil
	})
}

// InboundRead runs fn in one transaction on system's resources, for reads (a group and its
// members seen together).
func (s *Store) InboundRead(ctx context.Context, system string, fn func(*InboundTx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return fn(&InboundTx{tx: tx, system: system}) })
}

// isUnique reports whether err is a unique violation (a second userName or displayName).
func isUnique(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// userCols and groupCols are read from the table aliased t.
const userCols = `t.id::text, t.user_name, coalesce(t.external_id, ''), t.active, coalesce(t.email, ''),
	coalesce(t.display_name, ''), t.attrs, t.version, t.created_at, t.modified_at`

func scanUser(row pgx.Row) (InboundUser, error) {
	var u InboundUser
	err := row.Scan(&u.ID, &u.UserName, &u.ExternalID, &u.Active, &u.Email, &u.DisplayName, &u.Attrs,
		&u.Version, &u.Created, &u.Modified)
	return u, err
}

const groupCols = `t.id::text, t.display_name, coalesce(t.external_id, ''), t.attrs, t.version, t.created_at, t.modified_at`

func scanGroup(row pgx.Row) (InboundGroup, error) {
	var g InboundGroup
	err := row.Scan(&g.ID, &g.DisplayName, &g.ExternalID, &g.Attrs, &g.Version, &g.Created, &g.Modified)
	return g, err
}

// found maps pgx.ErrNoRows to ErrInboundNotFound and a unique violation to
// ErrInboundUniqueness, naming what was asked.
func found[T any](v T, err error, what, id string) (T, error) {
	switch {
	case err == nil:
		return v, nil
	case errors.Is(err, pgx.ErrNoRows):
		return v, fmt.Errorf("%s %s: %w", what, id, ErrInboundNotFound)
	case isUnique(err):
		return v, fmt.Errorf("%s %s: %w", what, id, ErrInboundUniqueness)
	}
	return v, fmt.Errorf("state: %s %s: %w", what, id, err)
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// CreateUser stores a new user and returns it with its id, version and times.
func (w *InboundTx) CreateUser(ctx context.Context, u InboundUser) (InboundUser, error) {
	w.wrote = true
	row := w.tx.QueryRow(ctx, `
		INSERT INTO scim_users AS t (system, user_name, external_id, active, email, display_name, attrs)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+userCols,
		w.system, u.UserName, nullable(u.ExternalID), u.Active, nullable(u.Email), nullable(u.DisplayName), u.Attrs)
	out, err := scanUser(row)
	return found(out, err, "user", "(new)")
}

// User reads one user; lock takes it FOR UPDATE (a read-modify-write of PATCH).
func (w *InboundTx) User(ctx context.Context, id string, lock bool) (InboundUser, error) {
	if !uuidPattern.MatchString(id) {
		return InboundUser{}, fmt.Errorf("user %s: %w", id, ErrInboundNotFound)
	}
	q := `SELECT ` + userCols + ` FROM scim_users t WHERE system = $1 AND id = $2::uuid`
	if lock {
		q += ` FOR UPDATE`
	}
	u, err := scanUser(w.tx.QueryRow(ctx, q, w.system, id))
	return found(u, err, "user", id)
}

// UpdateUser replaces a user's attributes and bumps its version.
func (w *InboundTx) UpdateUser(ctx context.Context, u InboundUser) (InboundUser, error) {
	if !uuidPattern.MatchString(u.ID) {
		return InboundUser{}, fmt.Errorf("user %s: %w", u.ID, ErrInboundNotFound)
	}
	w.wrote = true
	row := w.tx.QueryRow(ctx, `
		UPDATE scim_users t SET user_name = $3, external_id = $4, active = $5, email = $6, display_name = $7,
		       attrs = $8, version = version + 1, modified_at = now()
		 WHERE system = $1 AND id = $2::uuid RETURNING `+userCols,
		w.system, u.ID, u.UserName, nullable(u.ExternalID), u.Active, nullable(u.Email), nullable(u.DisplayName), u.Attrs)
	out, err := scanUser(row)
	return found(out, err, "user", u.ID)
}

// DeleteUser deletes a user and its memberships.
func (w *InboundTx) DeleteUser(ctx context.Context, id string) error {
	return w.deleteFrom(ctx, "scim_users", "user", id)
}

func (w *InboundTx) deleteFrom(ctx context.Context, table, what, id string) error {
	if !uuidPattern.MatchString(id) {
		return fmt.Errorf("%s %s: %w", what, id, ErrInboundNotFound)
	}
	w.wrote = true
	tag, err := w.tx.Exec(ctx, `DELETE FROM `+table+` WHERE system = $1 AND id = $2::uuid`, w.system, id)
	if err != nil {
		return fmt.Errorf("state: delete %s %s: %w", what, id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s %s: %w", what, id, ErrInboundNotFound)
	}
	return nil
}

// CreateGroup stores a new group (members apart, SetMembers).
func (w *InboundTx) CreateGroup(ctx context.Context, g InboundGroup) (InboundGroup, error) {
	w.wrote = true
	row := w.tx.QueryRow(ctx, `
		INSERT INTO scim_groups AS t (system, display_name, external_id, attrs) VALUES ($1, $2, $3, $4)
		RETURNING `+groupCols, w.system, g.DisplayName, nullable(g.ExternalID), g.Attrs)
	out, err := scanGroup(row)
	return found(out, err, "group", g.DisplayName)
}

// Group reads one group; lock takes it FOR UPDATE, which also orders concurrent member
// writes to one group.
func (w *InboundTx) Group(ctx context.Context, id string, lock bool) (InboundGroup, error) {
	if !uuidPattern.MatchString(id) {
		return InboundGroup{}, fmt.Errorf("group %s: %w", id, ErrInboundNotFound)
	}
	q := `SELECT ` + groupCols + ` FROM scim_groups t WHERE system = $1 AND id = $2::uuid`
	if lock {
		q += ` FOR UPDATE`
	}
	g, err := scanGroup(w.tx.QueryRow(ctx, q, w.system, id))
	return found(g, err, "group", id)
}

// UpdateGroup replaces a group's own attributes and bumps its version.
func (w *InboundTx) UpdateGroup(ctx context.Context, g InboundGroup) (InboundGroup, error) {
	w.wrote = true
	row := w.tx.QueryRow(ctx, `
		UPDATE scim_groups t SET display_name = $3, external_id = $4, attrs = $5, version = version + 1, modified_at = now()
		 WHERE system = $1 AND id = $2::uuid RETURNING `+groupCols,
		w.system, g.ID, g.DisplayName, nullable(g.ExternalID), g.Attrs)
	out, err := scanGroup(row)
	return found(out, err, "group", g.ID)
}

// touchGroup bumps a group's version after a member change, so its ETag moves.
func (w *InboundTx) touchGroup(ctx context.Context, id string) error {
	w.wrote = true
	_, err := w.tx.Exec(ctx, `UPDATE scim_groups SET version = version + 1, modified_at = now()
		WHERE system = $1 AND id = $2::uuid`, w.system, id)
	if err != nil {
		return fmt.Errorf("state: touch group %s: %w", id, err)
	}
	return nil
}

// DeleteGroup deletes a group and its memberships.
func (w *InboundTx) DeleteGroup(ctx context.Context, id string) error {
	return w.deleteFrom(ctx, "scim_groups", "group", id)
}

// ClaimInboundTriggers returns the scim_inbound systems among systems whose writes are due
// to trigger their flows: quiet for debounce since the last write, or pending for longer
// than maxDelay (a provider that never pauses still gets its changes carried). A system
// is returned to one caller only: claiming clears its pending write, so replicas polling at
// once do not both trigger.
func (s *Store) ClaimInboundTriggers(ctx context.Context, systems []string, debounce, maxDelay time.Duration) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
		UPDATE scim_inbound_writes SET first_pending_at = NULL, triggered_at = now()
		 WHERE system = ANY($1::text[]) AND first_pending_at IS NOT NULL
		   AND (last_write_at <= now() - make_interval(secs => $2::float8)
		        OR first_pending_at <= now() - make_interval(secs => $3::float8))
		RETURNING system`, systems, debounce.Seconds(), maxDelay.Seconds())
	if err != nil {
		return nil, fmt.Errorf("state: claim the triggers of scim_inbound systems: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("state: claim the triggers of scim_inbound systems: %w", err)
	}
	return out, nil
}
