package state

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// A staged merge's staging area is two unlogged tables of the mirror schema, created by Begin
// and dropped by Commit (in its transaction) or Rollback, and registered in merge_stages (a
// first load that spools has none, see merge_spool.go). They
// are unlogged so that staging writes no WAL (as the temp tables of a one-transaction merge
// did), and ordinary tables so that any pooled connection can fill them: nothing relies on
// session state, so staging works behind PgBouncer in transaction mode.
//
// A process that dies mid-merge leaves its area behind. The merge's stager touches the
// registry row every stageTouchEvery while the merge is open; a Begin drops the areas left
// untouched for stageStaleAfter. A live merge whose heartbeat could not reach the database
// for that long loses its area and fails at its next COPY or at Commit: the pull is retried
// by the next run, nothing half-merged.
const (
	stageTouchEvery = time.Minute
	stageStaleAfter = 15 * time.Minute
	// stageCleanupTimeout bounds dropping an area after a failure (Postgres may be the
	// failure): whatever is left is the sweep's.
	stageCleanupTimeout = 10 * time.Second
)

// stageArea names one merge's staging tables: stage receives the listing, delta the
// classified rows that need a write. Both names are schema-qualified and quoted, so they
// resolve without a search_path. A staged merge's area is created and registered by Begin;
// a spooled first load that cannot go straight into the mirror creates its area inside
// Commit's transaction instead, unregistered: it lives and dies with that transaction.
type stageArea struct {
	name       string // the merge_stages row; the tables are <name>_stage and <name>_delta
	stage      string
	delta      string
	registered bool // a merge_stages row names it
}

func areaNamed(schema, name string) stageArea {
	return stageArea{name: name, stage: pgx.Identifier{schema, name + "_stage"}.Sanitize(),
		delta: pgx.Identifier{schema, name + "_delta"}.Sanitize()}
}

// newArea names a fresh staging area for a merge of kind.
func (s *Store) newArea(kind string) stageArea {
	var id [6]byte
	_, _ = rand.Read(id[:])
	return areaNamed(s.schema, "merge_"+kind+"_"+hex.EncodeToString(id[:]))
}

// createTables creates a's tables in tx.
func (a stageArea) createTables(ctx context.Context, tx pgx.Tx, stageCols, deltaCols string) error {
	// No indexes: the stage is written once and read by sequential scans and hash joins.
	// No autovacuum: a worker analyzing the stage would hold a lock that Commit's DROP
	// waits for (up to deadlock_timeout) before the worker gives way.
	const opts = ` WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false)`
	if _, err := tx.Exec(ctx, `CREATE UNLOGGED TABLE `+a.stage+` `+stageCols+opts+`;
		CREATE UNLOGGED TABLE `+a.delta+` `+deltaCols+opts, pgx.QueryExecModeSimpleProtocol); err != nil {
		return fmt.Errorf("create staging tables: %w", err)
	}
	return nil
}

// createStage creates and registers the staging area a for a merge of kind, in one short
// transaction, so that the merge's COPYs can fill it from any pooled connection while the
// listing runs.
func (s *Store) createStage(ctx context.Context, a *stageArea, kind, system, stageCols, deltaCols string) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("%w (%s)", err, unreachableHint)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a no-op after Commit
	if err := a.createTables(ctx, tx, stageCols, deltaCols); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO merge_stages (name, kind, system) VALUES ($1, $2, $3)`, a.name, kind, system); err != nil {
		return fmt.Errorf("register staging tables: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("create staging tables: commit: %w", err)
	}
	a.registered = true
	return nil
}

// drop removes the area's tables, and its registry row when it has one, in tx.
func (a stageArea) drop(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+a.stage+`, `+a.delta); err != nil {
		return err
	}
	if !a.registered {
		return nil
	}
	_, err := tx.Exec(ctx, `DELETE FROM merge_stages WHERE name = $1`, a.name)
	return err
}

// dropStage removes an abandoned merge's area now, or leaves it to the sweep when the
// database cannot be reached.
func (s *Store) dropStage(ctx context.Context, a stageArea) {
	ctx, cancel := context.WithTimeout(ctx, stageCleanupTimeout)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return a.drop(ctx, tx) })
	if err != nil {
		s.logger.Warn("could not drop a rolled-back merge's staging tables; a later merge will",
			"stage", a.name, "error", err)
	}
}

// staleStage is the condition on merge_stages for an area whose merge stopped touching it,
// with the safe age in seconds as parameter p ("$1").
func staleStage(p string) string { return `touched_at < now() - make_interval(secs => ` + p + `)` }

// sweepStages drops the staging areas whose merge stopped touching them (its process died).
func (s *Store) sweepStages(ctx context.Context) error {
	age := s.knobs().staleAfter.Seconds()
	rows, err := s.pool.Query(ctx, `SELECT name FROM merge_stages WHERE `+staleStage("$1"), age)
	if err != nil {
		return fmt.Errorf("look for abandoned staging tables: %w (%s)", err, unreachableHint)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(names) == 0 {
		if err != nil {
			return fmt.Errorf("look for abandoned staging tables: %w", err)
		}
		return nil
	}
	// Claim and drop in one transaction: a concurrent sweep waits on the rows, then finds
	// them gone; a merge touching its row again in the meantime keeps it.
	var dropped []string
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM merge_stages WHERE name = ANY($2) AND `+staleStage("$1")+` RETURNING name`, age, names)
		if err != nil {
			return err
		}
		if dropped, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		for _, n := range dropped {
			a := areaNamed(s.schema, n)
			if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+a.stage+`, `+a.delta); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("drop abandoned staging tables: %w", err)
	}
	if len(dropped) > 0 {
		s.logger.Info("dropped the staging tables of merges whose process stopped", "stages", len(dropped))
	}
	return nil
}

