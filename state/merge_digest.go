package state

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/jackc/pgx/v5"
)

// Member digests: how a membership merge leaves out the groups that did not change.
//
// A no-op pull of a large tenant used to stage every listed member and compare the stage
// with the mirror in one hash join, which together cost more than COPYing the rows afresh.
// Now a staged membership merge first compares each group by a digest: the number of
// members and the XOR of a 128-bit hash of each member's compared columns (account, type,
// role, email). XOR does not care about order, so a listing's digest accumulates as its
// members stream in, without sorting or keeping them.
//
//   - Begin computes the digest of every group's live members in the mirror, in SQL. No
//     digest is stored anywhere, so none can go stale: the engine's pushes, reverts, other
//     merges and any other writer change rows, and every digest is computed from the rows.
//   - Writes hold a group's members (encoded for staging) while the group's digest can still
//     come out equal to the mirror's: never more members than the mirror has live, and at
//     most digestHoldBytes for all groups in flight. A group that stops matching or does
//     not fit is staged as before, and so is any group with no live member in the mirror.
//   - CompleteGroup compares the listing's digest with the mirror's. On a match the group is
//     left out: its held rows go to a local fallback file instead of the stage, and Commit
//     neither reads nor tombstones it (a full compare would have found every row unchanged
//     and nothing to tombstone).
//   - Commit, in its transaction and under the merge lock, computes the left-out groups'
//     digests again. If any changed since Begin (a push, a revert, another merge), or the
//     stream is in doubt (a key repeated, or a member came after its group completed), it
//     COPYs the fallback file into the stage, and the merge is the full compare it would
//     have been without digests, left-out groups included.
//
// So the result is the full compare's unless two different member sets of a group have
// equal digests. The member hash is Postgres' hashtextextended (lookup3, chained over the
// columns) under two random 64-bit seeds drawn per merge, never stored: for rows that
// change in the ordinary way that is a chance of about 2^-128 per changed group. It is
// not a cryptographic MAC; a listing that could aim at a collision would need the seeds,
// or a collision of lookup3 that holds for every seed, which is not known to exist. A
// digest that SQL and Go compute differently (a big-endian server, a nondeterministic
// collation) never matches, and the merge compares every group.

// digestHoldBytes bounds the encoded members a merge holds while their groups may still
// match (about 45,000 memberships): groups in flight are a few at a time, so only a group
// bigger than this is staged for being big.
const digestHoldBytes = 4 << 20

// memberDigest is the digest of a set of members: how many, and the XOR of their hashes.
type memberDigest struct {
	n      int64
	d1, d2 uint64
}

func (d *memberDigest) add(h [2]uint64) {
	d.n++
	d.d1 ^= h[0]
	d.d2 ^= h[1]
}

// memberHashSQL is a member's share of the digest in SQL, for memberships row m and
// seed: the compared columns hashed in turn, each hash the seed of the next, so that the
// hash depends on every column and on which column holds what. Hashing the columns one by
// one costs a third of hashing one text built from them (length-prefixed, to be
// unambiguous): building the text is most of the work. digestGate.hash is the Go side.
func memberHashSQL(seed string) string {
	return `hashtextextended(m.email, hashtextextended(m.role, hashtextextended(m.member_type, hashtextextended(m.account_id, ` + seed + `))))`
}

// digestGate decides, group by group, what a membership merge stages. Not safe for
// concurrent use (nor is the merge).
type digestGate struct {
	seeds  [2]int64                // this merge's hash seeds, random and non-zero
	mirror map[string]memberDigest // live members per group in the mirror at Begin

	held      map[string]*heldGroup // groups in flight whose rows are held
	heldBytes int
	maxHeld   int      // digestHoldBytes, or a test's bound
	spare     [][]byte // held buffers of left-out groups, for reuse
	// release is the rows of groups that stopped matching, for the next Write or Commit to
	// stage (CompleteGroup cannot fail, so it does not stage them itself).
	release     []byte
	releaseRows int
	// staged holds the groups that had rows staged: with the completed groups not left
	// out, they are all Commit compares. nil once it passes maxKnownGroups: the gate then
	// holds nothing more, and Commit reads every group (left-out groups still see no
	// write: none is staged or completed).
	staged map[string]struct{}

	skipped     []skippedGroup
	skippedSet  map[string]struct{}
	skippedRows int64
	fallback    *spool // the left-out groups' rows

	off      bool  // holds nothing more
	doubt    bool  // a key repeated: Commit compares the left-out groups too
	restored bool  // Commit staged the fallback: every group is compared
	err      error // the fallback file failed
}

