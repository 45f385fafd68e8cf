package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// commitsIn lists the commit positions of the events a run printed.
func commitsIn(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct {
			CommitLSN string `json:"commit_lsn"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.CommitLSN != "" {
			out[e.CommitLSN] = true
		}
	}
	return out
}

// Item 17 of "nothing lost": after a clean stop (SIGTERM, or --endpos),
// everything printed is confirmed, so a restart prints none of it again.
func TestStreamCleanStopConfirmsWhatItPrinted(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "cleanstop")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)")
	args := []string{"stream", "--dsn", dsn, "--slot", "cleanstop", "--tables", "public.items"}
	if code, _, stderr := runCLI(t, append(args, "--create", "--endpos", "0/1")...); code != 0 {
		t.Fatalf("creating slot: %s", stderr)
	}
	pgtest.Exec(t, db, `DO $$ BEGIN FOR i IN 1..20000 LOOP INSERT INTO items VALUES (i, i, 'x'); COMMIT; END LOOP; END $$`)
	dir := t.TempDir()

	// SIGTERM in the middle of the backlog.
	first := filepath.Join(dir, "first.jsonl")
	cmd := streamProcess(t, first, args...)
	waitFor(t, "a part of the backlog", func() bool { st, _ := os.Stat(first); return st != nil && st.Size() > 200_000 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	printed := commitsIn(t, first)

	// Then --endpos at the end of the WAL, twice.
	var end string
	if err := db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(dir, "second.jsonl")
	if err := streamProcess(t, second, append(args, "--endpos", end)...).Wait(); err != nil {
		t.Fatalf("second run: %v", err)
	}
	again := commitsIn(t, second)
	var last string
	for lsn := range printed {
		if l, _ := event.ParseLSN(lsn); l > mustLSN(last) {
			last = lsn
		}
	}
	var confirmed string
	_ = db.QueryRow(context.Background(), "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'cleanstop'").Scan(&confirmed)
	for lsn := range again {
		if printed[lsn] {
			t.Fatalf("transaction %s printed before the clean stop came again (%d printed, the last at %s; %d in the second run, which confirmed up to %s)", lsn, len(printed), last, len(again), confirmed)
		}
	}
	if len(printed)+len(again) < 20000 {
		t.Fatalf("%d + %d transactions printed, want 20000", len(printed), len(again))
	}
	third := filepath.Join(dir, "third.jsonl")
	if err := streamProcess(t, third, append(args, "--endpos", end)...).Wait(); err != nil {
		t.Fatalf("third run: %v", err)
	}
	if n := len(commitsIn(t, third)); n != 0 {
		t.Fatalf("after a run to --endpos %s, the same run printed %d transactions again", end, n)
	}
}

func mustLSN(s string) event.LSN {
	l, _ := event.ParseLSN(s)
	return l
}

// waitFor polls until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Item 16: SIGTERM stops pgfeed stream even while stdout is blocked (a
// consumer that stopped reading), in the snapshot and while streaming,
// and nothing it could not write is lost.
func TestStreamStopsWithStdoutBlocked(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "blockedout")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)",
		"INSERT INTO items SELECT g, g, repeat('x', 200) FROM generate_series(1, 20000) g")
	args := []string{"stream", "--dsn", dsn, "--slot", "blockedout", "--tables", "public.items", "--create", "--snapshot"}
	for _, phase := range []string{"snapshot", "stream"} {
		cmd := exec.Command(bin, args...)
		stdout, err := cmd.StdoutPipe() // never read: the pipe fills and writes block
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if phase == "stream" {
			pgtest.Exec(t, db, `DO $$ BEGIN FOR i IN 1..3000 LOOP UPDATE items SET val = val + 1 WHERE id = i; COMMIT; END LOOP; END $$`)
		}
		time.Sleep(time.Second)
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("%s: exit after SIGTERM: %v", phase, err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%s: pgfeed stream ignored SIGTERM with stdout blocked", phase)
		}
		stdout.Close()
	}
	// Nothing lost: a reader that keeps up gets the table.
	var end string
	if err := db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.jsonl")
	if err := streamProcess(t, out, append(args, "--endpos", end)...).Wait(); err != nil {
		t.Fatal(err)
	}
	got := map[int]map[string]any{}
	applyOutput(t, out, got)
	if want := itemsInTable(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the stops, the output holds %d rows, the table %d", len(got), len(want))
	}
}

// Item 22: pgfeed stream waits for a restarting server and goes on, like
// pg_recvlogical, instead of exiting.
func TestStreamReconnectsAfterServerRestart(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "reconnect")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)")
	args := []string{"stream", "--dsn", dsn, "--slot", "reconnect", "--tables", "public.items", "--create"}
	out := filepath.Join(t.TempDir(), "out.jsonl")
	cmd, stderr := startProcess(t, out, args...)
	waitForSlot(t, db, "reconnect")
	pgtest.Exec(t, db, "INSERT INTO items VALUES (1, 1, 'before')")
	waitFor(t, "the first insert", func() bool { return len(commitsIn(t, out)) == 1 })
	if err := pg.Restart(context.Background(), "immediate"); err != nil {
		t.Fatal(err)
	}
	db = pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "INSERT INTO items VALUES (2, 2, 'after')")
	waitFor(t, "the insert after the restart", func() bool { return len(commitsIn(t, out)) == 2 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v (stderr: %s)", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "reconnected") {
		t.Fatalf("stderr does not tell of the reconnect: %s", stderr.String())
	}
	got := map[int]map[string]any{}
	applyOutput(t, out, got)
	if want := itemsInTable(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("output %v, table %v", got, want)
	}
}
