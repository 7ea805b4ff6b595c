// Package state is groupsync's Postgres mirror: the schema (embedded, numbered migrations),
// the store that opens it, and the bulk merge path that streams what connectors list into
// the mirror with set-based SQL.
//
// Every table lives in one schema (Options.Schema, default "groupsync"). Every transaction
// begins with SET LOCAL search_path to that schema (see DB), so the SQL here and in the
// migrations is unqualified, the same binary can serve several schemas (one per test, for
// instance), and no connection carries session state: the mirror works behind PgBouncer in
// transaction pooling mode.
package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultSchema is the schema the mirror lives in unless Options.Schema says otherwise.
const DefaultSchema = "groupsync"

// ErrNotFound is returned when a looked-up row does not exist. pgx.ErrNoRows never leaves
// this package: callers branch on ErrNotFound with errors.Is.
var ErrNotFound = errors.New("not found")

// unreachableHint is appended to connection failures: the usual cause on a developer's
// machine is a Postgres that is not running, or a URL that points elsewhere.
const unreachableHint = "is Postgres running? set GROUPSYNC_DATABASE_URL"

// schemaPattern keeps the schema a plain identifier, so it can be put in search_path and in
// CREATE SCHEMA without quoting surprises.
var schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Options configure Open.
type Options struct {
	// Schema holds every mirror table. Default "groupsync". Must match [a-z_][a-z0-9_]*
	// and be at most 63 bytes (Postgres' identifier limit).
	Schema string
	// MaxConns bounds the pool. Default 0 means pgxpool's default (max(4, CPUs)).
	MaxConns int32
	// AcquireTimeout bounds the wait for a free pooled connection; past it a statement
	// fails with ErrPoolExhausted instead of hanging. Default 30 s.
	AcquireTimeout time.Duration
	// Logger receives the store's logs. Default: a logger that discards everything.
	Logger *slog.Logger
}

// Store is an open mirror database.
type Store struct {
	pool   *DB
	schema string
	logger *slog.Logger
	// copyMode is how merges stage rows; tests and benchmarks compare the modes.
	copyMode copyMode
	// noSpool is set once a local file of a merge could not be written (no room in
	// $TMPDIR, say): a first load's spool or the member digests' fallback file. This
	// store's later first loads stage instead, and its membership merges stage every
	// member without digests (see merge_spool.go and merge_digest.go).
	noSpool atomic.Bool
}

// Open connects to the database at databaseURL and checks that it answers. It does not
// migrate: call Migrate. The URL may carry a password, so it never appears in errors or
// logs; errors name the host, port and database instead.
func Open(ctx context.Context, databaseURL string, opts Options) (*Store, error) {
	schema := opts.Schema
	if schema == "" {
		schema = DefaultSchema
	}
	if !schemaPattern.MatchString(schema) || len(schema) > 63 {
		return nil, fmt.Errorf("state: open: schema %q is not a plain identifier ([a-z_][a-z0-9_]*, at most 63 bytes)", schema)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgx's parse error quotes the URL with the password masked only on a best-effort
		// basis (its own docs say so), so none of it is repeated: say which setting to fix.
		return nil, errors.New("state: open: the database URL (GROUPSYNC_DATABASE_URL) does not parse; expected postgres://user[:password]@host:port/database?sslmode=...")
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	// No session state and no startup parameter beyond application_name (which PgBouncer
	// accepts): search_path is set per transaction (DB), and statements go out in exec
	// mode, which uses only the unnamed statement within one round trip, so a pooler in
	// transaction mode never sees a prepared statement outlive its transaction. A URL that
	// names default_query_exec_mode keeps its choice.
	if !strings.Contains(databaseURL, "default_query_exec_mode") {
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "groupsync"
	}
	where := describeTarget(cfg.ConnConfig)

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", where, err)
	}
	acquire := opts.AcquireTimeout
	if acquire <= 0 {
		acquire = 30 * time.Second
	}
	s := &Store{pool: newDB(pool, schema, acquire), schema: schema, logger: logger.With("component", "state", "schema", schema)}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// describeTarget names the database without the credentials.
func describeTarget(c *pgx.ConnConfig) string {
	return fmt.Sprintf("postgres at %s:%d database %q user %q", c.Host, c.Port, c.Database, c.User)
}

// Schema is the schema the store's tables live in.
func (s *Store) Schema() string { return s.schema }

// Pool is the store's database handle, for tests and tools that add their own queries.
// Its Exec, Query, QueryRow, CopyFrom and Begin resolve unqualified names in Schema.
func (s *Store) Pool() *DB { return s.pool }

// Close closes the pool, waiting for acquired connections to be released.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("state: ping %s: %w (%s)", describeTarget(s.pool.Config().ConnConfig), err, unreachableHint)
	}
	return nil
}

// translate maps driver errors to this package's: pgx.ErrNoRows becomes ErrNotFound so
// callers never import pgx to branch.
func translate(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return err
}
