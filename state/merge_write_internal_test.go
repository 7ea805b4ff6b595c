package state

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/groupsync/groupsync/connectors"
)

// BenchmarkMembershipWrite measures the Go side of a spooled first load alone (record
// checks, duplicate detection, encoding, the spool file), the part of BenchmarkMembershipMerge
// that no database time hides: 2,000 pages of 100 members, as there. ns/row is per row.
func BenchmarkMembershipWrite(b *testing.B) {
	const groups, perGroup = 2000, 100
	pages := make([][]connectors.Member, groups)
	known := map[string]struct{}{}
	for g := range groups {
		gid := fmt.Sprintf("grp%05d", g)
		known[gid] = struct{}{}
		for k := range perGroup {
			n := g*perGroup + k
			pages[g] = append(pages[g], connectors.Member{GroupID: gid, AccountID: fmt.Sprintf("usr%07d", n),
				Type: "user", Role: "member", Email: fmt.Sprintf("user%07d@example.com", n)})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		sp, err := newSpool()
		if err != nil {
			b.Fatal(err)
		}
		w := &MembershipMerge{m: &merge{kind: "membership", system: "bench", spool: sp, maxKeys: maxTrackedKeys}, known: known}
		for _, p := range pages {
			if err := w.Write(b.Context(), p); err != nil {
				b.Fatal(err)
			}
			w.CompleteGroup(p[0].GroupID)
		}
		if w.m.dups || w.m.unfit {
			b.Fatalf("dups %v unfit %v", w.m.dups, w.m.unfit)
		}
		sp.close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*groups*perGroup), "ns/row")
}

// The spool's two buffers alternate between the Writes and its writer: what rows reads
// back is every page in order, however many times the buffers changed hands.
func TestSpoolReadsBackEveryPageInOrder(t *testing.T) {
	sp, err := newSpool()
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	var want []byte
	for i := range 5000 { // about 5 MB: five buffers' worth
		page := make(memberRows, 10)
		for k := range page {
			page[k] = memberRow{seq: int64(i*10 + k), group: fmt.Sprintf("g%d", i), account: fmt.Sprintf("a%d", k),
				typ: "user", role: "member", email: strings.Repeat("x", 60)}
		}
		want = page.appendCopy(want)
		if err := sp.write(page); err != nil {
			t.Fatal(err)
		}
	}
	r, err := sp.rows()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, want the %d written", len(got), len(want))
	}
	sp.close() // after rows, and again by the defer: both safe
}
