package syncengine_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/airtable/airtablesim"
	"github.com/groupsync/groupsync/connectors/simorg"
	"github.com/groupsync/groupsync/state"
	"github.com/groupsync/groupsync/state/statetest"
	"github.com/groupsync/groupsync/syncengine"
)

// envWithStore is newEnv over a store the test opened itself, with mod applied to every
// connector's configuration.
func envWithStore(t *testing.T, store *state.Store, systems map[string]connectors.Kind, flows map[string]config.Flow,
	mod func(*connectors.SystemConfig)) *env {
	t.Helper()
	var specs []simorg.Spec
	for name, kind := range systems {
		specs = append(specs, simorg.Spec{Name: name, Kind: kind})
	}
	org, err := simorg.Start(specs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(org.Close)
	cfg := &config.Config{Systems: map[string]config.System{}, Flows: flows}
	for name, s := range org.Systems {
		cfg.Systems[name] = config.System{Kind: s.Kind, BaseURL: s.Config.BaseURL}
	}
	e := &env{t: t, org: org, store: store, cfg: cfg}
	e.conns, err = org.Open(nil, nil, func(c *connectors.SystemConfig) {
		c.MaxAttempts = 2
		if mod != nil {
			mod(c)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	e.eng = e.newEngine("replica-a")
	return e
}

// storeNamed opens a migrated store on a fresh schema whose connections carry
// application_name app, so the test can find them in pg_stat_activity.
func storeNamed(t *testing.T, app string, maxConns int32) *state.Store {
	t.Helper()
	u := statetest.URL()
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	s, err := state.Open(t.Context(), u+sep+"application_name="+app, state.Options{Schema: statetest.Schema(t), MaxConns: maxConns})
	if err != nil {
		t.Fatalf("open the mirror: %v (start Postgres on 127.0.0.1:5432 or set GROUPSYNC_TEST_DATABASE_URL)", err)
	}
	t.Cleanup(s.Close)
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// No merge holds a pooled connection while its listing runs, so every path works with a
// pool of one connection: Airtable's inline listing (its group merge and membership merge
// open at once) and two flows pulling the same source at the same time. Before, with one
// connection the inline path waited forever for a second one (every time); with two, it
// did so whenever the other puller's group merge took the second connection and waited on
// the merge lock in between the first puller's two Begins (now and then).
func TestPullsNeedNoSpareConnection(t *testing.T) {
	t.Parallel()
	for _, maxConns := range []int32{1, 2} {
		t.Run(fmt.Sprintf("max_conns=%d", maxConns), func(t *testing.T) {
			t.Parallel()
			store := statetest.StoreWithOptions(t, state.Options{MaxConns: maxConns})
			e := envWithStore(t, store, map[string]connectors.Kind{"airtable": connectors.KindAirtable,
				"devrev": connectors.KindDevRev, "selfcommunity": connectors.KindSelfCommunity},
				map[string]config.Flow{"f": defaultFlow("airtable", "devrev"), "g": defaultFlow("airtable", "selfcommunity")}, nil)
			ps := people(20)
			seedSource(e.sim("airtable"), ps, 6, 5)
			seedAccounts(e.sim("devrev"), ps)
			seedAccounts(e.sim("selfcommunity"), ps)

			// A hang fails here, at the deadline, instead of at the test binary's timeout.
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			other := e.newEngine("replica-b")
			var wg sync.WaitGroup
			results := map[string]*syncengine.Result{}
			errs := map[string]error{}
			var mu sync.Mutex
			for flow, eng := range map[string]*syncengine.Engine{"f": e.eng, "g": other} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := eng.RunFlow(ctx, flow, syncengine.RunOptions{Trigger: syncengine.TriggerOnce})
					mu.Lock()
					results[flow], errs[flow] = res, err
					mu.Unlock()
				}()
			}
			wg.Wait()
			if ctx.Err() != nil {
				t.Fatalf("the two runs did not finish within the deadline with %d pooled connections", maxConns)
			}
			for _, flow := range []string{"f", "g"} {
				if errs[flow] != nil {
					t.Fatalf("flow %s: %v", flow, errs[flow])
				}
				e.mustStatus(results[flow], state.RunSucceeded)
			}
			e.assertMirrored("airtable", "devrev")
			e.assertMirrored("airtable", "selfcommunity")
		})
	}
}

// Invariant 7: a listing whose pages take seconds holds no transaction, no snapshot and no lock between
// pages: the mirror's connections sit idle while the source is slow, so a slow API cannot
// hold back vacuum (the xmin horizon) or block other merges.
func TestInvariantNoTransactionAcrossAnHTTPCall(t *testing.T) {
	t.Parallel()
	app := "gs-slow-" + fmt.Sprint(time.Now().UnixNano())
	store := storeNamed(t, app, 4)
	// One group fetch at a time, so three slow pages are three intervals between pages.
	e := envWithStore(t, store, map[string]connectors.Kind{"airtable": connectors.KindAirtable, "devrev": connectors.KindDevRev},
		map[string]config.Flow{"f": defaultFlow("airtable", "devrev")},
		func(c *connectors.SystemConfig) { c.Concurrency = 1 })
	ps := people(12)
	seedSource(e.sim("airtable"), ps, 3, 4)
	seedAccounts(e.sim("devrev"), ps)
	src := e.sim("airtable")
	// Pages of 2.5 s: a transaction held across one lasts at least that long, while the
	// short transactions of the merges stay well under 2 s even on a loaded 2-core machine.
	src.Faults().SlowNext(airtablesim.RouteGroup, 3, 2500*time.Millisecond)

	done := make(chan *syncengine.Result, 1)
	go func() { done <- e.run("f", syncengine.RunOptions{}) }()

	// Watch from another pool while the first two slow pages are outstanding (the third is
	// requested once the second is answered): the merge has begun and written pages.
	watcher := statetest.Store(t)
	deadline := time.Now().Add(30 * time.Second)
	var worst connSample
	samples, maxXmin, locks := 0, 0, 0
	for {
		n := src.Counter().Count(airtablesim.RouteGroup)
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the listing never reached its third page")
		}
		if n >= 1 {
			s := sampleConns(t, watcher, app)
			samples++
			if s.idleInXact > worst.idleInXact || s.xact > worst.xact {
				worst = s
			}
			maxXmin, locks = max(maxXmin, s.xminAge), locks+s.locks
		}
		time.Sleep(50 * time.Millisecond) // sampling interval, not a wait for state
	}
	res := <-done
	e.mustStatus(res, state.RunSucceeded)
	t.Logf("%d samples between pages: longest idle in transaction %.2fs, longest transaction %.2fs (%s), largest backend_xmin age %d xids, %d locks held",
		samples, worst.idleInXact, worst.xact, worst.what, maxXmin, locks)
	if samples < 10 {
		t.Fatalf("only %d samples between pages: the listing was not slow enough to tell", samples)
	}
	// A transaction held across a page sits idle in transaction for the page's 2.5 s (the
	// old merge did so from Begin to Commit, ≥ 5 s here). A statement that is merely slow
	// on a loaded machine is active, not idle, and is no sign of a transaction over HTTP.
	if worst.idleInXact > 2 || locks > 0 {
		t.Fatalf("between pages a mirror connection sat idle in a transaction for %.2fs (%d lock samples; %s), want none over 2s",
			worst.idleInXact, locks, worst.what)
	}
	e.assertMirrored("airtable", "devrev")
}

// connSample is one look at the connections of application app in pg_stat_activity.
type connSample struct {
	xact       float64 // the longest open transaction, seconds
	idleInXact float64 // the longest wait inside a transaction for the client, seconds
	xminAge    int     // the oldest snapshot held, in transaction ids
	locks      int     // locks held by a connection idle in a transaction for over 2 s
	what       string  // the longest transaction's state and last statement
}

func sampleConns(t *testing.T, watcher *state.Store, app string) connSample {
	t.Helper()
	var s connSample
	if err := watcher.Pool().QueryRow(t.Context(), `
		WITH a AS (
		  SELECT pid, state, query, coalesce(extract(epoch FROM now() - xact_start), 0) AS xact,
		         CASE WHEN state LIKE 'idle in transaction%' THEN extract(epoch FROM now() - state_change) ELSE 0 END AS idle,
		         coalesce(age(backend_xmin), 0) AS xmin_age
		    FROM pg_stat_activity WHERE application_name = $1)
		SELECT coalesce(max(xact), 0), coalesce(max(idle), 0), coalesce(max(xmin_age), 0),
		       (SELECT count(*) FROM pg_locks l JOIN a USING (pid)
		         WHERE l.granted AND l.locktype IN ('advisory', 'relation') AND a.idle > 2),
		       coalesce((SELECT state || ': ' || left(query, 120) FROM a ORDER BY xact DESC LIMIT 1), '')
		  FROM a`, app).Scan(&s.xact, &s.idleInXact, &s.xminAge, &s.locks, &s.what); err != nil {
		t.Fatal(err)
	}
	return s
}
