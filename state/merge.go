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
	"io"
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
	// copyStream runs one COPY for the whole merge on a goroutine fed page by page through
	// a channel, so sending overlaps with the caller fetching and encoding the next page.
	copyStream copyMode = iota
	// copyPerPage runs one COPY per Write call.
	copyPerPage
)

// stageQueueDepth is how many pages Write may run ahead of the COPY goroutine.
const stageQueueDepth = 8

// merge is the part common to the three merge kinds: one transaction, one temp staging
// table fed by COPY, then kind-specific set-based SQL at Commit.
//
// First load: when the system has no rows of the merge's kind yet, every record is new, so
// staging and classifying it would write each row three times (staging, classification,
// mirror). Instead rows are copied straight into the mirror table by the same streamed
// COPY, which costs about what a plain COPY does. The fast path holds only while every row
// is certainly new and storable: the first row whose key may repeat (the key set says so,
// or it overflowed) or that the kind refuses (a membership of a group not in the mirror
// at Begin) switches the merge to staging for the rest of the stream, and Commit then
// classifies the staged rows as usual, treating rows this transaction copied as seen.
type merge struct {
	store   *Store
	kind    string // group, account, membership: for errors
	system  string
	tx      pgx.Tx
	stage   string
	columns []string
	mode    copyMode
	seq     int64
	staged  int64 // rows sent to the staging table

	// First load (see above). direct is set at Begin when the system has no rows of this
	// kind and cleared for good by the first row that must be staged.
	firstLoad  bool
	direct     bool
	target     string   // the mirror table
	targetCols []string // columns copied into it, in fillDirect order
	consts     directConsts
	directRows int64 // rows copied straight into the mirror table

	// Streaming COPY (copyStream).
	pages    chan pageItem
	abort    chan struct{}
	copyDone chan struct{}
	copyErr  error
	closed   bool

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

	err   error // first failure; the merge is unusable after it
	ended bool  // committed or rolled back
}

// maxTrackedKeys bounds the duplicate-detection set (about 40 MB at the limit).
const maxTrackedKeys = 1 << 20

// mergeKnobs are test settings of one Store's merges (see export_test.go), kept beside
// the Store so that tests of other stores are unaffected.
type mergeKnobs struct {
	maxKeys  int  // duplicate-detection set bound
	noDirect bool // never take the first-load fast path
}

var mergeKnobsByStore sync.Map // *Store -> mergeKnobs

func (s *Store) knobs() mergeKnobs {
	if k, ok := mergeKnobsByStore.Load(s); ok {
		return k.(mergeKnobs)
	}
	return mergeKnobs{maxKeys: maxTrackedKeys}
}

// noteKey records a staged key (b is "" for single-column keys) for duplicate detection.
// It reports whether the key is certainly new: false once any key may have repeated.
func (m *merge) noteKey(a, b string) bool {
	if m.dups {
		return false
	}
	if m.keys == nil {
		m.seed = maphash.MakeSeed()
		m.keys = map[string]map[uint64]struct{}{}
		m.forgotten = map[string]struct{}{}
	}
	part := ""
	if b != "" {
		part = a
		if _, done := m.forgotten[part]; done {
			// A key of a partition already forgotten: it may repeat one we no longer hold.
			m.dups, m.keys, m.forgotten = true, nil, nil
			return false
		}
	}
	set := m.keys[part]
	if set == nil {
		set = map[uint64]struct{}{}
		m.keys[part] = set
	}
	h := maphash.Comparable(m.seed, [2]string{a, b})
	if _, seen := set[h]; seen || m.nkeys >= m.store.knobs().maxKeys {
		m.dups, m.keys, m.forgotten = true, nil, nil
		return false
	}
	set[h] = struct{}{}
	m.nkeys++
	return true
}

// forgetKeys drops the duplicate-detection partition of a completed group: no later key
// of it is expected, and one that comes anyway marks the stream as possibly repeating.
func (m *merge) forgetKeys(part string) {
	if m.keys == nil {
		return
	}
	m.nkeys -= len(m.keys[part])
	delete(m.keys, part)
	m.forgotten[part] = struct{}{}
}

