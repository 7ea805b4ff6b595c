package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/registry"
	"github.com/groupsync/groupsync/secret"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
)

// The RSS benchmark re-runs this test binary as a child that only pulls (the simulator
// stays in the parent), so the child's peak RSS is the sync's own, per tenant size.
const (
	envChild  = "GROUPSYNC_BENCH_RSS_CHILD"
	envURL    = "GROUPSYNC_BENCH_RSS_URL"
	envToken  = "GROUPSYNC_BENCH_RSS_TOKEN"
	envSchema = "GROUPSYNC_BENCH_RSS_SCHEMA"
	// envHeapProfile, when set in the benchmark's environment, makes each child write the
	// heap profile taken at its peak in-use heap to this path plus the size name.
	envHeapProfile = "GROUPSYNC_BENCH_RSS_HEAPPROF"
)

// profilePeakHeap samples the in-use heap every 50 ms and writes a heap profile whenever
// it reaches a new peak, so the last profile written shows what the peak held.
func profilePeakHeap(path string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var peak uint64
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse <= peak+peak/20 {
				continue
			}
			peak = ms.HeapInuse
			if f, err := os.Create(path); err == nil {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}
	}()
	return func() { close(done); <-finished }
}

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		if err := rssChild(); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// rssChild pulls the simulated DevRev tenant into the schema and prints its peak RSS.
func rssChild() error {
	ctx := context.Background()
	conn, err := registry.Open(connectors.SystemConfig{Name: "devrev", Kind: connectors.KindDevRev,
		BaseURL: os.Getenv(envURL), Token: secret.New(os.Getenv(envToken)),
		RateLimit: 1e6, Burst: 1000, PageSize: pageSize}, connectors.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	st, err := state.Open(ctx, statetest.URL(), state.Options{Schema: os.Getenv(envSchema), MaxConns: 4})
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		return err
	}
	if path := os.Getenv(envHeapProfile); path != "" {
		stop := profilePeakHeap(path)
		defer stop()
	}
	c, err := pull(ctx, st, conn, "devrev", 4)
	if err != nil {
		return err
	}
	fmt.Printf("inserted %d\nVmHWM %d\n", c.Inserted, peakRSSKiB())
	return nil
}

func peakRSSKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkPeakRSS pulls 100k and 1M memberships (1k and 10k groups × 100 over 100k
// accounts), each in a child process, and reports both peaks and their ratio (target
// 1M/100k <= 1.5: memory stays flat as tenants grow).
func BenchmarkPeakRSS(b *testing.B) {
	for range b.N {
		peaks := map[string]int64{}
		for _, sz := range []size{{"100k", 1000, 100, 100_000}, {"1M", 10_000, 100, 100_000}} {
			b.StopTimer()
			src := newSource(b, sz)
			schema := statetest.Schema(b)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envChild+"=1", envURL+"="+src.cfg.BaseURL,
				envToken+"="+src.cfg.Token.Reveal(), envSchema+"="+schema)
			if p := os.Getenv(envHeapProfile); p != "" {
				cmd.Env = append(cmd.Env, envHeapProfile+"="+p+"."+sz.name)
			}
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			b.StartTimer()
			start := time.Now()
			err := cmd.Run()
			b.StopTimer()
			if err != nil {
				b.Fatalf("%s child: %v\n%s", sz.name, err, errb.String())
			}
			var inserted, kib int64
			if _, err := fmt.Sscanf(out.String(), "inserted %d\nVmHWM %d", &inserted, &kib); err != nil {
				b.Fatalf("%s child output %q: %v", sz.name, out.String(), err)
			}
			if inserted != int64(src.tenant.Memberships()) {
				b.Fatalf("%s child inserted %d, want %d", sz.name, inserted, src.tenant.Memberships())
			}
			peaks[sz.name] = kib
			b.Logf("%s: %d memberships pulled in %s, peak RSS %d MiB", sz.name, inserted, time.Since(start).Round(time.Millisecond), kib>>10)
			src.org.Close()
		}
		b.ReportMetric(float64(peaks["100k"])/1024, "rss_100k_MiB")
		b.ReportMetric(float64(peaks["1M"])/1024, "rss_1M_MiB")
		b.ReportMetric(float64(peaks["1M"])/float64(peaks["100k"]), "rss_1M/100k")
	}
}
