package e2e

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/groupsync/groupsync/state/statetest"
)

// pgbouncerFix is what to do when the suite cannot start PgBouncer.
const pgbouncerFix = "install PgBouncer from Debian's packages (apt-get install pgbouncer); .ci/run does"

// bouncer is a real PgBouncer in transaction pooling mode in front of the test Postgres.
type bouncer struct {
	url string // the test database, reached through PgBouncer
	dir string
}

// startPgBouncer starts PgBouncer (transaction mode, a server pool smaller than the clients'
// pools, so server connections are really shared between groupsync sessions) and returns
// the URL of the test database through it. It refuses to run as root, so under root (CI)
// it runs as the postgres user.
func startPgBouncer(t *testing.T, serverPool int) *bouncer {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		t.Fatalf("pgbouncer not found: %s", pgbouncerFix)
	}
	upstream, err := url.Parse(statetest.URL())
	if err != nil {
		t.Fatalf("test database URL does not parse: %v", err)
	}
	// A private directory under /tmp, which the postgres user can traverse (t.TempDir's
	// parent is private to this user).
	dir, err := os.MkdirTemp("", "groupsync-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port := freePort(t)
	upHost, upPort := upstream.Hostname(), upstream.Port()
	if upPort == "" {
		upPort = "5432"
	}
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s/userlist.txt
pool_mode = transaction
default_pool_size = %d
max_client_conn = 200
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
`, upHost, upPort, port, dir, serverPool, dir, dir)
	user := upstream.User.Username()
	if user == "" {
		user = "postgres"
	}
	if err := os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "userlist.txt"), fmt.Appendf(nil, "%q \"\"\n", user), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	if os.Geteuid() == 0 {
		runAsPostgres(t, cmd, dir)
	}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting pgbouncer: %v (%s)", err, pgbouncerFix)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	through := *upstream
	through.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	b := &bouncer{url: through.String(), dir: dir}
	b.waitReady(t, out)
	return b
}

// runAsPostgres makes cmd run as the postgres user and gives it dir.
func runAsPostgres(t *testing.T, cmd *exec.Cmd, dir string) {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root, pgbouncer needs another user and there is no postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, p := range []string{dir, filepath.Join(dir, "pgbouncer.ini"), filepath.Join(dir, "userlist.txt")} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (b *bouncer) waitReady(t *testing.T, out *strings.Builder) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		conn, err := pgx.Connect(ctx, b.url)
		if err == nil {
			_, err = conn.Exec(ctx, `SELECT 1`)
			_ = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(b.dir, "pgbouncer.log"))
			t.Fatalf("pgbouncer did not accept connections within 15 s: %v\n%s\n%s", err, out.String(), tail(string(log), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// log is what PgBouncer logged so far.
func (b *bouncer) log() string {
	data, _ := os.ReadFile(filepath.Join(b.dir, "pgbouncer.log"))
	return string(data)
}

// TestBehindPgBouncerTransactionMode runs what operators run — migrate, sync --once, plan and
// apply, and two daemon replicas — through a real PgBouncer in transaction pooling mode
// whose server pool (2) is smaller than the replicas' client pools (4 each), so every
// transaction may land on another server connection. Before the mirror kept no session
// state, this failed at connection start (`unsupported startup parameter: temp_buffers`),
// then with `relation "leases" does not exist`.
func TestBehindPgBouncerTransactionMode(t *testing.T) {
	t.Parallel()
	b := startPgBouncer(t, 2)
	o, cfg := daemonOrg(t, "@every 1s", b.url)

	if p := start(t, cfg, "migrate"); p.wait(60*time.Second) != 0 {
		t.Fatalf("migrate through pgbouncer failed; stderr:\n%s\npgbouncer log:\n%s", tail(p.stderr.String(), 3000), tail(b.log(), 2000))
	}
	// plan, then apply exactly that plan: the first writes of the flow.
	pl := start(t, cfg, "plan")
	if code := pl.wait(60 * time.Second); code != 0 {
		t.Fatalf("plan through pgbouncer exited %d; stderr:\n%s\npgbouncer log:\n%s", code, tail(pl.stderr.String(), 3000), tail(b.log(), 2000))
	}
	planned := o.queryInt(`SELECT coalesce(max(id), 0) FROM runs WHERE status = 'planned'`)
	if planned == 0 {
		t.Fatalf("plan stored no planned run; stdout:\n%s", tail(pl.stdout.String(), 2000))
	}
	if n := o.queryInt(`SELECT count(*) FROM changes WHERE run_id = $1 AND status = 'planned'`, planned); n == 0 {
		t.Fatal("the plan holds no change: the test proves nothing")
	}
	ap := start(t, cfg, "apply", strconv.FormatInt(planned, 10))
	if code := ap.wait(60 * time.Second); code != 0 {
		t.Fatalf("apply %d through pgbouncer exited %d; stderr:\n%s", planned, code, tail(ap.stderr.String(), 3000))
	}
	o.assertMirrored("airtable", "devrev")

	// A one-shot sync afterwards finds nothing to do.
	if code, p := runOnce(t, cfg); code != 0 {
		t.Fatalf("sync --once through pgbouncer exited %d; stderr:\n%s", code, tail(p.stderr.String(), 3000))
	}
	last := o.queryInt(`SELECT max(id) FROM runs`)
	if n := o.queryInt(`SELECT count(*) FROM changes WHERE run_id = $1 AND status <> 'skipped'`, last); n != 0 {
		t.Fatalf("the sync after apply planned %d changes, want none", n)
	}

	// Two replicas share the schedule through the pooler: each tick runs once.
	before := o.queryInt(`SELECT count(*) FROM runs`)
	ds := []*proc{start(t, cfg, "sync"), start(t, cfg, "sync")}
	eventually(t, 60*time.Second, "four scheduled runs through pgbouncer", func() bool {
		return o.queryInt(`SELECT count(*) FROM runs WHERE trigger = 'schedule' AND finished_at IS NOT NULL`) >= 4
	})
	for _, d := range ds {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, d := range ds {
		if code := d.wait(30 * time.Second); code != 0 {
			t.Fatalf("a replica exited %d; stderr:\n%s", code, tail(d.stderr.String(), 3000))
		}
	}
	if n := o.queryInt(`SELECT count(*) FROM (SELECT tick FROM runs WHERE tick IS NOT NULL GROUP BY flow, tick HAVING count(*) > 1) d`); n != 0 {
		t.Fatalf("%d ticks ran more than once through pgbouncer", n)
	}
	if n := o.queryInt(`SELECT count(*) FROM runs WHERE id > $1 AND status NOT IN ('succeeded')`, before); n != 0 {
		t.Fatalf("%d scheduled runs through pgbouncer did not succeed", n)
	}
	for _, d := range ds {
		if s := d.stderr.String(); strings.Contains(s, "prepared statement") || strings.Contains(s, "does not exist") {
			t.Fatalf("a replica hit session-state errors through pgbouncer:\n%s", tail(s, 3000))
		}
	}
	o.assertMirrored("airtable", "devrev")
	o.assertNoDuplicates("devrev")
}
