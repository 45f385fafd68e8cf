package source

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

func TestSlotHealth(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "slot_health")
	conn := pgtest.Connect(t, dsn)
	pgtest.Exec(t, conn, "CREATE TABLE t (id int PRIMARY KEY)", "CREATE PUBLICATION health_a FOR TABLE t",
		"SELECT pg_create_logical_replication_slot('health_a', 'pgoutput')", "INSERT INTO t SELECT generate_series(1, 1000)")
	ctx := context.Background()

	h, err := SlotHealth(ctx, conn, "health_a")
	if err != nil {
		t.Fatal(err)
	}
	if !h.Exists || h.Slot != "health_a" || h.Active {
		t.Fatalf("health = %+v, want an existing inactive slot health_a", h)
	}
	if h.WALStatus != "reserved" || h.SafeWALSize != nil || h.MaxSlotWALKeepSize != -1 {
		t.Errorf("wal_status %q, safe_wal_size %v, max_slot_wal_keep_size %d: want reserved, no limit", h.WALStatus, h.SafeWALSize, h.MaxSlotWALKeepSize)
	}
	if h.RetainedBytes <= 0 {
		t.Errorf("retained WAL %d bytes after writes, want > 0", h.RetainedBytes)
	}
	if !h.OK() || h.Invalidated() || h.Warning() != "" || h.Err() != nil {
		t.Errorf("a fresh slot is not OK: %+v (warning %q)", h, h.Warning())
	}
	// Columns by version: each present exactly where the server has it.
	v := h.ServerVersion
	if got, want := h.Conflicting != nil, v >= 160000; got != want {
		t.Errorf("PostgreSQL %d: conflicting read = %v, want %v", v, got, want)
	}
	if got, want := h.Failover != nil, v >= 170000; got != want {
		t.Errorf("PostgreSQL %d: failover read = %v, want %v", v, got, want)
	}
	if v >= 170000 && h.InactiveSince == nil {
		t.Errorf("PostgreSQL %d: inactive_since not read for an inactive slot", v)
	}
	if v < 170000 && h.InactiveSince != nil {
		t.Errorf("PostgreSQL %d has no inactive_since, got %v", v, h.InactiveSince)
	}

	// The decoding counters: decode the slot once, so that it has some.
	pgtest.Exec(t, conn, "SELECT count(*) FROM pg_logical_slot_get_binary_changes('health_a', NULL, NULL, 'proto_version', '1', 'publication_names', 'health_a')")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if h, err = SlotHealth(ctx, conn, "health_a"); err != nil {
			t.Fatal(err)
		}
		// Statistics reach the view asynchronously.
		if h.Stats != nil && h.Stats.TotalTxns > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if h.Stats == nil || h.Stats.TotalTxns == 0 || h.Stats.TotalBytes == 0 {
		t.Errorf("pg_stat_replication_slots counters after decoding: %+v", h.Stats)
	}

	missing, err := SlotHealth(ctx, conn, "health_nope")
	if err != nil || missing.Exists || missing.Slot != "health_nope" {
		t.Errorf("missing slot: %+v, %v", missing, err)
	}
	all, err := SlotHealths(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, h := range all {
		found = found || h.Slot == "health_a"
	}
	if !found {
		t.Errorf("SlotHealths lacks health_a: %+v", all)
	}
}

// TestHealthRules checks the warning and invalidation rules on the values
// each PostgreSQL version reports.
func TestHealthRules(t *testing.T) {
	i64 := func(n int64) *int64 { return &n }
	yes := true
	cases := []struct {
		name        string
		h           Health
		risk, inval bool
		mention     string
	}{
		{"reserved", Health{WALStatus: "reserved", MaxSlotWALKeepSize: -1}, false, false, ""},
		{"extended, plenty left", Health{WALStatus: "extended", SafeWALSize: i64(900 << 20), MaxSlotWALKeepSize: 1 << 30}, false, false, ""},
		{"little left", Health{WALStatus: "extended", SafeWALSize: i64(100 << 20), MaxSlotWALKeepSize: 1 << 30}, true, false, "100.0 MiB more"},
		{"unreserved", Health{WALStatus: "unreserved", SafeWALSize: i64(-5), MaxSlotWALKeepSize: 1 << 20}, true, false, "next checkpoint"},
		{"idle, early", Health{WALStatus: "reserved", IdleTimeout: time.Hour, InactiveFor: time.Minute}, false, false, ""},
		{"idle, near the timeout", Health{WALStatus: "reserved", IdleTimeout: time.Hour, InactiveFor: 50 * time.Minute}, true, false, "idle_replication_slot_timeout"},
		{"lost (14, 15)", Health{WALStatus: "lost"}, false, true, "max_slot_wal_keep_size"},
		{"conflicting (16)", Health{WALStatus: "lost", Conflicting: &yes, InvalidationReason: "rows_removed or wal_level_insufficient"}, false, true, "rows_removed or wal_level_insufficient"},
		{"idle timeout (18)", Health{WALStatus: "lost", InvalidationReason: "idle_timeout"}, false, true, "idle_replication_slot_timeout"},
		{"rows removed (17)", Health{WALStatus: "lost", InvalidationReason: "rows_removed"}, false, true, "hot_standby_feedback"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.h.Slot, c.h.Exists = "s", true
			if c.h.AtRisk() != c.risk || c.h.Invalidated() != c.inval || c.h.OK() != (!c.risk && !c.inval) {
				t.Fatalf("at risk %v, invalidated %v, ok %v; want %v, %v", c.h.AtRisk(), c.h.Invalidated(), c.h.OK(), c.risk, c.inval)
			}
			msg := c.h.Warning()
			if err := c.h.Err(); err != nil {
				msg = err.Error()
				if !errors.Is(err, ErrGap) || !errors.Is(err, ErrSlotInvalidated) || !strings.Contains(msg, "pgfeed slot drop s") {
					t.Errorf("error %q: want a gap naming the way out", msg)
				}
			}
			if !strings.Contains(msg, c.mention) || strings.Contains(msg, "\n") {
				t.Errorf("message %q does not mention %q on one line", msg, c.mention)
			}
		})
	}
}

