package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink/file"
)

// standbyConfig is one configuration for every pgfeed of an active/passive
// pair, as on two machines: checkpoints and lease in the source database.
// Each process gets its own output folder through ${OUT}, so that the test
// knows which process delivered what, and when.
const standbyConfig = `checkpoint = "postgres"
[ha]
lease = "postgres"
[log]
level = "debug"
[sources.main]
dsn = "${TEST_DSN}"
slot = %q
create = true
tables = ["public.items", "public.marker"]
[sinks.files]
type = "file"
sources = ["main"]
path = "${OUT}"
rotate_bytes = "256KiB"
`

// pairMember is one started `pgfeed run` of the pair.
type pairMember struct {
	cmd    *exec.Cmd
	out    string // its file sink's folder
	stderr *syncBuffer
	waited chan error // receives cmd.Wait's result once
}

// startMember starts `pgfeed run` with its own output folder under dir.
func startMember(t *testing.T, cfgPath, dsn, out string) *pairMember {
	t.Helper()
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "TEST_DSN="+dsn, "OUT="+out)
	cmd.Dir = filepath.Dir(cfgPath) // where a local checkpoint file would go: there must be none
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &pairMember{cmd: cmd, out: out, stderr: stderr, waited: make(chan error, 1)}
	go func() { m.waited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-m.waited
		m.waited <- nil
		if t.Failed() {
			t.Logf("pgfeed run (%s) stderr:\n%s", filepath.Base(out), stderr.String())
		}
	})
	return m
}

// delivered reports whether m's sink holds a complete event line.
func (m *pairMember) delivered() bool {
	files, _ := file.Files(m.out, "")
	for _, f := range files {
		if b, _ := os.ReadFile(f); slices.Contains(b, '\n') {
			return true
		}
	}
	return false
}

// pollUntil polls cond every 10ms for up to two minutes.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// applyMembers applies the output of members, in the order they led.
func applyMembers(t *testing.T, members []*pairMember) (map[int]map[string]any, int) {
	t.Helper()
	got := map[int]map[string]any{}
	events := 0
	for _, m := range members {
		files, err := file.Files(m.out, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			events += applyOutput(t, f, got)
		}
	}
	return got, events
}

func setupPair(t *testing.T, name string) (dsn, cfgPath, dir string) {
	t.Helper()
	dsn = pgtest.CreateDB(t, pg, name)
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)", "CREATE TABLE marker(id int PRIMARY KEY)")
	dir = t.TempDir()
	cfgPath = filepath.Join(dir, "pgfeed.toml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, standbyConfig, name), 0o644); err != nil {
		t.Fatal(err)
	}
	return dsn, cfgPath, dir
}

func startWriters(t *testing.T, dsn string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			writeRandomly(ctx, t, dsn, rand.New(rand.NewPCG(seed, 12)))
		}(uint64(w))
	}
	// Also on a failed test: a writer must not report after it ended.
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// finish inserts a marker, waits for the leader to deliver it, stops every
// member still running with SIGTERM (a waiting standby too: exit 0) and
// checks the state invariant over the output of all, in the order they led.
func finish(t *testing.T, dsn string, leader *pairMember, running, all []*pairMember) {
	t.Helper()
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "INSERT INTO marker VALUES (1)")
	pollUntil(t, "the marker in the last leader's sink", func() bool { return markerRowIn(leader.out, 1) })
	for _, m := range running {
		if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := <-m.waited; err != nil {
			t.Errorf("pgfeed run (%s) after SIGTERM: %v (want exit 0)", filepath.Base(m.out), err)
		}
		m.waited <- nil
	}
	// The pair kept its checkpoints in Postgres, where each leader found
	// what the previous one left: after the clean stop, the sink's
	// position there covers the marker, and no leader fell back to a
	// local file.
	markerCommit := markerCommitLSN(t, leader.out, 1)
	var covered bool
	err := db.QueryRow(context.Background(), `SELECT lsn >= $1::pg_lsn FROM pgfeed.checkpoint_positions
		WHERE source = 'main' AND sink = 'files'`, markerCommit).Scan(&covered)
	if err != nil || !covered {
		t.Errorf("the sink's checkpoint in pgfeed.checkpoint_positions does not cover the marker at %s (covered %v, err %v)", markerCommit, covered, err)
	}
	if local, _ := filepath.Glob(filepath.Join(filepath.Dir(leader.out), "*.db")); len(local) > 0 {
		t.Errorf("a local checkpoint file was written: %v", local)
	}
	got, events := applyMembers(t, all)
	want := itemsInTable(t, db)
	if len(want) == 0 || events < 200 {
		t.Fatalf("the workload was too small to mean anything: %d rows, %d events", len(want), events)
	}
	if !reflect.DeepEqual(got, want) {
		reportDiff(t, got, want)
		t.Fatalf("state invariant broken across the pair: %d rows from the sinks, %d in the table", len(got), len(want))
	}
	t.Logf("%d events from %d leaders, %d rows", events, len(all), len(want))
}

