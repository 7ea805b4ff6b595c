package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5"
)

// First loads spool instead of staging. When Begin finds that the system has no rows of the
// merge's kind, Writes append their rows (in the staging layout, COPY binary, seq first) to
// an unlinked local file instead of COPYing them into the staging table, and Commit, if the
// load can still go straight in (the probe, under the merge lock, still finds no rows; no key
// may repeat; for memberships, every group was in the mirror at Begin), COPYs the file into
// the mirror table inside its short transaction, converting each row on the way. A COPY into
// the mirror costs what any COPY does, while the staged first load paid for a COPY into the
// stage and then an INSERT … SELECT (which cannot use COPY's multi-insert) on top.
//
// Otherwise Commit creates the staging tables in its transaction, COPYs the file unchanged
// into them and goes on as a staged merge would (DISTINCT ON for repeated keys, orphans
// left out, classification when the system got rows meanwhile), so both paths store the
// same rows.
//
// Nothing is held across the caller's listing but the file: no transaction, no pooled
// connection, and nothing in the database (no staging tables, no merge_stages row: a
// spooling merge pays for no DDL and leaves nothing for the sweep). The file is removed
// from its directory as soon as it is created, so it lives only as long as this process
// holds it open: a process that dies mid-merge leaves neither the file nor any row behind.
// Memory stays flat: Writes go through two buffers of spoolBufBytes and Commit reads the
// file back in chunks of the same size.

// spoolBufBytes is how much a spool buffers before writing to its file, and how much of the
// file Commit reads at a time.
const spoolBufBytes = 1 << 20

// copyChunkBytes is about how much converted COPY data one Read hands pgconn (it sends each
// Read as one CopyData message).
const copyChunkBytes = 64 << 10

// spool is the first load's file. Writes fill one buffer while a goroutine writes the other
// to the file: the file write (a copy into the page cache, about a tenth of a first load's
// Go time) overlaps with checking and encoding the next pages, on a second core when there
// is one. At most two buffers exist, so memory stays flat.
type spool struct {
	f    *os.File
	buf  []byte      // the buffer being filled
	full chan []byte // a filled buffer for the writer; closed by rows or close
	free chan []byte // the buffer the writer wrote, back for filling
	done chan struct{}
	size int64 // bytes written to f; read after done is closed
	err  error // why the writer stopped early; read after done is closed
}

// newSpool creates the file in os.TempDir ($TMPDIR), unlinks it at once and starts the
// writer.
func newSpool() (*spool, error) {
	f, err := os.CreateTemp("", "groupsync-merge-*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		return nil, err
	}
	sp := &spool{f: f, buf: make([]byte, 0, spoolBufBytes+64<<10),
		full: make(chan []byte), free: make(chan []byte, 1), done: make(chan struct{})}
	sp.free <- make([]byte, 0, spoolBufBytes+64<<10)
	go sp.writer()
	return sp, nil
}

// writer writes each filled buffer to the file and hands it back, until full is closed
// or a write fails (then done says so, and err why).
func (sp *spool) writer() {
	defer close(sp.done)
	for b := range sp.full {
		n, err := sp.f.Write(b)
		sp.size += int64(n)
		if err != nil {
			sp.err = fmt.Errorf("write the merge spool file in %s (set TMPDIR to a directory with room): %w", os.TempDir(), err)
			return
		}
		sp.free <- b[:0]
	}
}

func (sp *spool) write(page stagedPage) error {
	sp.buf = page.appendCopy(sp.buf)
	if len(sp.buf) < spoolBufBytes {
		return nil
	}
	return sp.flush()
}

// flush hands the filled buffer to the writer and takes the other one back, waiting
// while the writer is still writing it.
func (sp *spool) flush() error {
	select {
	case sp.full <- sp.buf:
	case <-sp.done:
		return sp.err
	}
	select {
	case sp.buf = <-sp.free:
		return nil
	case <-sp.done:
		return sp.err
	}
}

// rows returns the spooled rows from the start of the file, once every buffer is in it.
func (sp *spool) rows() (io.Reader, error) {
	if len(sp.buf) > 0 {
		if err := sp.flush(); err != nil {
			return nil, err
		}
	}
	close(sp.full)
	<-sp.done
	if sp.err != nil {
		return nil, sp.err
	}
	if _, err := sp.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind the merge spool file: %w", err)
	}
	return io.LimitReader(sp.f, sp.size), nil
}

// close stops the writer and closes the file; safe after rows and more than once.
func (sp *spool) close() {
	if sp == nil || sp.f == nil {
		return
	}
	select {
	case <-sp.done:
	default:
		close(sp.full)
		<-sp.done
	}
	_ = sp.f.Close()
	sp.f = nil
}

// directCopy says how a kind's spooled rows become rows of its mirror table: the system,
// the staged fields after seq, then origin_system, last_sync_in_status and
// last_sync_in_date, which is what the staged path's INSERT … SELECT writes (columns is
// the same list). jsonb is the staged field (seq is 0) holding raw JSON text for a jsonb
// column, or 0. finish records a load of n rows on the systems row and returns the counts.
type directCopy struct {
	table   string
	columns string
	jsonb   int
	finish  func(ctx context.Context, tx pgx.Tx, n int64) (MergeCounts, error)
}

// canGoDirect says whether Commit may COPY the spool straight into the mirror table.
func (m *merge) canGoDirect(first bool) bool {
	return m.spool != nil && first && !m.dups && !m.unfit
}

