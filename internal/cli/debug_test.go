package cli

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// adminDo sends one request with an optional bearer token.
func adminDo(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// /debug/on switches a running pipeline's log to debug and /debug/off
// back; pprof answers; both need the configured token, taken from the
// environment.
func TestHTTPAdminDebug(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "httpdebug")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY)")
	dir := t.TempDir()
	addr := freeAddr(t)
	base := "http://" + addr
	const token = "s3cret-admin-token"
	t.Setenv("PGFEED_TEST_ADMIN_TOKEN", token)
	path := filepath.Join(dir, "pgfeed.toml")
	writeConfig(t, path, fmt.Sprintf(`checkpoint = %q
[log]
level = "info"
[http]
listen = %q
token = "${PGFEED_TEST_ADMIN_TOKEN}"
[sources.main]
dsn = %q
slot = "httpdebug"
create = true
tables = ["public.items"]
[sinks.nowhere]
type = "discard"
sources = ["main"]
`, filepath.Join(dir, "pgfeed.db"), addr, dsn))
	cmd, stderr := startProcess(t, os.DevNull, "run", "--config", path)
	waitUntil(t, "/status 200", func() bool {
		code, _, err := httpGet(base + "/status")
		return err == nil && code == 200
	})

	// Without the token, or with a wrong one: 401 and one JSON line.
	for _, tok := range []string{"", "wrong"} {
		for _, p := range []string{"/debug/on", "/debug/off", "/debug/pprof/", "/debug/pprof/profile?seconds=1"} {
			method := http.MethodGet
			if strings.HasSuffix(p, "/on") || strings.HasSuffix(p, "/off") {
				method = http.MethodPost
			}
			code, body := adminDo(t, method, base+p, tok)
			if code != 401 || strings.Count(body, "\n") != 1 || !strings.HasPrefix(body, `{"error":"missing or wrong bearer token"}`) {
				t.Errorf("%s %s with token %q: %d %q, want 401 and one JSON error line", method, p, tok, code, body)
			}
		}
	}
	if code, body := adminDo(t, http.MethodGet, base+"/debug/on", token); code != 405 {
		t.Errorf("GET /debug/on: %d %s, want 405", code, body)
	}

	// At info, a request logs nothing at debug.
	httpGet(base + "/stats")
	if strings.Contains(stderr.String(), "level=DEBUG") {
		t.Fatalf("debug lines before /debug/on:\n%s", stderr)
	}
	if code, body := adminDo(t, http.MethodPost, base+"/debug/on", token); code != 200 || !strings.Contains(body, `"level":"debug"`) {
		t.Fatalf("POST /debug/on: %d %s", code, body)
	}
	httpGet(base + "/stats")
	pgtest.Exec(t, db, "INSERT INTO items VALUES (1)")
	waitUntil(t, "a debug line after /debug/on", func() bool {
		return strings.Contains(stderr.String(), `level=DEBUG msg="admin API request" method=GET path=/stats`)
	})
	if code, body := adminDo(t, http.MethodPost, base+"/debug/off", token); code != 200 || !strings.Contains(body, `"level":"info"`) {
		t.Fatalf("POST /debug/off: %d %s", code, body)
	}
	// The process logged the request to /debug/off at debug before it
	// switched; that line reaches our pipe after the answer, so wait for the
	// switch's own line before counting.
	waitUntil(t, "the switch back to info in the log", func() bool {
		return strings.Contains(stderr.String(), `msg="admin API: log level set" level=INFO`)
	})
	before := strings.Count(stderr.String(), "level=DEBUG")
	httpGet(base + "/stats")
	httpGet(base + "/health")
	if after := strings.Count(stderr.String(), "level=DEBUG"); after != before {
		t.Errorf("%d debug lines after /debug/off:\n%s", after-before, stderr)
	}

	// pprof: the index, a named profile and a CPU profile.
	if code, body := adminDo(t, http.MethodGet, base+"/debug/pprof/", token); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d %.200s", code, body)
	}
	if code, body := adminDo(t, http.MethodGet, base+"/debug/pprof/goroutine?debug=1", token); code != 200 || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("/debug/pprof/goroutine: %d %.200s", code, body)
	}
	if code, body := adminDo(t, http.MethodGet, base+"/debug/pprof/profile?seconds=1", token); code != 200 || len(body) == 0 {
		t.Errorf("/debug/pprof/profile: %d, %d bytes", code, len(body))
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
}
