package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// jsonLines parses every line of stderr as a JSON object.
func jsonLines(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimRight(stderr, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v\nstderr:\n%s", line, err, stderr)
		}
		if m["time"] == nil || m["level"] == nil || m["msg"] == nil {
			t.Errorf("log line %q lacks time, level or msg", line)
		}
		recs = append(recs, m)
	}
	return recs
}

// With --log-format json, the one line a failed command ends with is a
// JSON record too.
func TestLogFormatJSONError(t *testing.T) {
	code, _, stderr := runCLI(t, "stream", "--log-format", "json", "--dsn", "host=127.0.0.1 port=1 user=postgres sslmode=disable connect_timeout=5")
	if code == 0 {
		t.Fatal("stream against a closed port succeeded")
	}
	recs := jsonLines(t, stderr)
	if len(recs) != 1 || recs[0]["level"] != "ERROR" || !strings.Contains(recs[0]["msg"].(string), "connection refused") {
		t.Fatalf("stderr %q: want one ERROR record naming the cause", stderr)
	}

	code, _, stderr = runCLI(t, "slot", "list", "--log-format", "yaml")
	expectOneLineError(t, code, stderr, `--log-format "yaml": use text or json`)
	code, _, stderr = runCLI(t, "slot", "list", "--log-level", "loud")
	expectOneLineError(t, code, stderr, `--log-level "loud"`)
}

// pgfeed run: --log-format json overrides [log] format = "text", and
// every line on stderr is a JSON record, from start to clean stop.
func TestRunLogFormatJSON(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "runjson")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY)", "INSERT INTO items VALUES (1)")
	var end string
	if err := db.QueryRow(t.Context(), "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "pgfeed.toml")
	cfg := fmt.Sprintf(`checkpoint = %q
[log]
format = "text"
level = "info"
[sources.main]
dsn = %q
slot = "runjson"
create = true
snapshot = true
tables = ["public.items"]
[sinks.files]
type = "file"
sources = ["main"]
path = %q
`, filepath.Join(dir, "pgfeed.db"), dsn, filepath.Join(dir, "out"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "run", "--config", cfgPath, "--endpos", end, "--log-format", "json")
	if code != 0 {
		t.Fatalf("run: %d\n%s", code, stderr)
	}
	var msgs []string
	for _, r := range jsonLines(t, stderr) {
		msgs = append(msgs, r["msg"].(string))
	}
	if all := strings.Join(msgs, "\n"); !strings.Contains(all, "pgfeed run starting") || !strings.Contains(all, "pgfeed run stopped cleanly") {
		t.Errorf("run's log lacks its start and stop:\n%s", stderr)
	}
}

// In text format, commands other than run write each record as one
// "pgfeed: " line; their level is warn unless --log-level says otherwise.
func TestLineHandler(t *testing.T) {
	var buf bytes.Buffer
	e := &env{stderr: &buf, logs: logFlags{format: "text"}}
	log := e.logger()
	log.Info("not shown at the default level")
	log.With("slot", "s1").WithGroup("wal").Warn("slot at risk", "status", "unreserved", "note", "two words", slog.Group("g", "k", 1))
	e.warnf("%s; retrying in %v", "connection refused", "100ms")
	want := "pgfeed: slot at risk slot=s1 wal.status=unreserved wal.note=\"two words\" wal.g.k=1\n" +
		"pgfeed: connection refused; retrying in 100ms\n"
	if buf.String() != want {
		t.Errorf("text log:\n%s\nwant:\n%s", buf.String(), want)
	}

	buf.Reset()
	e.logs.level = "info"
	e.logger().Info("shown")
	if buf.String() != "pgfeed: shown\n" {
		t.Errorf("--log-level info: %q", buf.String())
	}
}
