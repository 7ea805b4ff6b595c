package state

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationName is the only accepted file name shape: a three-digit version, an
// underscore, a lower-case name, ".sql". Anything else in migrations/ is refused rather
// than silently skipped, so a typo cannot drop a migration.
var migrationName = regexp.MustCompile(`^([0-9]{3})_([a-z0-9_]+)\.sql$`)

// migration is one embedded SQL file.
type migration struct {
	Version int
	Name    string
	SQL     string
}

// parseMigrations reads every file in dir of fsys. Versions must run 1, 2, 3, ... without
// gaps or duplicates: a gap usually means a file was lost in a merge.
func parseMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []migration
	seen := map[int]string{}
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if e.IsDir() || m == nil {
			return nil, fmt.Errorf("migration file %q: name must look like 001_name.sql (three digits, lower-case name)", e.Name())
		}
		version, _ := strconv.Atoi(m[1])
		if version == 0 {
			return nil, fmt.Errorf("migration file %q: versions start at 001", e.Name())
		}
		if prev, dup := seen[version]; dup {
			return nil, fmt.Errorf("migration files %q and %q: same version %d", prev, e.Name(), version)
		}
		seen[version] = e.Name()
		body, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", e.Name(), err)
		}
		out = append(out, migration{Version: version, Name: m[2], SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %03d_%s: expected version %03d (versions must have no gaps)", m.Version, m.Name, i+1)
		}
	}
	return out, nil
}

// embeddedMigrations parses the migrations compiled into the binary.
func embeddedMigrations() ([]migration, error) {
	return parseMigrations(migrationFS, "migrations")
}

// migrateLockKey is the advisory lock each migration transaction takes, keyed on the
// schema so that two processes migrating the same schema take turns while different
// schemas do not block each other.
const migrateLockKey = `hashtextextended('groupsync.migrate:' || $1, 0)`

// Migrate creates the schema if needed and applies every pending migration, each in its own
// transaction together with its schema_migrations row. It returns the versions it applied
// (none when the schema is current). Each transaction takes a transaction-level advisory
// lock and re-reads the version under it, so concurrent callers apply each migration once;
// no lock outlives a transaction, so this works behind a pooler in transaction mode.
func (s *Store) Migrate(ctx context.Context) (applied []int, err error) {
	migrations, err := embeddedMigrations()
	if err != nil {
		return nil, fmt.Errorf("state: migrate: %w", err)
	}
	schemaIdent := pgx.Identifier{s.schema}.Sanitize()
	for {
		var done bool
		var version int
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			current, err := lockedVersion(ctx, tx, s.schema)
			if err != nil {
				return err
			}
			if current > len(migrations) {
				return fmt.Errorf("schema %s is at version %d but this binary knows only up to %d; run a newer groupsync", s.schema, current, len(migrations))
			}
			if current == len(migrations) {
				done = true
				return nil
			}
			m := migrations[current]
			version = m.Version
			return applyMigration(ctx, tx, schemaIdent, m)
		})
		if err != nil {
			if errors.Is(err, ErrPoolExhausted) || s.pool.Ping(ctx) != nil {
				return applied, fmt.Errorf("state: migrate schema %s: %w (%s)", s.schema, err, unreachableHint)
			}
			return applied, fmt.Errorf("state: migrate schema %s: %w", s.schema, err)
		}
		if done {
			return applied, nil
		}
		s.logger.Info("applied migration", "version", version, "name", migrations[version-1].Name)
		applied = append(applied, version)
	}
}

// lockedVersion takes the migration lock in tx, makes sure the schema and its
// schema_migrations table exist, and returns the applied version.
func lockedVersion(ctx context.Context, tx pgx.Tx, schema string) (int, error) {
	schemaIdent := pgx.Identifier{schema}.Sanitize()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(`+migrateLockKey+`)`, schema); err != nil {
		return 0, fmt.Errorf("take advisory lock: %w", err)
	}
	// Created under the lock: two concurrent CREATE SCHEMA IF NOT EXISTS can still collide
	// on the catalog's unique index.
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+schemaIdent); err != nil {
		return 0, fmt.Errorf("create schema: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+schemaIdent+`.schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return 0, fmt.Errorf("create schema_migrations: %w", err)
	}
	if _, err := tx.Exec(ctx, `COMMENT ON TABLE `+schemaIdent+`.schema_migrations IS 'Versions of the embedded migrations (state/migrations/NNN_name.sql) applied to this schema.'`); err != nil {
		return 0, fmt.Errorf("comment schema_migrations: %w", err)
	}
	var v int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+schemaIdent+`.schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema_migrations: %w", err)
	}
	return v, nil
}

func applyMigration(ctx context.Context, tx pgx.Tx, schemaIdent string, m migration) error {
	// The transaction already scopes search_path (DB.Begin); this makes the migration
	// independent of it, and of a search_path the migration itself might set.
	if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+schemaIdent); err != nil {
		return fmt.Errorf("migration %03d_%s: set search_path: %w", m.Version, m.Name, err)
	}
	// Simple protocol: a migration file holds many statements.
	if _, err := tx.Exec(ctx, m.SQL, pgx.QueryExecModeSimpleProtocol); err != nil {
		return fmt.Errorf("migration %03d_%s: %w", m.Version, m.Name, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
		return fmt.Errorf("migration %03d_%s: record version: %w", m.Version, m.Name, err)
	}
	return nil
}

// MigrationStatus reports the schema's applied version and the latest version this binary
// carries; current < latest means Migrate has work to do. A schema never migrated reports
// current 0.
func (s *Store) MigrationStatus(ctx context.Context) (current, latest int, err error) {
	migrations, err := embeddedMigrations()
	if err != nil {
		return 0, 0, fmt.Errorf("state: migration status: %w", err)
	}
	latest = len(migrations)
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`,
		pgx.Identifier{s.schema, "schema_migrations"}.Sanitize()).Scan(&exists); err != nil {
		return 0, latest, fmt.Errorf("state: migration status: %w", err)
	}
	if !exists {
		return 0, latest, nil
	}
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+
		pgx.Identifier{s.schema, "schema_migrations"}.Sanitize()).Scan(&current); err != nil {
		return 0, latest, fmt.Errorf("state: migration status: %w", translate(err))
	}
	return current, latest, nil
}
