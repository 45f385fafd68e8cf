package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// slot create, list (with the WAL it retains) and drop.
func TestSlotCommands(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "slots")
	db := pgtest.Connect(t, dsn)
	if code, out, stderr := runCLI(t, "slot", "create", "--dsn", dsn, "listed"); code != 0 || !strings.Contains(out, "created slot listed") {
		t.Fatalf("create: %d %q %q", code, out, stderr)
	}
	code, _, stderr := runCLI(t, "slot", "create", "--dsn", dsn, "listed")
	expectOneLineError(t, code, stderr, `"listed" already exists`)

	pgtest.Exec(t, db, "CREATE TABLE t(x text)", "INSERT INTO t SELECT repeat('x', 1000) FROM generate_series(1, 2000)")
	code, out, stderr := runCLI(t, "slot", "list", "--dsn", dsn, "--json")
	if code != 0 {
		t.Fatal(stderr)
	}
	var found bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var s SlotInfo
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		if s.Name == "listed" {
			found = true
			if s.Plugin != "pgoutput" || s.Active || s.Database != "slots" || s.RetainedBytes < 1<<20 || s.ConfirmedLSN == "" {
				t.Fatalf("slot as listed: %+v", s)
			}
			// Its health, in the columns of slot list --json.
			if s.WALStatus != "reserved" || s.SafeWALSize != nil || s.MaxSlotWALKeepSize != -1 || s.Warning != "" || !strings.Contains(sc.Text(), `"safe_wal_size":null`) {
				t.Fatalf("slot health as listed: %s", sc.Text())
			}
		}
	}
	if !found {
		t.Fatalf("slot missing from list: %s", out)
	}
	if code, out, _ := runCLI(t, "slot", "list", "--dsn", dsn); code != 0 || !strings.Contains(out, "RETAINED_WAL_BYTES") || !strings.Contains(out, "WAL_STATUS") || !strings.Contains(out, "reserved") || !strings.Contains(out, "listed") {
		t.Fatalf("table output: %s", out)
	}
	if code, out, stderr := runCLI(t, "slot", "drop", "--dsn", dsn, "listed"); code != 0 || !strings.Contains(out, "dropped slot listed") {
		t.Fatalf("drop: %d %q %q", code, out, stderr)
	}
}

// pgfeed demo starts its own PostgreSQL, prints live changes as JSON lines,
// says again how to connect with psql as the lines scroll, and stops
// cleanly on Ctrl-C (exit 0), removing what it started.
func TestDemo(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo.jsonl")
	cmd, stderr := startProcess(t, out, "demo", "--rate", "20")
	deadline := time.Now().Add(2 * time.Minute)
	for lines(out) < 2*demoHintLines+5 {
		if time.Now().After(deadline) {
			t.Fatalf("the demo printed %d lines; stderr: %s", lines(out), stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo after Ctrl-C: %v; stderr: %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "removed") {
		t.Errorf("the demo did not say it cleaned up: %s", stderr.String())
	}
	// The first line and at least one reminder per screenful of changes.
	if n := strings.Count(stderr.String(), "psql \"postgres://"); n < 3 {
		t.Errorf("the psql hint came %d times for %d lines of changes, want it again every %d lines: %s", n, lines(out), demoHintLines, stderr.String())
	}
	data, _ := os.ReadFile(out)
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil || e["table"] != "inventory" {
			t.Fatalf("bad demo line %q", l)
		}
	}
}

func lines(path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), "\n")
}