// copyDirect COPYs the spool into the mirror table in tx, and returns how many rows went in.
func (m *merge) copyDirect(ctx context.Context, tx pgx.Tx, d directCopy) (int64, error) {
	src, err := m.spool.rows()
	if err != nil {
		return 0, err
	}
	// last_sync_in_date is the transaction's now() (read by prepare), as the column
	// defaults (first_seen_at, updated_at) and the staged path's INSERT write it.
	conv := &directRow{jsonb: d.jsonb, system: appendCopyText(nil, m.system),
		succeeded: appendCopyText(nil, "succeeded"), now: appendCopyTime(nil, &m.txNow)}
	r := &copyRewriter{src: src, fields: len(m.shape.columns), conv: conv.append,
		in: make([]byte, 0, spoolBufBytes), out: append(make([]byte, 0, 2*copyChunkBytes), copyHeader...)}
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, r, `COPY `+d.table+` (`+d.columns+`) FROM STDIN (FORMAT binary)`)
	if err != nil {
		return 0, fmt.Errorf("copy the spooled rows into %s: %w", d.table, err)
	}
	return tag.RowsAffected(), nil
}

// copySpool COPYs the rows of sp (in the staging layout) unchanged into the staging table
// in tx: a first load's spool when Commit cannot go direct (the rest of the merge is then
// the staged one), or the rows the member digests left out when Commit compares them after
// all.
func (m *merge) copySpool(ctx context.Context, tx pgx.Tx, sp *spool) error {
	src, err := sp.rows()
	if err != nil {
		return err
	}
	r := io.MultiReader(bytes.NewReader(copyHeader), src, bytes.NewReader(copyTrailer))
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, r, m.copySQL()); err != nil {
		return fmt.Errorf("copy the spooled rows into the staging table: %w", err)
	}
	return nil
}

// directRow converts one staged row into a mirror row (see directCopy).
type directRow struct {
	jsonb                  int
	system, succeeded, now []byte // encoded COPY fields
}

// append appends the mirror row for a staged row (fields with their length prefixes).
func (d *directRow) append(out []byte, row [][]byte) []byte {
	out = appendCopyRow(out, len(row)-1+4)
	out = append(out, d.system...)
	for i := 1; i < len(row); i++ {
		f := row[i]
		if i == d.jsonb && int32(binary.BigEndian.Uint32(f)) >= 0 {
			// jsonb's binary input is a format version (1), then the JSON text.
			out = binary.BigEndian.AppendUint32(out, uint32(len(f)-4+1))
			out = append(append(out, 1), f[4:]...)
			continue
		}
		out = append(out, f...)
	}
	return append(append(append(out, d.system...), d.succeeded...), d.now...)
}

// copyRewriter reads COPY binary rows (no header or trailer) from src and serves them as one
// COPY stream (header, converted rows, trailer), one chunk per Read.
type copyRewriter struct {
	src    io.Reader
	fields int                                   // fields per source row
	conv   func(out []byte, row [][]byte) []byte // appends the converted row

	in      []byte // read from src; the next row starts at in[pos]
	pos     int
	srcDone bool
	row     [][]byte // the current row's fields, length prefixes included, into in

	out    []byte // converted data; the next Read starts at out[outPos]
	outPos int
	done   bool // the trailer is in out
}

func (r *copyRewriter) Read(p []byte) (int, error) {
	if r.outPos == len(r.out) {
		if r.done {
			return 0, io.EOF
		}
		if err := r.refill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.out[r.outPos:])
	r.outPos += n
	return n, nil
}

// refill converts rows until out holds a chunk, or the trailer after the last row.
func (r *copyRewriter) refill() error {
	if r.outPos == len(r.out) {
		r.out, r.outPos = r.out[:0], 0
	}
	for len(r.out) < copyChunkBytes {
		ok, err := r.next()
		if err != nil {
			return err
		}
		if !ok {
			r.out, r.done = append(r.out, copyTrailer...), true
			return nil
		}
		r.out = r.conv(r.out, r.row)
	}
	return nil
}

// next splits the next source row into r.row, reading more of src when the row is not
// all in the buffer yet.
func (r *copyRewriter) next() (bool, error) {
	for {
		n, ok, err := r.split(r.in[r.pos:])
		if err != nil || ok {
			r.pos += n
			return ok, err
		}
		if r.srcDone {
			if r.pos < len(r.in) {
				return false, errors.New("the merge spool file ends inside a row")
			}
			return false, nil
		}
		if err := r.read(); err != nil {
			return false, err
		}
	}
}

// read moves the unread bytes to the front of in (growing it when one row fills it) and
// appends what src has next.
func (r *copyRewriter) read() error {
	rest := copy(r.in[:cap(r.in)], r.in[r.pos:])
	r.in, r.pos = r.in[:rest], 0
	if rest == cap(r.in) {
		r.in = append(r.in, make([]byte, rest)...)[:rest]
	}
	n, err := r.src.Read(r.in[rest:cap(r.in)])
	r.in = r.in[:rest+n]
	switch {
	case errors.Is(err, io.EOF):
		r.srcDone = true
	case err != nil:
		return fmt.Errorf("read the merge spool file: %w", err)
	}
	return nil
}

// split parses one row at the start of b: its length, or ok false when b ends first.
func (r *copyRewriter) split(b []byte) (n int, ok bool, err error) {
	if len(b) < 2 {
		return 0, false, nil
	}
	if nf := int(binary.BigEndian.Uint16(b)); nf != r.fields {
		return 0, false, fmt.Errorf("the merge spool file holds a row of %d fields, want %d", nf, r.fields)
	}
	off := 2
	r.row = r.row[:0]
	for range r.fields {
		if len(b) < off+4 {
			return 0, false, nil
		}
		end := off + 4
		if l := int32(binary.BigEndian.Uint32(b[off:])); l > 0 {
			end += int(l)
		}
		if len(b) < end {
			return 0, false, nil
		}
		r.row = append(r.row, b[off:end])
		off = end
	}
	return off, true, nil
}