// directConsts are the fields every row copied straight into a mirror table shares,
// encoded for COPY.
type directConsts struct {
	system    []byte // the system name (system and origin_system)
	succeeded []byte // last_sync_in_status
	now       []byte // the transaction's now(), as the INSERT of the staged path writes it
}

// directSpec describes a kind's first-load fast path. probe runs in the merge transaction
// after the advisory lock and reports whether the system has no rows of the kind (and the
// transaction's now()); it may keep what else the kind needs to accept rows.
type directSpec struct {
	table   string
	columns []string
	probe   func(ctx context.Context, tx pgx.Tx, system string) (first bool, now time.Time, err error)
}

// mine is the SQL condition "this row of cur was copied by this merge's first load". The
// classification uses it only after a first load switched to staging.
func (m *merge) mine() string {
	if m.directRows == 0 {
		return "false"
	}
	return "cur.xmin = pg_current_xact_id()::xid"
}

// curXmin is the extra column the classification's cur side needs for mine.
func (m *merge) curXmin() string {
	if m.directRows == 0 {
		return ""
	}
	return ", xmin"
}

// allDirect reports whether every row went straight into the mirror table: Commit has
// nothing to classify.
func (m *merge) allDirect() bool { return m.firstLoad && m.staged == 0 }

// source is the SQL for the staged rows, one per key (the last occurrence): the plain
// staging table while no key repeated, else a DISTINCT ON over it.
func (m *merge) source(cols, key string) string {
	if !m.dups {
		return `SELECT ` + cols + ` FROM ` + m.stage
	}
	return `SELECT DISTINCT ON (` + key + `) ` + cols + ` FROM ` + m.stage + ` ORDER BY ` + key + `, seq DESC`
}

func (s *Store) beginMerge(ctx context.Context, kind, system, stageDDL, stage string, columns []string, direct directSpec) (*merge, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("state: begin %s merge for system %q: %w (%s)", kind, system, err, unreachableHint)
	}
	m := &merge{store: s, kind: kind, system: system, tx: tx, stage: stage, columns: columns, mode: s.copyMode}
	fail := func(what string, err error) (*merge, error) {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("state: begin %s merge for system %q: %s: %w", kind, system, what, err)
	}
	// Merges of one kind for one system take turns: two interleaved group merges of
	// the same system would tombstone each other's rows. Other kinds and systems run
	// in parallel.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('groupsync.merge:' || $1 || ':' || $2 || ':' || $3, 0))`,
		s.schema, kind, system); err != nil {
		return fail("take merge lock", err)
	}
	// The hash joins (and the dedupe sort, when a key repeated) of a large merge fit in
	// memory with 64MB; the default 4MB spills 200k memberships to disk. The staging
	// table's ANALYZE only needs row counts and rough distinct counts, which a 3,000-row
	// sample (statistics target 10) gives in a third of the default's time. Both are
	// local to the transaction.
	if _, err := tx.Exec(ctx, `SELECT set_config('work_mem', '64MB', true), set_config('default_statistics_target', '10', true)`); err != nil {
		return fail("set merge settings", err)
	}
	var one int
	if err := tx.QueryRow(ctx, `SELECT 1 FROM systems WHERE name = $1`, system).Scan(&one); err != nil {
		err = translate(err)
		if errors.Is(err, ErrNotFound) {
			return fail("system not registered (call UpsertSystem first)", err)
		}
		return fail("look up system", err)
	}
	// A temp table: not WAL-logged, private to this session, dropped at commit. No
	// indexes: it is written once and read by sequential scans and hash joins.
	// Simple protocol: stageDDL creates the staging table and the delta table.
	if _, err := tx.Exec(ctx, stageDDL, pgx.QueryExecModeSimpleProtocol); err != nil {
		return fail("create staging tables", err)
	}
	first, now, err := direct.probe(ctx, tx, system)
	if err != nil {
		return fail("check for a first load", err)
	}
	if first && !s.knobs().noDirect {
		m.firstLoad, m.direct = true, true
		m.target, m.targetCols = direct.table, direct.columns
		m.consts = directConsts{system: appendCopyText(nil, system), succeeded: appendCopyText(nil, "succeeded"),
			now: appendCopyTime(nil, &now)}
	}
	if m.mode == copyStream {
		m.startStream(ctx)
	}
	return m, nil
}