// TestSlotInvalidatedByKeepSize runs a stream on a server with a tiny
// max_slot_wal_keep_size: the stream warns while the slot is unreserved,
// the checkpoint that invalidates the slot ends the stream, and the next
// Open stops with one line that names the way out.
func TestSlotInvalidatedByKeepSize(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{Settings: map[string]string{
		"max_slot_wal_keep_size": "1MB",
		"wal_keep_size":          "0",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove() })
	dsn := c.DSN("")
	conn := pgtest.Connect(t, dsn)
	pgtest.Exec(t, conn, "CREATE TABLE t (id serial PRIMARY KEY, pad text)")

	logs := &lockedBuffer{}
	cfg := Config{DSN: dsn, Slot: "keep", Create: true, Tables: []string{"public.t"}, SlotCheckInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// WAL the stream never acks: the slot holds it, and past 1MB (one
	// segment switch) it is no longer reserved.
	for i := 0; ; i++ {
		pgtest.Exec(t, conn, "INSERT INTO t (pad) SELECT repeat('x', 100) FROM generate_series(1, 100)", "SELECT pg_switch_wal()")
		h, ok := s.Health()
		if ok && h.AtRisk() {
			if h.WALStatus != "unreserved" {
				t.Errorf("at risk with wal_status %q, want unreserved", h.WALStatus)
			}
			break
		}
		if i > 200 {
			t.Fatalf("the slot never came at risk: %+v", h)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), "the next checkpoint invalidates it") }, "the warning in the log: "+logs.String())
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("the warning is not logged as one: %s", logs.String())
	}

	// The checkpoint invalidates the slot and ends its walsender.
	pgtest.Exec(t, conn, "CHECKPOINT")
	for {
		_, err := s.Next(ctx)
		if err != nil {
			break
		}
	}
	s.Close()
	h, err := SlotHealth(ctx, conn, "keep")
	if err != nil || !h.Invalidated() {
		t.Fatalf("after the checkpoint: %+v, %v; want an invalidated slot", h, err)
	}

	cfg.Create, cfg.ExpectSlot = false, true
	_, err = Open(ctx, cfg)
	if !errors.Is(err, ErrGap) || !errors.Is(err, ErrSlotInvalidated) {
		t.Fatalf("Open of the invalidated slot: %v, want a gap", err)
	}
	var ue *UserError
	if !errors.As(err, &ue) || strings.Contains(ue.Msg, "\n") ||
		!strings.Contains(ue.Msg, `replication slot "keep" was invalidated`) || !strings.Contains(ue.Msg, "max_slot_wal_keep_size") || !strings.Contains(ue.Msg, "--resnapshot") {
		t.Errorf("error %q: want one line naming the slot, the cause and the way out", err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedBuffer is a log destination the test reads while the stream writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// PostgreSQL 18 invalidates a slot left inactive longer than
// idle_replication_slot_timeout: it is at risk before, and Open stops on it
// after, naming that setting.
func TestSlotInvalidatedByIdleTimeout(t *testing.T) {
	if major, err := pg.Major(); err != nil {
		t.Fatal(err)
	} else if major < 18 {
		t.Skipf("idle_replication_slot_timeout is new in PostgreSQL 18 (this is %d): run with PGFEED_PG_VERSION=18", major)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{BinDir: pg.BinDir, Settings: map[string]string{"idle_replication_slot_timeout": "'4s'"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove() })
	conn := pgtest.Connect(t, c.DSN(""))
	pgtest.Exec(t, conn, "CREATE PUBLICATION idle FOR ALL TABLES", "SELECT pg_create_logical_replication_slot('idle', 'pgoutput')")
	waitFor(t, func() bool {
		h, err := SlotHealth(ctx, conn, "idle")
		return err == nil && h.IdleTimeout == 4*time.Second && h.AtRisk() && strings.Contains(h.Warning(), "idle_replication_slot_timeout")
	}, "the idle slot at risk")
	waitFor(t, func() bool {
		pgtest.Exec(t, conn, "CHECKPOINT")
		h, err := SlotHealth(ctx, conn, "idle")
		return err == nil && h.InvalidationReason == "idle_timeout"
	}, "the idle slot invalidated")
	_, err = Open(ctx, Config{DSN: c.DSN(""), Slot: "idle"})
	if !errors.Is(err, ErrSlotInvalidated) || !strings.Contains(err.Error(), "inactive longer than idle_replication_slot_timeout") {
		t.Fatalf("Open of the idle-invalidated slot: %v", err)
	}
}