// Two `pgfeed run` with one config: the leader is killed with SIGKILL five
// times under concurrent writers, each time the standby takes over from the
// checkpoint in Postgres and the killed one is started again as the new
// standby. What all leaders delivered, applied in order, is the table.
// The takeover time (kill to first event delivered by the new leader) is
// logged for each round; it is measured, never asserted.
func TestStandbyTakesOverAfterKill9(t *testing.T) {
	dsn, cfgPath, dir := setupPair(t, "standby_kill")
	next := 0
	start := func() *pairMember {
		next++
		return startMember(t, cfgPath, dsn, filepath.Join(dir, fmt.Sprintf("out-%d", next)))
	}
	leader := start()
	// The first one creates the slot and leads; nothing is written before
	// it streams, so every change is in the slot.
	firstDelivery(t, dsn, leader)
	standby := start()
	pollUntil(t, "the second pgfeed to wait as standby", func() bool { return strings.Contains(standby.stderr.String(), "standby") })
	if standby.delivered() {
		t.Fatal("the standby delivered events while the leader held the lease")
	}
	all := []*pairMember{leader}
	stopWriters := startWriters(t, dsn)
	var takeovers []time.Duration
	for round := 1; round <= 5; round++ {
		time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
		killed := time.Now()
		if err := leader.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		pollUntil(t, fmt.Sprintf("round %d: the standby to take over", round), standby.delivered)
		took := time.Since(killed)
		takeovers = append(takeovers, took)
		t.Logf("round %d: takeover in %v (kill -9 to first event from the new leader)", round, took.Round(time.Millisecond))
		leader, standby = standby, nil
		all = append(all, leader)
		// Started only now that the new leader holds the lease, so that
		// it cannot win the race for it: it must wait as standby.
		standby = start()
		pollUntil(t, fmt.Sprintf("round %d: the restarted pgfeed to wait as standby", round), func() bool {
			return strings.Contains(standby.stderr.String(), "standby")
		})
	}
	stopWriters()
	if standby.delivered() {
		t.Fatal("the last standby delivered events while the leader held the lease")
	}
	finish(t, dsn, leader, []*pairMember{leader, standby}, all)
	slices.Sort(takeovers)
	t.Logf("takeover over %d rounds: min %v, median %v, max %v", len(takeovers),
		takeovers[0].Round(time.Millisecond), takeovers[len(takeovers)/2].Round(time.Millisecond), takeovers[len(takeovers)-1].Round(time.Millisecond))
}

// A leader whose lock session is terminated (pg_terminate_backend, as when
// the connection is cut) has lost the lease: it stops streaming and exits
// with one line saying so, and the standby takes over from the checkpoint.
func TestStandbyTakesOverWhenLeaderLosesItsLockSession(t *testing.T) {
	dsn, cfgPath, dir := setupPair(t, "standby_terminate")
	leader := startMember(t, cfgPath, dsn, filepath.Join(dir, "out-1"))
	db := pgtest.Connect(t, dsn)
	firstDelivery(t, dsn, leader)
	standby := startMember(t, cfgPath, dsn, filepath.Join(dir, "out-2"))
	pollUntil(t, "the second pgfeed to wait as standby", func() bool { return strings.Contains(standby.stderr.String(), "standby") })
	stopWriters := startWriters(t, dsn)
	time.Sleep(time.Second)

	// The lease is the only session-level advisory lock in this database.
	var n int
	err := db.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("terminating the leader's lock session: %d sessions, %v", n, err)
	}
	select {
	case err := <-leader.waited:
		leader.waited <- err
		if err == nil {
			t.Fatal("the leader exited 0 after losing its lease; want a failure")
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the leader kept running after its lock session was terminated")
	}
	if s := leader.stderr.String(); !strings.Contains(strings.ToLower(lastLine(s)), "lease") {
		t.Errorf("the leader's last line does not say it lost the lease: %q", lastLine(s))
	}
	pollUntil(t, "the standby to take over", standby.delivered)
	stopWriters()
	finish(t, dsn, standby, []*pairMember{standby}, []*pairMember{leader, standby})
}

// firstDelivery touches marker row 0 until m delivers an event: the slot
// is created by m, after it starts, and a change made before would not be
// in it.
func firstDelivery(t *testing.T, dsn string, m *pairMember) {
	t.Helper()
	db := pgtest.Connect(t, dsn)
	pollUntil(t, "the first leader to deliver", func() bool {
		pgtest.Exec(t, db, "INSERT INTO marker VALUES (0) ON CONFLICT (id) DO UPDATE SET id = 0")
		time.Sleep(100 * time.Millisecond)
		return m.delivered()
	})
}

// markerRowIn reports whether a file sink in dir delivered the insert of
// marker row id.
func markerRowIn(dir string, id int) bool {
	files, _ := file.Files(dir, "")
	want := fmt.Sprintf(`"after":{"id":%d}`, id)
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `"table":"marker"`) && strings.Contains(line, want) {
				return true
			}
		}
	}
	return false
}

// markerCommitLSN is the commit_lsn of the delivered insert of marker row id.
func markerCommitLSN(t *testing.T, dir string, id int) string {
	t.Helper()
	files, _ := file.Files(dir, "")
	want := fmt.Sprintf(`"after":{"id":%d}`, id)
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, `"table":"marker"`) || !strings.Contains(line, want) {
				continue
			}
			var e struct {
				CommitLSN string `json:"commit_lsn"`
			}
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatal(err)
			}
			return e.CommitLSN
		}
	}
	t.Fatalf("no insert of marker %d in %s", id, dir)
	return ""
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