// startStream starts the single COPY of this merge. ctx is Begin's context: cancelling it
// aborts the COPY.
//
// The COPY fills the mirror table while pages are marked direct and the staging table
// after that; a page for the other table ends the current COPY and starts the next one.
func (m *merge) startStream(ctx context.Context) {
	m.pages = make(chan pageItem, stageQueueDepth)
	m.abort = make(chan struct{})
	m.copyDone = make(chan struct{})
	r := &copyReader{ctx: ctx, pages: m.pages, abort: m.abort, direct: m.direct, buf: copyHeader}
	go func() {
		defer close(m.copyDone)
		for {
			if _, err := m.tx.Conn().PgConn().CopyFrom(ctx, r, m.copySQL(r.direct)); err != nil {
				m.copyErr = err
				return
			}
			if r.next == nil {
				return
			}
			r.restart()
		}
	}()
}

// copySQL is the COPY statement filling the mirror table (direct) or the staging table.
func (m *merge) copySQL(direct bool) string {
	table, cols := m.stage, m.columns
	if direct {
		table, cols = m.target, m.targetCols
	}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	return `COPY ` + pgx.Identifier{table}.Sanitize() + ` (` + strings.Join(quoted, ", ") + `) FROM STDIN (FORMAT binary)`
}

// stagedPage is one page of rows converted for staging. It keeps its own copy of the
// values (the caller may reuse its page slice after Write returns).
type stagedPage interface {
	len() int
	// appendCopy appends the page's rows to b in COPY binary format (without header and
	// trailer): the staging columns (seq first), or with direct the kind's mirror-table
	// columns (directSpec.columns).
	appendCopy(b []byte, direct bool, c *directConsts) []byte
	// slice is rows [i, j) of the page.
	slice(i, j int) stagedPage
}

// pageItem is a page encoded for COPY, with the table it goes to.
type pageItem struct {
	data   []byte
	direct bool // into the mirror table (first load), else into staging
}

// copyReader feeds encoded pages from a channel to one COPY. It serves one table (direct
// or staging); a page for the other one is kept in next and ends this COPY.
type copyReader struct {
	ctx    context.Context
	pages  <-chan pageItem
	abort  <-chan struct{}
	direct bool
	buf    []byte
	next   *pageItem
	closed bool
	ended  bool // the trailer of this COPY is in buf or sent
}

// restart begins the COPY of the page kept in next.
func (r *copyReader) restart() {
	r.direct, r.buf, r.next, r.ended = r.next.direct, append(copyHeader[:len(copyHeader):len(copyHeader)], r.next.data...), nil, false
}