type heldGroup struct {
	dig  memberDigest
	rows []byte // encoded for staging
	n    int    // rows held
}

type skippedGroup struct {
	id  string
	dig memberDigest
}

// startGate gives a staged membership merge its gate, unless the knobs say no, there is
// no local disk for the fallback file, or the system has more groups than maxGroups
// (Begin would hold too many digests): the merge then stages everything, as it did.
func (w *MembershipMerge) startGate(ctx context.Context, s *Store) error {
	k := s.knobs()
	if k.noDigest || s.noSpool.Load() {
		return nil
	}
	seeds := randomSeeds()
	mirror, err := s.mirrorDigests(ctx, w.m.system, seeds, k.maxGroups)
	if err != nil || mirror == nil {
		return err
	}
	fb, err := newSpool()
	if err != nil {
		s.logger.Warn("cannot create a member digest fallback file; staging every member", "error", err)
		return nil
	}
	w.gate = &digestGate{seeds: seeds, mirror: mirror, fallback: fb, held: map[string]*heldGroup{}, maxHeld: k.digestHold,
		staged: map[string]struct{}{}, skippedSet: map[string]struct{}{}}
	return nil
}

// mirrorDigests computes the digest of each group's live members of system, or nil when
// more than limit groups have some. It reads in a short transaction of its own, for
// SET LOCAL: the query's estimated cost can cross JIT's threshold, and compiling it
// (30-40 ms for 1M memberships) costs more than it saves.
func (s *Store) mirrorDigests(ctx context.Context, system string, seeds [2]int64, limit int) (map[string]memberDigest, error) {
	var out map[string]memberDigest
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('jit', 'off', true)`); err != nil {
			return err
		}
		// Group by group, one index scan each: a GROUP BY over a mirror without statistics
		// (one just loaded has none) is planned as a sort that spills to disk. Memberships
		// are stored only for groups the mirror holds; a group with none has no digest,
		// and its listing is staged and compared.
		rows, err := tx.Query(ctx, `SELECT g.external_id, d.n, d.d1, d.d2 FROM groups g
			CROSS JOIN LATERAL (SELECT `+digestSQL+` FROM memberships m
				WHERE m.system = $1 AND m.group_id = g.external_id AND m.deleted_at IS NULL) d
			WHERE g.system = $1 AND d.n > 0 LIMIT $4`, system, seeds[0], seeds[1], limit+1)
		if err != nil {
			return err
		}
		out = map[string]memberDigest{}
		var d memberDigest
		var id string
		var d1, d2 int64
		_, err = pgx.ForEachRow(rows, []any{&id, &d.n, &d1, &d2}, func() error {
			d.d1, d.d2 = uint64(d1), uint64(d2)
			out[id] = d
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("digest the mirror's members: %w", err)
	}
	if len(out) > limit {
		return nil, nil
	}
	return out, nil
}

// randomSeeds are two random non-zero seeds (0 would mean "no seed" to Postgres).
func randomSeeds() [2]int64 {
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	return [2]int64{int64(binary.LittleEndian.Uint64(raw[:8]) | 1), int64(binary.LittleEndian.Uint64(raw[8:]) | 1)}
}

// hash is a member's share of the digest: memberHashSQL with each seed.
func (g *digestGate) hash(r *memberRow) [2]uint64 {
	var out [2]uint64
	for i, seed := range g.seeds {
		h := uint64(seed)
		for _, f := range [...]string{r.account, r.typ, r.role, r.email} {
			h = hashBytesExtended(f, h)
		}
		out[i] = h
	}
	return out
}

// hold takes row r when its group may still equal the mirror's, and says whether it did;
// a row it does not take is the caller's to stage.
func (g *digestGate) hold(r *memberRow) bool {
	h := g.held[r.group]
	if h == nil {
		if _, done := g.staged[r.group]; done || g.off || g.mirror[r.group].n == 0 {
			g.markStaged(r.group)
			return false
		}
		h = &heldGroup{}
		if n := len(g.spare); n > 0 {
			h.rows, g.spare = g.spare[n-1], g.spare[:n-1]
		}
		g.held[r.group] = h
	}
	h.dig.add(g.hash(r))
	if h.dig.n > g.mirror[r.group].n || g.heldBytes > g.maxHeld {
		// More members than the mirror has, or too much held: the group is compared.
		g.releaseGroup(r.group, h)
		return false
	}
	before := len(h.rows)
	h.rows = r.appendCopy(h.rows)
	h.n++
	g.heldBytes += len(h.rows) - before
	return true
}

// releaseGroup moves a held group's rows to release: the group is compared.
func (g *digestGate) releaseGroup(id string, h *heldGroup) {
	g.release = append(g.release, h.rows...)
	g.releaseRows += h.n
	g.heldBytes -= len(h.rows)
	delete(g.held, id)
	g.markStaged(id)
}

func (g *digestGate) markStaged(id string) {
	if g.staged == nil {
		return
	}
	if len(g.staged) >= maxKnownGroups {
		g.staged = nil
		g.stop()
		return
	}
	g.staged[id] = struct{}{}
}

// stop holds nothing more and releases every held group.
func (g *digestGate) stop() {
	if g.off {
		return
	}
	g.off = true
	for id, h := range g.held {
		g.releaseGroup(id, h)
	}
}

// distrust stops the gate and makes Commit compare the left-out groups too: a key
// repeated (or the duplicate-detection set overflowed), so which rows are a group's last
// is for the dedupe to say, and a member may have come after its group completed.
func (g *digestGate) distrust() {
	g.doubt = true
	g.stop()
}

// complete decides a completed group: left out when its listing's digest is the mirror's
// (its rows go to the fallback file), else compared (its held rows are released). A
// group with no member listed is left out when the mirror has none live either.
func (g *digestGate) complete(id string) {
	h := g.held[id]
	if h == nil {
		_, staged := g.staged[id]
		if !staged && !g.off && g.mirror[id].n == 0 && len(g.skipped) < maxKnownGroups {
			g.skip(id, memberDigest{})
		}
		return
	}
	if h.dig != g.mirror[id] {
		g.releaseGroup(id, h)
		return
	}
	delete(g.held, id)
	g.heldBytes -= len(h.rows)
	if err := g.fallback.write(rawRows{b: h.rows, n: h.n}); err != nil && g.err == nil {
		g.err = err
	}
	g.skippedRows += int64(h.n)
	g.skip(id, h.dig)
	if cap(h.rows) <= maxSpareHeld {
		g.spare = append(g.spare, h.rows[:0])
	}
}

// maxSpareHeld bounds a held buffer kept for reuse: a big group's is let go.
const maxSpareHeld = 64 << 10

func (g *digestGate) skip(id string, d memberDigest) {
	g.skipped = append(g.skipped, skippedGroup{id: id, dig: d})
	g.skippedSet[id] = struct{}{}
}

// left says whether Commit leaves the group out: it was, and the fallback was not restored.
func (g *digestGate) left(id string) bool {
	if g == nil || g.restored {
		return false
	}
	_, ok := g.skippedSet[id]
	return ok
}

// rawRows are rows already encoded for staging.
type rawRows struct {
	b []byte
	n int
}

func (p rawRows) len() int                   { return p.n }
func (p rawRows) appendCopy(b []byte) []byte { return append(b, p.b...) }

// close drops the fallback file; safe more than once.
func (g *digestGate) close() {
	if g != nil {
		g.fallback.close()
	}
}

// digestSQL is the digest of the memberships rows m it aggregates, with seeds $2 and $3:
// n, d1, d2.
var digestSQL = `count(*) AS n, bit_xor(` + memberHashSQL("$2") + `) AS d1, bit_xor(` + memberHashSQL("$3") + `) AS d2`

// settle runs in Commit's transaction, under the merge lock, before the staged rows are
// applied: it checks that every left-out group's live members are still the ones its
// listing matched, and when one is not, or the stream is in doubt, it stages the left-out
// groups' rows after all, so that Commit compares every group as it would without digests.
func (w *MembershipMerge) settle(ctx context.Context, tx pgx.Tx) error {
	g := w.gate
	if g == nil || len(g.skipped) == 0 {
		return nil
	}
	if !g.doubt {
		changed, err := g.changed(ctx, tx, w.m.system)
		if err != nil {
			return err
		}
		if changed == 0 {
			w.m.left = g.skippedRows
			return nil
		}
		w.m.store.logger.DebugContext(ctx, "member digests changed since the merge began; comparing the left-out groups too",
			"system", w.m.system, "groups_changed", changed, "groups_left_out", len(g.skipped))
	}
	if g.skippedRows > 0 {
		if err := w.m.copySpool(ctx, tx, g.fallback); err != nil {
			return err
		}
	}
	w.m.staged += g.skippedRows
	g.restored = true
	return nil
}

// changed counts the left-out groups whose live members' digest is not the one their
// listing had.
func (g *digestGate) changed(ctx context.Context, tx pgx.Tx, system string) (int64, error) {
	ids := make([]string, len(g.skipped))
	ns, d1s, d2s := make([]int64, len(ids)), make([]int64, len(ids)), make([]int64, len(ids))
	for i, s := range g.skipped {
		ids[i], ns[i], d1s[i], d2s[i] = s.id, s.dig.n, int64(s.dig.d1), int64(s.dig.d2)
	}
	// As for Begin's digests: compiling the aggregate costs more than it saves. The
	// setting lasts for the rest of the transaction: the classification, whose hash
	// joins JIT does not pay for either.
	if _, err := tx.Exec(ctx, `SELECT set_config('jit', 'off', true)`); err != nil {
		return 0, fmt.Errorf("check the left-out groups' member digests: %w", err)
	}
	var n int64
	// One index scan per left-out group, whatever the statistics say (a mirror just loaded
	// has none, and a join the planner then takes for tiny can go quadratic).
	err := tx.QueryRow(ctx, `SELECT count(*) FROM unnest($4::text[], $5::bigint[], $6::bigint[], $7::bigint[]) AS s(group_id, n, d1, d2)
		CROSS JOIN LATERAL (SELECT `+digestSQL+` FROM memberships m
			WHERE m.system = $1 AND m.group_id = s.group_id AND m.deleted_at IS NULL) cur
		WHERE (cur.n, coalesce(cur.d1, 0), coalesce(cur.d2, 0)) IS DISTINCT FROM (s.n, s.d1, s.d2)`,
		system, g.seeds[0], g.seeds[1], ids, ns, d1s, d2s).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("check the left-out groups' member digests: %w", err)
	}
	return n, nil
}

// hashBytesExtended is Postgres' hash_bytes_extended (src/common/hashfn.c, Bob Jenkins'
// lookup3 with a 64-bit seed), which hashtextextended applies to a text's bytes under a
// deterministic collation, as a little-endian server computes it. A big-endian server
// hashes differently: no digest matches there, and every group is compared.
func hashBytesExtended(k string, seed uint64) uint64 {
	a := 0x9e3779b9 + uint32(len(k)) + 3923095
	b, c := a, a
	if seed != 0 {
		a += uint32(seed >> 32)
		b += uint32(seed)
		a, b, c = lookup3Mix(a, b, c)
	}
	for len(k) >= 12 {
		a += le32(k)
		b += le32(k[4:])
		c += le32(k[8:])
		a, b, c = lookup3Mix(a, b, c)
		k = k[12:]
	}
	// The last 11 bytes, little-endian; the lowest byte of c is left for the length.
	var tail [12]byte
	copy(tail[:], k)
	a += binary.LittleEndian.Uint32(tail[:])
	b += binary.LittleEndian.Uint32(tail[4:])
	c += binary.LittleEndian.Uint32(tail[8:]) << 8
	a, b, c = lookup3Final(a, b, c)
	return uint64(b)<<32 | uint64(c)
}

func le32(s string) uint32 {
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

func lookup3Mix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

func lookup3Final(a, b, c uint32) (uint32, uint32, uint32) {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return a, b, c
}
