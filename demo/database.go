package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// LocalAdminURL is the local Postgres the demo tries when GROUPSYNC_DATABASE_URL is unset.
const LocalAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3"

// LocalDatabase is the database the demo creates in the local Postgres.
const LocalDatabase = "groupsync_demo"

// Where a demo database came from.
const (
	SourceEnv       = "GROUPSYNC_DATABASE_URL"
	SourceLocal     = "local"
	SourceEphemeral = "ephemeral"
)

// DatabaseOptions say how to choose the demo database.
type DatabaseOptions struct {
	// EnvURL is GROUPSYNC_DATABASE_URL ("" when unset); it wins over everything.
	EnvURL string
	// LocalAdminURL is the local Postgres to try next; default LocalAdminURL.
	LocalAdminURL string
	// Ephemeral skips the first two and starts a private Postgres.
	Ephemeral bool
	// EphemeralOptions configure the private Postgres.
	EphemeralOptions EphemeralOptions
	Logger           *slog.Logger
}

// Database is the Postgres the demo uses.
type Database struct {
	// URL connects to it (it may hold a password when it came from the environment).
	URL string
	// Source is SourceEnv, SourceLocal or SourceEphemeral.
	Source string
	// Fallback says why the local Postgres was not used, when it was tried and failed.
	Fallback  string
	ephemeral *Ephemeral
	closed    bool
	closeErr  error
}

// Describe names the database for a person, without the password.
func (d *Database) Describe() string {
	switch d.Source {
	case SourceEnv:
		return "GROUPSYNC_DATABASE_URL (" + RedactURL(d.URL) + ")"
	case SourceLocal:
		return "local Postgres on 127.0.0.1:5432, database " + LocalDatabase
	default:
		return fmt.Sprintf("private Postgres on 127.0.0.1:%d (data in %s, removed on exit)", d.ephemeral.Port, d.ephemeral.Dir)
	}
}

// Ephemeral returns the private Postgres, nil unless Source is SourceEphemeral.
func (d *Database) Ephemeral() *Ephemeral { return d.ephemeral }

// Close stops the private Postgres, if the demo started one.
func (d *Database) Close() error {
	if d.closed || d.ephemeral == nil {
		return d.closeErr
	}
	d.closed = true
	d.closeErr = d.ephemeral.Stop()
	return d.closeErr
}

// OpenDatabase chooses the demo database: GROUPSYNC_DATABASE_URL if set, else the local
// Postgres (creating the groupsync_demo database there), else a private Postgres started
// from the machine's PostgreSQL binaries.
func OpenDatabase(ctx context.Context, o DatabaseOptions) (*Database, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if o.EnvURL != "" && !o.Ephemeral {
		return &Database{URL: o.EnvURL, Source: SourceEnv}, nil
	}
	var fallback string
	if !o.Ephemeral {
		admin := o.LocalAdminURL
		if admin == "" {
			admin = LocalAdminURL
		}
		u, err := ensureLocalDatabase(ctx, admin, LocalDatabase)
		if err == nil {
			return &Database{URL: u, Source: SourceLocal}, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		fallback = err.Error()
		logger.Info("no local Postgres; starting a private one", "reason", fallback)
	}
	eo := o.EphemeralOptions
	if eo.Logger == nil {
		eo.Logger = logger
	}
	e, err := StartEphemeral(ctx, eo)
	if err != nil {
		if fallback != "" {
			return nil, fmt.Errorf("%w (the local Postgres was tried first: %s)", err, fallback)
		}
		return nil, err
	}
	return &Database{URL: e.URL(), Source: SourceEphemeral, Fallback: fallback, ephemeral: e}, nil
}

// ensureLocalDatabase connects to the Postgres at adminURL and creates database name if it
// is missing. It returns the URL of that database.
func ensureLocalDatabase(ctx context.Context, adminURL, name string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("local postgres at %s: %w", RedactURL(adminURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(cctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", fmt.Errorf("local postgres: look up database %s: %w", name, err)
	}
	if !exists {
		_, err := conn.Exec(cctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize())
		// Another demo may have created it between the check and here.
		var pgErr *pgconn.PgError
		if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P04") {
			return "", fmt.Errorf("local postgres: create database %s: %w", name, err)
		}
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", fmt.Errorf("local postgres: parse admin url: %w", err)
	}
	u.Path = "/" + name
	// The short timeout was for probing; the printed psql line is cleaner without it.
	q := u.Query()
	q.Del("connect_timeout")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// ResetSchema drops the demo schema, so every demo starts from an empty mirror: the
// simulators are new on every run, and a mirror of the previous run's simulators would
// link groups that no longer exist. Only schemas starting with SchemaPrefix are dropped.
func ResetSchema(ctx context.Context, databaseURL, schema string) error {
	if !strings.HasPrefix(schema, SchemaPrefix) {
		return fmt.Errorf("demo: reset schema %q: only schemas starting with %s are the demo's to drop", schema, SchemaPrefix)
	}
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("demo: reset schema %s: connect: %w", schema, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		return fmt.Errorf("demo: reset schema %s: %w", schema, err)
	}
	return nil
}

// HasPassword reports whether a connection string (URL or key=value) carries a password.
func HasPassword(databaseURL string) bool {
	if strings.Contains(databaseURL, "://") {
		u, err := url.Parse(databaseURL)
		if err != nil {
			// Unparsable: assume the worst, so it stays out of files.
			return true
		}
		_, ok := u.User.Password()
		return ok || u.Query().Has("password")
	}
	return kvPassword.MatchString(databaseURL)
}

var kvPassword = regexp.MustCompile(`(^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// RedactURL replaces the password of a connection string (URL or key=value) with
// REDACTED, for printing.
func RedactURL(databaseURL string) string {
	if !strings.Contains(databaseURL, "://") {
		return kvPassword.ReplaceAllString(databaseURL, "${1}password=REDACTED")
	}
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "(unparsable database URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "REDACTED")
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "REDACTED")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