// stager sends a merge's rows to its staging table: Writes fill a batch, and each full
// batch is one COPY on a goroutine of the merge, which holds a pooled connection only for
// that COPY. At most one batch is queued behind the one being sent, so memory stays flat and
// a slow database slows the Writes down. The goroutine also touches the registry row.
type stager struct {
	store      *Store
	area       stageArea
	sql        string
	batchBytes int // a batch is sent once it holds this much (0: every write)

	buf   []byte        // the batch being filled: COPY header, then rows
	queue chan []byte   // full batches; closed by finish
	free  chan []byte   // sent batches' buffers, for reuse
	stop  chan struct{} // closed by abort
	done  chan struct{} // closed when the goroutine ends
	once  sync.Once
	// cancel ends a COPY in flight when the merge is abandoned.
	cancel context.CancelFunc

	// Written by the goroutine, read after done is closed.
	err     error // why the goroutine ended early
	batches int   // COPYs sent
}

// startStager starts the goroutine; ctx is Begin's: cancelling it ends the staging.
func startStager(ctx context.Context, s *Store, area stageArea, copySQL string, batchBytes int) *stager {
	st := &stager{store: s, area: area, sql: copySQL, batchBytes: batchBytes,
		queue: make(chan []byte, 1), free: make(chan []byte, 3), stop: make(chan struct{}), done: make(chan struct{})}
	ctx, st.cancel = context.WithCancel(ctx)
	go st.run(ctx)
	return st
}

func (st *stager) run(ctx context.Context) {
	defer close(st.done)
	defer st.cancel()
	touch := time.NewTicker(st.store.knobs().touchEvery)
	defer touch.Stop()
	for {
		select {
		case b, ok := <-st.queue:
			if !ok {
				return
			}
			if err := st.copy(ctx, b); err != nil {
				st.err = err
				return
			}
			st.batches++
			select {
			case st.free <- b[:0]:
			default:
			}
		case <-touch.C:
			if err := st.touch(ctx); err != nil {
				st.err = err
				return
			}
		case <-st.stop:
			return
		case <-ctx.Done():
			st.err = ctx.Err()
			return
		}
	}
}

// copy sends one batch (header and rows; the trailer is added here) as one COPY.
func (st *stager) copy(ctx context.Context, batch []byte) error {
	conn, err := st.store.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire a connection: %w (%s)", err, unreachableHint)
	}
	defer conn.Release()
	if _, err := conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(append(batch, copyTrailer...)), st.sql); err != nil {
		return fmt.Errorf("copy into the staging table: %w", err)
	}
	return nil
}

// touch is the heartbeat that keeps the sweep away from a live merge's area.
func (st *stager) touch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, stageCleanupTimeout)
	defer cancel()
	tag, err := st.store.pool.Exec(ctx, `UPDATE merge_stages SET touched_at = now() WHERE name = $1`, st.area.name)
	if err != nil {
		// A missed heartbeat is not fatal: the next one may get through, and a database
		// that stays away fails the next COPY anyway.
		st.store.logger.Debug("staging heartbeat failed", "stage", st.area.name, "error", err)
		return nil
	}
	if tag.RowsAffected() == 0 {
		return errors.New("the staging tables were dropped as abandoned (no heartbeat reached the database for too long)")
	}
	return nil
}

// write appends page to the batch and queues the batch once it is full.
func (st *stager) write(ctx context.Context, page stagedPage) error {
	if st.buf == nil {
		select {
		case st.buf = <-st.free:
		default:
			st.buf = make([]byte, 0, st.batchBytes+64<<10)
		}
		st.buf = append(st.buf, copyHeader...)
	}
	st.buf = page.appendCopy(st.buf)
	if len(st.buf) < st.batchBytes {
		return nil
	}
	return st.send(ctx)
}

func (st *stager) send(ctx context.Context) error {
	b := st.buf
	st.buf = nil
	select {
	case st.queue <- b:
		return nil
	case <-st.done:
		return st.failure()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (st *stager) failure() error {
	if st.err != nil {
		return st.err
	}
	return errors.New("staging ended early")
}

// finish sends the last batch and waits until every batch is in the staging table.
func (st *stager) finish(ctx context.Context) error {
	if st.buf != nil {
		if err := st.send(ctx); err != nil {
			return err
		}
	}
	close(st.queue)
	select {
	case <-st.done:
		return st.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// abort stops the goroutine, cancelling a COPY in flight (nothing of an unfinished COPY
// is kept), and waits for it; safe after finish and more than once.
func (st *stager) abort() {
	st.once.Do(func() { close(st.stop) })
	st.cancel()
	<-st.done
}
