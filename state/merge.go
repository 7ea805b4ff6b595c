package state

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// MergeCounts say what a merge did to the mirror. Every record written in the stream lands
// in exactly one of Inserted, Updated, Revived, Unchanged (or Orphaned, for memberships);
// duplicates within one stream count once.
type MergeCounts struct {
	// Inserted records were new to the mirror.
	Inserted int64
	// Updated records existed and differed (content hash or a mapped column).
	Updated int64
	// Unchanged records existed and were equal: nothing was written for them.
	Unchanged int64
	// Tombstoned records were live in the mirror, absent from a complete listing, and now
	// carry deleted_at.
	Tombstoned int64
	// Revived records were tombstoned and have reappeared (deleted_at cleared).
	Revived int64
	// Orphaned memberships name a group the mirror does not hold; they are not stored
	// (the group listing should come first). Always 0 for groups and accounts.
	Orphaned int64
}

// ErrInvalidRecord is matched (errors.Is) by every *InvalidRecordError.
var ErrInvalidRecord = errors.New("invalid record")

// InvalidRecordError is a record the mirror cannot store as received: a NUL byte or invalid
// UTF-8 in a text field (Postgres text cannot hold either), an empty id, or raw JSON that
// does not parse. It fails the whole merge: storing the rest would make a complete listing
// look like the record had been deleted.
type InvalidRecordError struct {
	System string
	Kind   string // group, account, membership
	ID     string // the record id as received (membership: group_id/account_id)
	Field  string
	Reason string
}

