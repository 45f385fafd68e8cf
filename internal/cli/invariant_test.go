package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// The state invariant (DESIGN.md, Tests): concurrent writers make random
// inserts, updates and deletes while `pgfeed stream` is killed with SIGKILL
// at random moments and restarted; applying everything it ever printed to a
// map keyed by primary key gives exactly SELECT * of the table.
func TestStateInvariantUnderKill9(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "invariant")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)")
	outDir := t.TempDir()
	args := []string{"stream", "--dsn", dsn, "--slot", "invariant", "--tables", "public.items"}
	// Create the slot before any write, so that every change is in the stream.
	if code, _, stderr := runCLI(t, append(args, "--create", "--endpos", "0/1")...); code != 0 {
		t.Fatalf("creating slot: %s", stderr)
	}

	ctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			writeRandomly(ctx, t, dsn, rand.New(rand.NewPCG(seed, seed)))
		}(uint64(w))
	}

	var outputs []string
	for i := 0; i < 6; i++ {
		out := filepath.Join(outDir, fmt.Sprintf("run-%d.jsonl", i))
		outputs = append(outputs, out)
		cmd := streamProcess(t, out, args...)
		time.Sleep(time.Duration(300+rand.IntN(900)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
	}
	stopWriters()
	wg.Wait()

	// A last, clean run to the current end of the WAL.
	var end string
	if err := db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		t.Fatal(err)
	}
	last := filepath.Join(outDir, "final.jsonl")
	outputs = append(outputs, last)
	cmd := streamProcess(t, last, append(args, "--endpos", end)...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final run: %v", err)
	}

	got := map[int]map[string]any{}
	events := 0
	for _, path := range outputs {
		events += applyOutput(t, path, got)
	}
	want := itemsInTable(t, db)
	if len(want) == 0 || events < 200 {
		t.Fatalf("the workload was too small to mean anything: %d rows, %d events", len(want), events)
	}
	if !reflect.DeepEqual(got, want) {
		reportDiff(t, got, want)
		t.Fatalf("state invariant broken: %d rows from the stream, %d in the table", len(got), len(want))
	}
	t.Logf("%d events over %d runs, %d rows", events, len(outputs), len(want))
}

// streamProcess starts the pgfeed binary with stdout to a file.
func streamProcess(t *testing.T, out string, args ...string) *exec.Cmd {
	cmd, _ := startProcess(t, out, args...)
	return cmd
}

// startProcess starts the pgfeed binary with stdout to a file and returns
// its stderr as it grows.
func startProcess(t *testing.T, out string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s := stderr.String(); s != "" && t.Failed() {
			t.Logf("pgfeed stderr: %s", s)
		}
	})
	return cmd, stderr
}

// syncBuffer is a bytes.Buffer that a process writes while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// applyOutput applies the complete lines of one run's output to the map. A
// run killed mid-write may end in a partial line: it was never acked, so it
// comes again in the next run.
func applyOutput(t *testing.T, path string, state map[int]map[string]any) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if applyEvent(t, path, sc.Bytes(), state) {
			n++
		}
	}
	return n
}

// applyEvent applies one native JSON event to the map when it is of the
// items table, and reports whether it was. where names its origin for a
// failure message.
func applyEvent(t *testing.T, where string, data []byte, state map[int]map[string]any) bool {
	t.Helper()
	var e struct {
		Op     string         `json:"op"`
		Table  string         `json:"table"`
		Key    map[string]any `json:"key"`
		Before map[string]any `json:"before"`
		After  map[string]any `json:"after"`
	}
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatalf("%s: bad event %q: %v", where, data, err)
	}
	if e.Table != "items" {
		return false
	}
	switch e.Op {
	case "insert", "update", "read":
		if e.Before != nil { // a key change removes the old row
			delete(state, int(e.Before["id"].(float64)))
		}
		state[int(e.After["id"].(float64))] = e.After
	case "delete":
		delete(state, int(e.Key["id"].(float64)))
	case "truncate":
		clear(state)
	}
	return true
}

// writeRandomly makes small random transactions until ctx ends.
func writeRandomly(ctx context.Context, t *testing.T, dsn string, r *rand.Rand) {
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close(context.Background())
	for ctx.Err() == nil {
		tx, err := conn.Begin(context.Background())
		if err != nil {
			t.Error(err)
			return
		}
		for i := 0; i < 1+r.IntN(4); i++ {
			id := 1 + r.IntN(300)
			switch op := r.IntN(10); {
			case op < 4:
				_, err = tx.Exec(context.Background(), "INSERT INTO items VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET val = items.val + 1", id, r.IntN(1000), fmt.Sprintf("n%d", r.IntN(100)))
			case op < 7:
				_, err = tx.Exec(context.Background(), "UPDATE items SET val = $2, note = NULL WHERE id = $1", id, r.IntN(1000))
			case op < 8:
				_, err = tx.Exec(context.Background(), "UPDATE items SET id = $2 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM items WHERE id = $2)", id, 1+r.IntN(300))
			default:
				_, err = tx.Exec(context.Background(), "DELETE FROM items WHERE id = $1", id)
			}
			if err != nil {
				break
			}
		}
		if err != nil || r.IntN(10) == 0 {
			// Deadlocks and unique violations between writers are expected; so are rollbacks.
			_ = tx.Rollback(context.Background())
			continue
		}
		_ = tx.Commit(context.Background())
	}
}

// itemsInTable reads the items table as the JSON events show its rows.
func itemsInTable(t *testing.T, db *pgx.Conn) map[int]map[string]any {
	t.Helper()
	want := map[int]map[string]any{}
	rows, err := db.Query(context.Background(), "SELECT id, val, note FROM items")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, val int
		var note *string
		if err := rows.Scan(&id, &val, &note); err != nil {
			t.Fatal(err)
		}
		row := map[string]any{"id": float64(id), "val": float64(val), "note": nil}
		if note != nil {
			row["note"] = *note
		}
		want[id] = row
	}
	return want
}

// reportDiff names the rows on which stream and table disagree.
func reportDiff(t *testing.T, got, want map[int]map[string]any) {
	t.Helper()
	for id, w := range want {
		if !reflect.DeepEqual(got[id], w) {
			t.Errorf("id %d: stream %v, table %v", id, got[id], w)
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("id %d: in stream %v, not in table", id, g)
		}
	}
}