// Read fills p with as many queued pages as fit, waiting only while it has nothing: the
// fewer, larger CopyData messages, the less per-message overhead on both ends.
func (r *copyReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.buf) == 0 {
			if r.next != nil || r.closed {
				if r.ended {
					break
				}
				r.buf, r.ended = copyTrailer, true
				continue
			}
			if n > 0 {
				select {
				case it, ok := <-r.pages:
					r.take(it, ok)
					continue
				default:
					return n, nil
				}
			}
			select {
			case it, ok := <-r.pages:
				r.take(it, ok)
				continue
			case <-r.abort:
				return n, errors.New("merge rolled back")
			case <-r.ctx.Done():
				return n, r.ctx.Err()
			}
		}
		k := copy(p[n:], r.buf)
		r.buf = r.buf[k:]
		n += k
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (r *copyReader) take(it pageItem, ok bool) {
	switch {
	case !ok:
		r.closed = true
	case it.direct != r.direct:
		r.next = &it
	default:
		r.buf = it.data
	}
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

// appendCopyJSON sends raw text for a text staging column or, with jsonb, for a jsonb
// mirror column (version byte 1, then the text). nil is NULL.
func appendCopyJSON(b []byte, raw *string, jsonb bool) []byte {
	switch {
	case raw == nil:
		return appendCopyNull(b)
	case jsonb:
		b = binary.BigEndian.AppendUint32(b, uint32(len(*raw)+1))
		return append(append(b, 1), *raw...)
	default:
		return appendCopyText(b, *raw)
	}
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
// needed, keeps the last occurrence. During a first load, rows before split go straight
// into the mirror table; a split inside the page ends the fast path and the rest of the
// page (and of the stream) is staged.
func (m *merge) write(ctx context.Context, page stagedPage, split int) error {
	n := page.len()
	if n == 0 {
		return nil
	}
	items := make([]pageItem, 0, 2)
	pages := make([]stagedPage, 0, 2)
	if m.direct {
		if split > 0 {
			items = append(items, pageItem{direct: true})
			pages = append(pages, page.slice(0, split))
			m.directRows += int64(split)
		}
		if split < n {
			m.direct = false
			m.store.logger.Debug("first load switched to staging", "kind", m.kind, "system", m.system,
				"direct_rows", m.directRows, "possible_duplicates", m.dups)
			items = append(items, pageItem{})
			pages = append(pages, page.slice(split, n))
			m.staged += int64(n - split)
		}
	} else {
		items = append(items, pageItem{})
		pages = append(pages, page)
		m.staged += int64(n)
	}
	for i := range items {
		items[i].data = pages[i].appendCopy(make([]byte, 0, 128*pages[i].len()), items[i].direct, &m.consts)
	}
	for _, it := range items {
		if err := m.send(ctx, it); err != nil {
			return m.fail(fmt.Errorf("state: %s merge for system %q: stage rows: %w", m.kind, m.system, err))
		}
	}
	return nil
}

func (m *merge) send(ctx context.Context, it pageItem) error {
	if m.mode == copyPerPage {
		data := append(append(copyHeader[:len(copyHeader):len(copyHeader)], it.data...), copyTrailer...)
		_, err := m.tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), m.copySQL(it.direct))
		return err
	}
	select {
	case m.pages <- it:
		return nil
	case <-m.copyDone:
		return m.streamErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *merge) streamErr() error {
	if m.copyErr != nil {
		return m.copyErr
	}
	return errors.New("staging COPY ended early")
}

// finishStream ends the COPY and waits for it.
func (m *merge) finishStream(ctx context.Context) error {
	if m.mode != copyStream || m.closed {
		return nil
	}
	m.closed = true
	close(m.pages)
	select {
	case <-m.copyDone:
	case <-ctx.Done():
		close(m.abort)
		<-m.copyDone
		return ctx.Err()
	}
	return m.copyErr
}

// distinct is how many distinct keys were staged (rows a first load copied straight into
// the mirror table are not staged).
func (m *merge) distinct(ctx context.Context, tx pgx.Tx, key string) (int64, error) {
	if !m.dups {
		return m.staged, nil
	}
	var n int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT DISTINCT `+key+` FROM `+m.stage+`) k`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count distinct staged keys: %w", err)
	}
	return n, nil
}

// analyzeDelta gives the planner the delta table's size when it is large (a first load);
// an empty or small delta needs no statistics to be planned well.
func analyzeDelta(ctx context.Context, tx pgx.Tx, table string, rows int64) error {
	if rows < 1000 {
		return nil
	}
	if _, err := tx.Exec(ctx, `ANALYZE `+table); err != nil {
		return fmt.Errorf("analyze %s: %w", table, err)
	}
	return nil
}

// commit finishes staging, runs apply in the transaction and commits.
func (m *merge) commit(ctx context.Context, apply func(ctx context.Context, tx pgx.Tx) (MergeCounts, error)) (MergeCounts, error) {
	if err := m.usable(); err != nil {
		m.rollback(ctx)
		return MergeCounts{}, err
	}
	wrap := func(what string, err error) (MergeCounts, error) {
		m.fail(err)
		m.rollback(ctx)
		return MergeCounts{}, fmt.Errorf("state: commit %s merge for system %q: %s: %w", m.kind, m.system, what, err)
	}
	t0 := time.Now()
	if err := m.finishStream(ctx); err != nil {
		return wrap("stage rows", err)
	}
	t1 := time.Now()
	// Without statistics the planner assumes a temp table is tiny and picks nested
	// loops over the mirror; ANALYZE samples it (a few ms) so it hash-joins. A first load
	// that staged nothing has nothing to plan.
	if !m.allDirect() {
		if _, err := m.tx.Exec(ctx, `ANALYZE `+pgx.Identifier{m.stage}.Sanitize()); err != nil {
			return wrap("analyze staging table", err)
		}
	}
	t2 := time.Now()
	counts, err := apply(ctx, m.tx)
	if err != nil {
		return wrap("merge", err)
	}
	t3 := time.Now()
	if err := m.tx.Commit(ctx); err != nil {
		return wrap("commit", err)
	}
	m.ended = true
	m.store.logger.Debug("merged", "kind", m.kind, "system", m.system, "rows", m.seq,
		"first_load", m.firstLoad, "direct", m.directRows, "staged", m.staged,
		"inserted", counts.Inserted, "updated", counts.Updated, "unchanged", counts.Unchanged,
		"tombstoned", counts.Tombstoned, "revived", counts.Revived, "orphaned", counts.Orphaned,
		"stage_wait_ms", t1.Sub(t0).Milliseconds(), "analyze_ms", t2.Sub(t1).Milliseconds(),
		"apply_ms", t3.Sub(t2).Milliseconds(), "commit_ms", time.Since(t3).Milliseconds())
	return counts, nil
}

// rollback ends the merge without a trace; safe to call at any point and more than once.
func (m *merge) rollback(ctx context.Context) {
	if m.ended {
		return
	}
	m.ended = true
	if m.mode == copyStream && !m.closed {
		m.closed = true
		close(m.abort)
		<-m.copyDone
	}
	// The transaction may already be aborted or the connection gone; the rollback's own
	// error adds nothing the caller can act on.
	_ = m.tx.Rollback(context.WithoutCancel(ctx))
}

// updateSystem records the pull on the systems row, in the merge's transaction. now() is
// the transaction start, i.e. when the merge began.
func updateSystem(ctx context.Context, tx pgx.Tx, system string, setCounts string, complete *bool) error {
	q := `UPDATE systems SET last_pull_started_at = now(), last_pull_finished_at = clock_timestamp()`
	args := []any{system}
	if complete != nil {
		q += `, last_pull_complete = $2, last_complete_pull_at = CASE WHEN $2 THEN now() ELSE last_complete_pull_at END`
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

// recordChecker validates the fields of one record before it is staged.
type recordChecker struct {
	system, kind, id string
	err              error
}

func (c *recordChecker) text(field, v string) {
	if c.err != nil {
		return
	}
	switch {
	case strings.IndexByte(v, 0) >= 0:
		c.err = &InvalidRecordError{System: c.system, Kind: c.kind, ID: c.id, Field: field, Reason: "contains a NUL byte (\\x00), which Postgres text cannot store"}
	case !utf8.ValidString(v):
		c.err = &InvalidRecordError{System: c.system, Kind: c.kind, ID: c.id, Field: field, Reason: "is not valid UTF-8"}
	}
}

func (c *recordChecker) nonEmpty(field, v string) {
	if c.err == nil && v == "" {
		c.err = &InvalidRecordError{System: c.system, Kind: c.kind, ID: c.id, Field: field, Reason: "is empty"}
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
		c.err = &InvalidRecordError{System: c.system, Kind: c.kind, ID: c.id, Field: field, Reason: reason}
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