func (e *InvalidRecordError) Error() string {
	return fmt.Sprintf("state: system %q: %s %q: field %s: %s", e.System, e.Kind, e.ID, e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidRecord) true.
func (e *InvalidRecordError) Is(target error) bool { return target == ErrInvalidRecord }

// copyMode chooses how staged rows reach Postgres.
type copyMode int

const (
	// copyStream gathers Writes into batches of about stageBatchBytes, each sent by its own
	// COPY on a goroutine of the merge, so sending overlaps with the caller fetching and
	// encoding the next pages.
	copyStream copyMode = iota
	// copyPerPage sends every Write as its own COPY (tests use it to exercise many COPYs).
	copyPerPage
)

// stageBatchBytes is how much encoded rows a batch gathers before it is sent (about 11,000
// memberships): few enough COPYs that their fixed cost does not show, small enough that
// memory stays flat (one batch filling, one queued, one being sent).
const stageBatchBytes = 1 << 20

// merge is the part common to the three merge kinds.
//
// No transaction and no pooled connection is held while the caller lists: Begin creates
// this merge's staging area (an unlogged table in the mirror schema, see merge_stage.go) in
// one short transaction; Writes are gathered into batches, and each batch is one COPY that
// holds a pooled connection only while it runs. Commit is one short transaction: it takes
// the per-(schema, kind, system) merge lock, classifies the staged rows against the mirror
// with set-based SQL, applies the result and drops the staging area. Rollback drops it.
//
// First load: when the system has no rows of the merge's kind at Begin, Writes spool to a
// local file instead, Begin creates no staging area, and Commit COPYs the file straight
// into the mirror table (merge_spool.go). When the spool cannot go direct, Commit creates
// the staging tables inside its own transaction and stages the file there first. When the
// system has no rows at Commit (checked under the lock) but the rows are staged, every
// staged row is new, so Commit inserts them with one INSERT … SELECT instead of
// classifying them.
type merge struct {
	store  *Store
	kind   string // group, account, membership: for errors
	system string
	shape  mergeShape
	// area is the staging area: created by Begin for a staged merge, by Commit for a
	// spooled one that cannot go straight into the mirror, else none (name "").
	area  stageArea
	begun time.Time // Begin's database clock: when the pull of this kind started
	// txNow is the Commit transaction's now(), read by prepare.
	txNow time.Time
	// beginTook is how long Begin took and opened when it returned (for the debug log).
	beginTook time.Duration
	opened    time.Time
	seq       int64
	staged    int64 // rows written to the merge (all are staged)

	stager *stager // nil while the merge spools
	// spool holds the rows instead of the staging table on a first load; unfit says a
	// row cannot go straight into the mirror table (a membership of a group the mirror
	// did not hold at Begin), so Commit stages the spool.
	spool *spool
	unfit bool

	// settle, when set, runs in Commit's transaction before the staged rows are analyzed
	// and applied (a membership merge checks the groups its digests left out there, and
	// stages them after all when in doubt); left is how many rows it left out.
	settle func(ctx context.Context, tx pgx.Tx) error
	left   int64

	// Duplicate detection: hashes of the keys staged so far, partitioned by the key's first
	// column when it has two (a membership's group). While no key repeats, Commit skips the
	// dedupe sort. A hash collision only costs that sort; past maxTrackedKeys live hashes the
	// set is dropped and the sort always runs, so memory stays bounded. A membership
	// partition is dropped when its group completes (its members cannot come again), so
	// memory follows the groups in flight, not the tenant.
	seed      maphash.Seed
	keys      map[string]map[uint64]struct{}
	nkeys     int
	forgotten map[string]struct{} // partitions dropped by forgetKeys
	dups      bool
	maxKeys   int // the store's bound, read once: noteKey runs per row
	// curPart and curSet are the partition of the last key: a listing gives a group's
	// members one after the other, so most rows skip the two partition lookups.
	curPart string
	curSet  map[uint64]struct{}
	spare   map[uint64]struct{} // a forgotten partition's set, cleared, for the next one

	err   error // first failure; the merge is unusable after it
	ended bool  // committed or rolled back
}

// maxTrackedKeys bounds the duplicate-detection set (about 40 MB at the limit).
const maxTrackedKeys = 1 << 20

// maxKnownGroups bounds the group ids a spooling membership merge holds (about 20 MB at the
// limit); a system with more groups stages its first membership load instead.
const maxKnownGroups = 1 << 18

// mergeKnobs are test settings of one Store's merges (see export_test.go), kept beside
// the Store so that tests of other stores are unaffected.
type mergeKnobs struct {
	maxKeys     int           // duplicate-detection set bound
	noFirstLoad bool          // always classify, even when the system has no rows of the kind
	noSpool     bool          // first loads stage (INSERT … SELECT at Commit) instead of spooling
	noDigest    bool          // membership merges stage every member (no digest comparison)
	digestHold  int           // most bytes of members a membership merge holds for its digests
	maxGroups   int           // most group ids a spooling membership merge holds
	touchEvery  time.Duration // staging heartbeat period
	staleAfter  time.Duration // age at which an untouched staging area is dropped
}

var mergeKnobsByStore sync.Map // *Store -> mergeKnobs

func (s *Store) knobs() mergeKnobs {
	if k, ok := mergeKnobsByStore.Load(s); ok {
		return k.(mergeKnobs)
	}
	return mergeKnobs{maxKeys: maxTrackedKeys, maxGroups: maxKnownGroups, touchEvery: stageTouchEvery, staleAfter: stageStaleAfter,
		digestHold: digestHoldBytes}
}

// noteKey records a staged key (b is "" for single-column keys) for duplicate detection.
// Within a partition the first column is fixed, so only b is hashed (a alone for a
// single-column key): one string hash per row, the cheapest that maphash offers.
func (m *merge) noteKey(a, b string) {
	if m.dups {
		return
	}
	if m.keys == nil {
		m.seed = maphash.MakeSeed()
		m.keys = map[string]map[uint64]struct{}{}
		m.forgotten = map[string]struct{}{}
	}
	part, key := "", a
	if b != "" {
		part, key = a, b
	}
	set := m.curSet
	if set == nil || part != m.curPart {
		if _, done := m.forgotten[part]; done && b != "" {
			// A key of a partition already forgotten: it may repeat one we no longer hold.
			m.dups, m.keys, m.forgotten, m.curSet, m.spare = true, nil, nil, nil, nil
			return
		}
		if set = m.keys[part]; set == nil {
			set = m.newKeySet()
			m.keys[part] = set
		}
		m.curPart, m.curSet = part, set
	}
	h := maphash.String(m.seed, key)
	if _, seen := set[h]; seen || m.nkeys >= m.maxKeys {
		m.dups, m.keys, m.forgotten, m.curSet, m.spare = true, nil, nil, nil, nil
		return
	}
	set[h] = struct{}{}
	m.nkeys++
}

// newKeySet is an empty partition set: a forgotten group's, cleared, when there is one. A
// listing completes its groups one after the other, so one set serves them all, already
// grown to a group's size, instead of a new map growing step by step per group.
func (m *merge) newKeySet() map[uint64]struct{} {
	if set := m.spare; set != nil {
		m.spare = nil
		return set
	}
	return map[uint64]struct{}{}
}

// forgetKeys drops the duplicate-detection partition of a completed group: no later key
// of it is expected, and one that comes anyway marks the stream as possibly repeating.
func (m *merge) forgetKeys(part string) {
	if m.keys == nil {
		return
	}
	set := m.keys[part]
	m.nkeys -= len(set)
	delete(m.keys, part)
	m.forgotten[part] = struct{}{}
	if part == m.curPart {
		m.curSet = nil
	}
	if set != nil && len(set) <= maxSpareKeys {
		clear(set)
		m.spare = set
	}
}

// maxSpareKeys bounds the partition set kept for reuse: a huge group's set is let go
// rather than held for the rest of the merge.
const maxSpareKeys = 1 << 14

// source is the SQL for the staged rows, one per key (the last occurrence): the plain
// staging table while no key repeated, else a DISTINCT ON over it.
func (m *merge) source(cols, key string) string {
	if !m.dups {
		return `SELECT ` + cols + ` FROM ` + m.area.stage
	}
	return `SELECT DISTINCT ON (` + key + `) ` + cols + ` FROM ` + m.area.stage + ` ORDER BY ` + key + `, seq DESC`
}

// mergeShape is what the three kinds of merge differ in: the kind's mirror table, the column
// lists of its staging and delta tables, and the staging columns COPY fills, seq first.
type mergeShape struct {
	table, stageCols, deltaCols string
	columns                     []string
}

// beginMerge opens a merge: one query checks the system, reads the clock and probes for a
// first load. A first load spools (see merge_spool.go) when canSpool, if given, agrees;
// any other merge creates and registers its staging area. A spooling merge creates
// nothing in the database: a first load that can go straight into the mirror table pays
// for no staging DDL, which on a slow disk costs more than its name suggests (each
// unlogged table and its TOAST table have an init fork written and synced at once).
func (s *Store) beginMerge(ctx context.Context, kind, system string, shape mergeShape, canSpool func(ctx context.Context) (bool, error)) (*merge, error) {
	start := time.Now()
	m := &merge{store: s, kind: kind, system: system, shape: shape, maxKeys: s.knobs().maxKeys}
	fail := func(err error) (*merge, error) {
		m.rollback(ctx)
		return nil, fmt.Errorf("state: begin %s merge for system %q: %w", kind, system, err)
	}
	first, err := m.open(ctx)
	if err != nil {
		return fail(err)
	}
	if first {
		m.startSpool()
	}
	if m.spool != nil && canSpool != nil {
		ok, err := canSpool(ctx)
		if err != nil {
			return fail(err)
		}
		if !ok {
			m.spool.close()
			m.spool = nil
		}
	}
	if m.spool == nil {
		if err := m.stage(ctx); err != nil {
			return fail(err)
		}
	}
	m.opened = time.Now()
	m.beginTook = m.opened.Sub(start)
	// With ctx, the line carries the run's run_id and flow (logctx); the e2e kill test
	// waits for it to know that a merge is open.
	s.logger.DebugContext(ctx, "merge begun", "kind", kind, "system", system, "spooled", m.spool != nil)
	return m, nil
}

// open checks that the system is registered, reads the database clock (begun) and says
// whether the system has no rows of the kind, in one query; it sweeps abandoned staging
// areas when that query finds one. The probe is not under the merge lock: Commit probes
// again under it, and stages the spool if rows came.
func (m *merge) open(ctx context.Context) (first bool, err error) {
	s := m.store
	var registered, stale bool
	err = s.pool.QueryRow(ctx, `SELECT now(), EXISTS (SELECT 1 FROM systems WHERE name = $1), `+firstLoadProbe(m.shape.table)+`,
		EXISTS (SELECT 1 FROM merge_stages WHERE `+staleStage("$2")+`)`, m.system, s.knobs().staleAfter.Seconds()).
		Scan(&m.begun, &registered, &first, &stale)
	if err != nil {
		return false, fmt.Errorf("look up system and check for a first load: %w (%s)", err, unreachableHint)
	}
	if !registered {
		return false, fmt.Errorf("system not registered (call UpsertSystem first): %w", ErrNotFound)
	}
	if stale {
		if err := s.sweepStages(ctx); err != nil {
			return false, err
		}
	}
	return first, nil
}

// startSpool makes a first load spool to a local file, unless spooling is off.
func (m *merge) startSpool() {
	k := m.store.knobs()
	if k.noFirstLoad || k.noSpool || m.store.noSpool.Load() {
		return
	}
	sp, err := newSpool()
	if err != nil {
		// Staging works without local disk, only slower.
		m.store.logger.Warn("cannot create a first-load spool file; staging instead", "dir", os.TempDir(), "error", err)
		return
	}
	m.spool = sp
}

// stage creates and registers the merge's staging area and starts its stager, which sends
// the Writes to it and keeps its heartbeat.
func (m *merge) stage(ctx context.Context) error {
	a := m.store.newArea(m.kind)
	if err := m.store.createStage(ctx, &a, m.kind, m.system, m.shape.stageCols, m.shape.deltaCols); err != nil {
		return err
	}
	m.area = a
	batch := stageBatchBytes
	if m.store.copyMode == copyPerPage {
		batch = 0
	}
	m.stager = startStager(ctx, m.store, a, m.copySQL(), batch)
	return nil
}

// copySQL is the COPY statement filling the staging table.
func (m *merge) copySQL() string {
	quoted := make([]string, len(m.shape.columns))
	for i, c := range m.shape.columns {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	return `COPY ` + m.area.stage + ` (` + strings.Join(quoted, ", ") + `) FROM STDIN (FORMAT binary)`
}

// stagedPage is one page of rows converted for staging. It keeps its own copy of the
// values (the caller may reuse its page slice after Write returns).
type stagedPage interface {
	len() int
	// appendCopy appends the page's rows to b in COPY binary format (without header and
	// trailer): the staging columns, seq first.
	appendCopy(b []byte) []byte
}

// COPY binary format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4):
// per row a field count, then per field its length (-1 for NULL) and its binary value.
// Binary spares the server parsing timestamps and the client escaping text.

var (
	copyHeader  = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	copyTrailer = []byte{0xff, 0xff}
)

// pgEpochMicros is 2000-01-01 UTC (Postgres' timestamp epoch) in Unix microseconds.
const pgEpochMicros = 946684800 * 1000000

func appendCopyRow(b []byte, fields int) []byte {
	return binary.BigEndian.AppendUint16(b, uint16(fields))
}

func appendCopyText(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendCopyNull(b []byte) []byte { return binary.BigEndian.AppendUint32(b, 0xffffffff) }

// appendCopyJSON sends raw JSON text for a text staging column; nil is NULL.
func appendCopyJSON(b []byte, raw *string) []byte {
	if raw == nil {
		return appendCopyNull(b)
	}
	return appendCopyText(b, *raw)
}

func appendCopyBool(b []byte, v bool) []byte {
	b = binary.BigEndian.AppendUint32(b, 1)
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendCopyInt(b []byte, v int64) []byte {
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

// appendCopyTime sends microseconds since 2000-01-01 UTC (truncated, as pgx does); nil is
// NULL.
func appendCopyTime(b []byte, t *time.Time) []byte {
	if t == nil {
		return appendCopyNull(b)
	}
	return appendCopyInt(b, t.Unix()*1000000+int64(t.Nanosecond())/1000-pgEpochMicros)
}

// fail records the first error; later calls return it.
func (m *merge) fail(err error) error {
	if m.err == nil {
		m.err = err
	}
	return m.err
}

func (m *merge) usable() error {
	if m.ended {
		return fmt.Errorf("state: %s merge for system %q: already committed or rolled back", m.kind, m.system)
	}
	if m.err != nil {
		return fmt.Errorf("state: %s merge for system %q aborted by an earlier error: %w", m.kind, m.system, m.err)
	}
	return nil
}

// write stages a page. Rows carry their stream position (seq) so the dedupe, when one is
// needed, keeps the last occurrence.
func (m *merge) write(ctx context.Context, page stagedPage) error {
	if page.len() == 0 {
		return nil
	}
	m.staged += int64(page.len())
	if m.spool != nil {
		if err := m.spool.write(page); err != nil {
			// Later first loads of this store stage: they need no local disk.
			m.store.noSpool.Store(true)
			return m.fail(fmt.Errorf("state: %s merge for system %q: %w", m.kind, m.system, err))
		}
		return nil
	}
	if err := m.stager.write(ctx, page); err != nil {
		return m.fail(fmt.Errorf("state: %s merge for system %q: stage rows: %w", m.kind, m.system, err))
	}
	return nil
}

// distinct is how many distinct keys were staged.
func (m *merge) distinct(ctx context.Context, tx pgx.Tx, key string) (int64, error) {
	if !m.dups {
		return m.staged, nil
	}
	var n int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT DISTINCT `+key+` FROM `+m.area.stage+`) k`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count distinct staged keys: %w", err)
	}
	return n, nil
}

// analyzeDelta gives the planner the delta table's size when it is large; an empty or
// small delta needs no statistics to be planned well.
func analyzeDelta(ctx context.Context, tx pgx.Tx, table string, rows int64) error {
	if rows < 1000 {
		return nil
	}
	if _, err := tx.Exec(ctx, `ANALYZE `+table); err != nil {
		return fmt.Errorf("analyze delta table: %w", err)
	}
	return nil
}

// applyFunc is a kind's Commit work, run in the merge transaction under the merge lock.
// first says the system has no rows of the kind: every staged row is new.
type applyFunc func(ctx context.Context, tx pgx.Tx, first bool) (MergeCounts, error)

// firstLoadProbe is the SQL expression telling whether system $1 has no row (live or
// tombstoned) in a mirror table.
func firstLoadProbe(table string) string {
	return `NOT EXISTS (SELECT 1 FROM ` + table + ` WHERE system = $1)`
}

// commit sends the last staged rows, then classifies and applies them in one transaction
// that also drops the staging area. A first load that spooled goes straight into the
// mirror table (d) when it can.
func (m *merge) commit(ctx context.Context, d directCopy, apply applyFunc) (MergeCounts, error) {
	if err := m.usable(); err != nil {
		m.rollback(ctx)
		return MergeCounts{}, err
	}
	var tx pgx.Tx
	wrap := func(what string, err error) (MergeCounts, error) {
		m.fail(err)
		// The transaction goes back to the pool before the staging area is dropped: with
		// one connection, dropping it first would wait for the connection this holds.
		if tx != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
		m.rollback(ctx)
		return MergeCounts{}, fmt.Errorf("state: commit %s merge for system %q: %s: %w", m.kind, m.system, what, err)
	}
	t0 := time.Now()
	if m.stager != nil {
		if err := m.stager.finish(ctx); err != nil {
			return wrap("stage rows", err)
		}
	}
	t1 := time.Now()
	began, err := m.store.pool.Begin(ctx)
	if err != nil {
		return wrap("begin", fmt.Errorf("%w (%s)", err, unreachableHint))
	}
	tx = began
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a no-op after Commit
	first, err := m.prepare(ctx, tx)
	if err != nil {
		return wrap("prepare", err)
	}
	t2 := time.Now()
	direct := m.canGoDirect(first)
	counts, what, err := m.apply(ctx, tx, first, direct, d, apply)
	if err != nil {
		return wrap(what, err)
	}
	t3 := time.Now()
	if m.area.name != "" {
		if err := m.area.drop(ctx, tx); err != nil {
			return wrap("drop staging tables", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return wrap("commit", err)
	}
	m.ended = true
	m.spool.close()
	m.logMerged(ctx, counts, first, direct, [4]time.Time{t0, t1, t2, t3})
	return counts, nil
}

// logMerged writes the debug line of a committed merge. With ctx, the line carries the
// run's run_id and flow (logctx). Durations are seconds, as everywhere in the log; t are
// the ends of the Writes, the staging wait, prepare and apply.
func (m *merge) logMerged(ctx context.Context, counts MergeCounts, first, direct bool, t [4]time.Time) {
	batches := 0
	if m.stager != nil {
		batches = m.stager.batches
	}
	m.store.logger.DebugContext(ctx, "merged", "kind", m.kind, "system", m.system, "rows", m.seq,
		"first_load", first, "deduped", m.dups, "spooled", m.spool != nil, "direct", direct, "batches", batches,
		"inserted", counts.Inserted, "updated", counts.Updated, "unchanged", counts.Unchanged,
		"tombstoned", counts.Tombstoned, "revived", counts.Revived, "orphaned", counts.Orphaned, "left_out", m.left,
		"begin_s", m.beginTook.Seconds(), "writes_s", t[0].Sub(m.opened).Seconds(),
		"stage_wait_s", t[1].Sub(t[0]).Seconds(), "prepare_s", t[2].Sub(t[1]).Seconds(), "apply_s", t[3].Sub(t[2]).Seconds(),
		"commit_s", time.Since(t[3]).Seconds())
}

// apply writes the merge into the mirror in tx: the spool straight into the mirror table
// (direct), or the staged rows by the kind's apply. A spooled merge that cannot go direct
// creates its staging area here, in tx, and COPYs the spool into it first: the tables
// then live only as long as tx, and nothing is left to sweep whatever happens. what
// names the step that failed.
func (m *merge) apply(ctx context.Context, tx pgx.Tx, first, direct bool, d directCopy, apply applyFunc) (c MergeCounts, what string, err error) {
	if direct {
		n, err := m.copyDirect(ctx, tx, d)
		if err != nil {
			return c, "copy into the mirror", err
		}
		c, err = d.finish(ctx, tx, n)
		return c, "merge", err
	}
	if m.spool != nil {
		a := m.store.newArea(m.kind)
		if err := a.createTables(ctx, tx, m.shape.stageCols, m.shape.deltaCols); err != nil {
			return c, "stage rows", err
		}
		m.area = a
		if m.staged > 0 {
			if err := m.copySpool(ctx, tx, m.spool); err != nil {
				return c, "stage rows", err
			}
		}
	}
	if m.settle != nil {
		if err := m.settle(ctx, tx); err != nil {
			return c, "compare member digests", err
		}
	}
	// Without statistics the planner guesses the staging table's size and may pick nested
	// loops over the mirror; ANALYZE samples it (a few ms) so it hash-joins. A first load
	// only scans it once, and an empty stage needs no plan.
	if !first && m.staged > 0 {
		if _, err := tx.Exec(ctx, `ANALYZE `+m.area.stage); err != nil {
			return c, "prepare", fmt.Errorf("analyze staging table: %w", err)
		}
	}
	c, err = apply(ctx, tx, first)
	return c, "merge", err
}

// prepare takes the merge lock in tx, sets the merge's settings, reads the transaction's
// clock (txNow) and says whether this is a first load (the probe, under the lock).
func (m *merge) prepare(ctx context.Context, tx pgx.Tx) (bool, error) {
	// Merges of one kind for one system apply in turns: two interleaved group merges of
	// the same system would tombstone each other's rows. They stage at the same time;
	// only the short apply is serialized. Other kinds and systems run in parallel.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('groupsync.merge:' || $1 || ':' || $2 || ':' || $3, 0))`,
		m.store.schema, m.kind, m.system); err != nil {
		return false, fmt.Errorf("take merge lock: %w", err)
	}
	// The hash joins (and the dedupe sort, when a key repeated) of a large merge fit in
	// memory with 64MB; the default 4MB spills 200k memberships to disk. The staging
	// table's ANALYZE only needs row counts and rough distinct counts, which a 3,000-row
	// sample (statistics target 10) gives in a third of the default's time. Both are
	// local to the transaction. The probe runs in a statement of its own after the lock's:
	// a statement's snapshot is taken when it starts, so in the lock's own statement it
	// could miss the rows of a merge that committed while this one waited.
	var workMem, statsTarget string
	first := false
	if err := tx.QueryRow(ctx, `SELECT set_config('work_mem', '64MB', true), set_config('default_statistics_target', '10', true),
		`+firstLoadProbe(m.shape.table)+`, now()`, m.system).Scan(&workMem, &statsTarget, &first, &m.txNow); err != nil {
		return false, fmt.Errorf("set merge settings and check for a first load: %w", err)
	}
	return first && !m.store.knobs().noFirstLoad, nil
}

// rollback ends the merge without a trace; safe to call at any point and more than once.
func (m *merge) rollback(ctx context.Context) {
	if m.ended {
		return
	}
	m.ended = true
	if m.stager != nil {
		m.stager.abort()
	}
	m.spool.close()
	// An area created by Commit lived in its transaction, rolled back by now.
	if m.area.registered {
		m.store.dropStage(context.WithoutCancel(ctx), m.area)
	}
}

// updateSystem records the pull on the systems row, in the merge's transaction: it started
// at begun (the merge's Begin) and finished now.
func updateSystem(ctx context.Context, tx pgx.Tx, system string, begun time.Time, setCounts string, complete *bool) error {
	q := `UPDATE systems SET last_pull_started_at = $2, last_pull_finished_at = clock_timestamp()`
	args := []any{system, begun}
	if complete != nil {
		q += `, last_pull_complete = $3, last_complete_pull_at = CASE WHEN $3 THEN $2 ELSE last_complete_pull_at END`
		args = append(args, *complete)
	}
	q += setCounts + ` WHERE name = $1`
	if _, err := tx.Exec(ctx, q, args...); err != nil {
		return fmt.Errorf("update systems row: %w", err)
	}
	return nil
}

const (
	countGroups      = `group_count = (SELECT count(*) FROM groups WHERE system = $1 AND deleted_at IS NULL)`
	countAccounts    = `account_count = (SELECT count(*) FROM accounts WHERE system = $1 AND deleted_at IS NULL)`
	countMemberships = `membership_count = (SELECT count(*) FROM memberships WHERE system = $1 AND deleted_at IS NULL)`
)

// recordChecker validates the fields of one record before it is staged. A membership's
// id is its group and account (id and sub), joined only for an error: the check runs per
// row, and almost every row is valid.
type recordChecker struct {
	system, kind, id, sub string
	err                   error
}

func (c *recordChecker) fail(field, reason string) {
	id := c.id
	if c.kind == "membership" {
		id += "/" + c.sub
	}
	c.err = &InvalidRecordError{System: c.system, Kind: c.kind, ID: id, Field: field, Reason: reason}
}

func (c *recordChecker) text(field, v string) {
	if c.err != nil || plainASCII(v) {
		return
	}
	switch {
	case strings.IndexByte(v, 0) >= 0:
		c.fail(field, "contains a NUL byte (\\x00), which Postgres text cannot store")
	case !utf8.ValidString(v):
		c.fail(field, "is not valid UTF-8")
	}
}

// plainASCII says that v is ASCII without a NUL byte, so valid text for Postgres: the
// common case, checked in one pass over the short fields of a record instead of two.
func plainASCII(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == 0 || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func (c *recordChecker) nonEmpty(field, v string) {
	if c.err == nil && v == "" {
		c.fail(field, "is empty")
	}
	c.text(field, v)
}

func (c *recordChecker) json(field string, raw json.RawMessage) {
	if c.err != nil || raw == nil {
		return
	}
	reason := ""
	switch {
	case !utf8.Valid(raw):
		reason = "is not valid UTF-8"
	case !json.Valid(raw):
		reason = "is not valid JSON"
	case hasNULEscape(raw):
		reason = "contains \\u0000, which Postgres jsonb cannot store"
	}
	if reason != "" {
		c.fail(field, reason)
	}
}

// hasNULEscape reports whether valid JSON holds a \u0000 escape (an escaped backslash
// followed by "u0000" is not one).
func hasNULEscape(raw []byte) bool {
	for i := 0; ; {
		j := bytes.Index(raw[i:], []byte(`\u0000`))
		if j < 0 {
			return false
		}
		j += i
		backslashes := 0
		for k := j; k >= 0 && raw[k] == '\\'; k-- {
			backslashes++
		}
		if backslashes%2 == 1 {
			return true
		}
		i = j + 1
	}
}

// rawText is what the staging table's text raw column receives; nil raw stays NULL.
func rawText(raw json.RawMessage) *string {
	if raw == nil {
		return nil
	}
	s := string(raw)
	return &s
}

// timeOrNull maps the zero time ("the API does not say") to NULL.
func timeOrNull(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// hashOr returns the connector's hash, or one computed from the stored fields when the
// connector left it empty, so that change detection never depends on a connector
// remembering to hash.
func hashOr(h string, fields ...string) string {
	if h != "" {
		return h
	}
	sum := sha256.New()
	for _, f := range fields {
		fmt.Fprintf(sum, "%d:%s;", len(f), f)
	}
	return "state:" + hex.EncodeToString(sum.Sum(nil)[:16])
}