// TestSlotCreateFailover: slot create makes a failover slot by default where
// the server has them (PostgreSQL 17+), a plain one with --failover=false,
// refuses --failover on an older server, and slot list shows the columns.
func TestSlotCreateFailover(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "slots_failover")
	conn := pgtest.Connect(t, dsn)
	var version int
	if err := conn.QueryRow(context.Background(), "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatal(err)
	}
	failover := func(name string) string {
		var fo *bool
		if version >= 170000 {
			if err := conn.QueryRow(context.Background(), "SELECT failover FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&fo); err != nil {
				t.Fatal(err)
			}
		}
		return flag(fo)
	}
	if code, out, stderr := runCLI(t, "slot", "create", "--dsn", dsn, "fo_default"); code != 0 {
		t.Fatalf("create: %d %q %q", code, out, stderr)
	}
	if code, out, stderr := runCLI(t, "slot", "create", "--dsn", dsn, "--failover=false", "fo_off"); code != 0 {
		t.Fatalf("create --failover=false: %d %q %q", code, out, stderr)
	}
	code, out, stderr := runCLI(t, "slot", "create", "--dsn", dsn, "--failover", "fo_on")
	if version < 170000 {
		if code == 0 || !strings.Contains(stderr, "PostgreSQL 17") {
			t.Fatalf("PostgreSQL %d: create --failover: %d %q %q, want one error line naming PostgreSQL 17", version, code, out, stderr)
		}
		if got := failover("fo_default") + failover("fo_off"); got != "--" {
			t.Errorf("PostgreSQL %d: failover columns %q", version, got)
		}
		return
	}
	if code != 0 {
		t.Fatalf("create --failover: %d %q %q", code, out, stderr)
	}
	for name, want := range map[string]string{"fo_default": "true", "fo_off": "false", "fo_on": "true"} {
		if got := failover(name); got != want {
			t.Errorf("slot %s: failover = %s, want %s", name, got, want)
		}
	}
	code, out, stderr = runCLI(t, "slot", "list", "--dsn", dsn)
	if code != 0 || !strings.Contains(out, "FAILOVER") || !strings.Contains(out, "SYNCED") {
		t.Fatalf("list: %d %q %q", code, out, stderr)
	}
}

// failover in a pipeline's source reaches the slot it creates: off makes a
// plain slot; on is a failover slot on PostgreSQL 17+, and one error line
// naming the version on older servers, before anything is created.
func TestRunFailoverSetting(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "run_failover")
	conn := pgtest.Connect(t, dsn)
	pgtest.Exec(t, conn, "CREATE TABLE items(id int PRIMARY KEY)")
	var version int
	if err := conn.QueryRow(context.Background(), "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatal(err)
	}
	run := func(slot, failover string) (int, string) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "pgfeed.toml")
		err := os.WriteFile(cfg, []byte(`checkpoint = "`+filepath.Join(dir, "pgfeed.db")+`"
[sources.main]
dsn = "`+dsn+`"
slot = "`+slot+`"
create = true
failover = `+failover+`
[sinks.out]
type = "discard"
sources = ["main"]
`), 0o644)
		if err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runCLI(t, "run", "--config", cfg, "--endpos", "0/1")
		return code, stderr
	}
	slotFailover := func(slot string) string {
		var fo *bool
		q := "SELECT NULL::bool FROM pg_replication_slots WHERE slot_name = $1"
		if version >= 170000 {
			q = "SELECT failover FROM pg_replication_slots WHERE slot_name = $1"
		}
		if err := conn.QueryRow(context.Background(), q, slot).Scan(&fo); err != nil {
			t.Fatalf("slot %s: %v", slot, err)
		}
		return flag(fo)
	}
	if code, stderr := run("fo_toml_off", "false"); code != 0 {
		t.Fatalf("failover = false: exit %d\n%s", code, stderr)
	}
	if got, want := slotFailover("fo_toml_off"), map[bool]string{true: "false", false: "-"}[version >= 170000]; got != want {
		t.Errorf("failover = false: slot failover %q, want %q", got, want)
	}
	code, stderr := run("fo_toml_on", "true")
	if version < 170000 {
		// The last line is the error, naming the source and the version.
		if last := lastLine(stderr); code == 0 || !strings.Contains(last, "PostgreSQL 17") || !strings.Contains(last, "main") {
			t.Fatalf("PostgreSQL %d: failover = true: exit %d %q, want a last line naming the source and PostgreSQL 17", version, code, stderr)
		}
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'fo_toml_on'").Scan(&n); err != nil || n != 0 {
			t.Errorf("a slot was created anyway (%d, %v)", n, err)
		}
		return
	}
	if code != 0 {
		t.Fatalf("failover = true: exit %d\n%s", code, stderr)
	}
	if got := slotFailover("fo_toml_on"); got != "true" {
		t.Errorf("failover = true: slot failover %q, want true", got)
	}
}
