package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// freeAddr returns a 127.0.0.1 address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func httpConfig(t *testing.T, dir, dsn, listen string) string {
	t.Helper()
	path := filepath.Join(dir, "pgfeed.toml")
	writeConfig(t, path, fmt.Sprintf(`checkpoint = %q
[http]
listen = %q
[sources.main]
dsn = %q
slot = "httpapi"
create = true
tables = ["public.items"]
[sinks.nowhere]
type = "discard"
sources = ["main"]
`, filepath.Join(dir, "pgfeed.db"), listen, dsn))
	return path
}

func httpGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// sampleValue returns the value of one series in the Prometheus text
// format, or -1 when it is absent.
func sampleValue(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return -1
}

// `pgfeed run` with [http] listen serves the admin API while it streams,
// and a SIGTERM stops both with exit 0.
func TestHTTPAdminAPI(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "httpapi")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY)")
	dir := t.TempDir()
	addr := freeAddr(t)
	base := "http://" + addr
	cmd, stderr := startProcess(t, os.DevNull, "run", "--config", httpConfig(t, dir, dsn, addr))

	waitUntil(t, "/health", func() bool {
		code, body, err := httpGet(base + "/health")
		return err == nil && code == 200 && body == "ok\n"
	})
	var status struct {
		OK      bool `json:"ok"`
		Sources []struct {
			Name      string `json:"name"`
			Streaming bool   `json:"streaming"`
			Confirmed string `json:"confirmed_lsn"`
		} `json:"sources"`
		Sinks []struct {
			Name string `json:"name"`
		} `json:"sinks"`
	}
	waitUntil(t, "/status 200", func() bool {
		code, body, err := httpGet(base + "/status")
		if err != nil || code != 200 {
			return false
		}
		if err := json.Unmarshal([]byte(body), &status); err != nil {
			t.Fatalf("/status: %v\n%s", err, body)
		}
		return true
	})
	if !status.OK || len(status.Sources) != 1 || status.Sources[0].Name != "main" || !status.Sources[0].Streaming ||
		len(status.Sinks) != 1 || status.Sinks[0].Name != "nowhere" {
		t.Fatalf("/status 200 with %+v", status)
	}

	// A change goes through, so the counters the metrics read move. The
	// sink may count more than the insert (schema events), so at least one.
	pgtest.Exec(t, db, "INSERT INTO items VALUES (1)")
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last /metrics:\n%s", last)
		}
	}()
	waitUntil(t, "the insert in /metrics", func() bool {
		code, body, err := httpGet(base + "/metrics")
		last = body
		return err == nil && code == 200 &&
			sampleValue(body, `pgfeed_source_streaming{source="main"}`) == 1 &&
			sampleValue(body, `pgfeed_sink_events_total{sink="nowhere"}`) >= 1
	})
	if code, _, err := httpGet(base + "/nope"); err != nil || code != 404 {
		t.Errorf("GET /nope: %d %v, want 404", code, err)
	}
	if !strings.Contains(stderr.String(), "http admin API listening") || !strings.Contains(stderr.String(), addr) {
		t.Errorf("the listen address is not logged: %s", stderr)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pgfeed run after SIGTERM: %v (want exit 0)", err)
	}
	if _, _, err := httpGet(base + "/health"); err == nil {
		t.Error("the admin API still answers after pgfeed stopped")
	}
}

// A port already in use fails the run up front with one line naming the
// setting.
func TestHTTPListenInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	dir := t.TempDir()
	// The source is never reached: the DSN points at the cluster but no
	// database of that name exists.
	code, _, stderr := runCLI(t, "run", "--config", httpConfig(t, dir, pg.DSN("httpinuse_never_created"), addr))
	expectOneLineError(t, code, stderr, "http.listen "+addr+": address already in use")
	if _, err := os.Stat(filepath.Join(dir, "pgfeed.db")); err == nil {
		t.Error("the checkpoint store was created before the port was checked")
	}
}
