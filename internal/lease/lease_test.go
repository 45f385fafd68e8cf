package lease

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

var pg *pgcluster.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg, pgcluster.Options{})) }

// syncBuffer is a log destination safe for the lease's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func fast(name string, log *syncBuffer) Options {
	o := Options{Key: KeyFor("lease_test", name), Name: name, RetryInterval: 50 * time.Millisecond, CheckInterval: 50 * time.Millisecond}
	if log != nil {
		o.Logger = slog.New(slog.NewTextHandler(log, nil))
	}
	return o
}

// acquireAsync starts Acquire in a goroutine; the channel yields its result.
func acquireAsync(ctx context.Context, dsn string, o Options) <-chan *Lease {
	ch := make(chan *Lease, 1)
	go func() {
		l, err := Acquire(ctx, dsn, o)
		if err != nil {
			l = nil
		}
		ch <- l
	}()
	return ch
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestStandbyWaitsUntilRelease(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "lease_release")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leader, err := Acquire(ctx, dsn, fast("pgfeed-a", nil))
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	o := fast("pgfeed-b", &log)
	o.Key = KeyFor("lease_test", "pgfeed-a") // the same pipeline
	standby := acquireAsync(ctx, dsn, o)
	waitFor(t, "the standby line", func() bool { return strings.Contains(log.String(), "waiting as standby") })
	if got := log.String(); !strings.Contains(got, "pgfeed-a (pid ") {
		t.Errorf("standby line does not name the leader: %s", got)
	}
	time.Sleep(200 * time.Millisecond) // several retries
	select {
	case l := <-standby:
		t.Fatalf("standby acquired a held lease (lease %v)", l)
	default:
	}
	if n := strings.Count(log.String(), "waiting as standby"); n != 1 {
		t.Errorf("standby logged %d times, want once", n)
	}
	leader.Release()
	leader.Release() // twice is harmless
	var l *Lease
	select {
	case l = <-standby:
	case <-time.After(30 * time.Second):
		t.Fatal("standby did not take over after release")
	}
	if l == nil {
		t.Fatal("standby's Acquire failed")
	}
	defer l.Release()
	if l.Err() != nil {
		t.Errorf("new leader's Err = %v", l.Err())
	}
}

func TestLeaderStepsDownWhenItsSessionIsTerminated(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "lease_terminate")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leader, err := Acquire(ctx, dsn, fast("pgfeed-a", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Release()
	o := fast("pgfeed-b", nil)
	o.Key = KeyFor("lease_test", "pgfeed-a")
	standby := acquireAsync(ctx, dsn, o)

	admin := pgtest.Connect(t, dsn)
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pgfeed-a'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminating the leader's session: %d sessions, %v", n, err)
	}
	select {
	case <-leader.Lost():
	case <-time.After(30 * time.Second):
		t.Fatal("leader did not notice that its lock session was terminated")
	}
	if err := leader.Err(); !errors.Is(err, ErrLost) {
		t.Errorf("Err = %v, want ErrLost", err)
	}
	select {
	case l := <-standby:
		if l == nil {
			t.Fatal("standby's Acquire failed")
		}
		l.Release()
	case <-time.After(30 * time.Second):
		t.Fatal("standby did not take over")
	}
}

func TestOtherKeysDoNotContend(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "lease_keys")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := Acquire(ctx, dsn, fast("one", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	b, err := Acquire(ctx, dsn, fast("two", nil))
	if err != nil {
		t.Fatalf("a lease of other slots waited or failed: %v", err)
	}
	b.Release()
}

func TestAcquireFailsOnAMissingDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Acquire(ctx, pg.DSN("no_such_database"), fast("x", nil))
	if err == nil || !strings.Contains(err.Error(), "no_such_database") {
		t.Fatalf("Acquire = %v, want an error naming the database", err)
	}
}

func TestAcquireStopsWithItsContext(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "lease_ctx")
	ctx, cancel := context.WithCancel(context.Background())
	a, err := Acquire(ctx, dsn, fast("held", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	waiting := acquireAsync(ctx, dsn, fast("held", nil))
	cancel()
	select {
	case l := <-waiting:
		if l != nil {
			t.Fatal("a cancelled Acquire returned a lease")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Acquire did not return after its context ended")
	}
}

func TestKeyFor(t *testing.T) {
	if KeyFor("a", "b") != KeyFor("b", "a") {
		t.Error("the key depends on the order of the slots")
	}
	if KeyFor("a") == KeyFor("b") || KeyFor("a", "b") == KeyFor("ab") {
		t.Error("different slots share a key")
	}
	for _, s := range []string{"a", "b", "pgfeed_main", ""} {
		if KeyFor(s) < 0 {
			t.Errorf("KeyFor(%q) is negative", s)
		}
	}
}
