package cli

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// pgfeed run probes a webhook endpoint at start (an OPTIONS request, never
// an event) and stops with one line naming the sink when no answer comes:
// nothing listening, or a TLS endpoint whose certificate pgfeed does not
// trust. An endpoint that answers, even 405, passes, and gets no POST from
// the probe.
func TestRunWebhookProbe(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "webhookprobe")
	t.Setenv("TEST_DSN", dsn)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	var posts, probes atomic.Int32
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			probes.Add(1)
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		posts.Add(1)
	})
	tlsSrv := httptest.NewTLSServer(handler) // its certificate is not in pgfeed's roots
	defer tlsSrv.Close()
	plain := httptest.NewServer(handler)
	defer plain.Close()

	run := func(t *testing.T, url string, args ...string) (int, string) {
		dir := t.TempDir()
		path := filepath.Join(dir, "pgfeed.toml")
		cfg := fmt.Sprintf("checkpoint = %q\n[sources.main]\ndsn = \"${TEST_DSN}\"\nslot = \"webhookprobe\"\ncreate = true\n[sinks.hook]\ntype = \"webhook\"\nsources = [\"main\"]\nurl = %q\n",
			filepath.Join(dir, "pgfeed.db"), url)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, _, stderr := runCLI(t, "run", "--check", "--config", path); code != 0 {
			t.Fatalf("--check refused a valid file: %s", stderr)
		}
		code, _, stderr := runCLI(t, append([]string{"run", "--config", path}, args...)...)
		return code, stderr
	}
	t.Run("unreachable", func(t *testing.T) {
		code, stderr := run(t, "http://"+closed+"/hook")
		expectOneLineError(t, code, stderr, "sinks.hook", "probing webhook http://"+closed+"/hook", "connection refused")
	})
	t.Run("tls", func(t *testing.T) {
		code, stderr := run(t, tlsSrv.URL+"/hook")
		expectOneLineError(t, code, stderr, "sinks.hook", "probing webhook "+tlsSrv.URL+"/hook", "certificate")
	})
	t.Run("answers", func(t *testing.T) {
		before := probes.Load()
		code, stderr := run(t, plain.URL+"/hook", "--endpos", "0/1")
		if code != 0 {
			t.Fatalf("exit %d with an endpoint that answers: %s", code, stderr)
		}
		if probes.Load() == before {
			t.Fatal("the endpoint was never probed")
		}
		if strings.Contains(stderr, "probing") || posts.Load() != 0 {
			t.Fatalf("the probe sent %d POSTs, stderr %q; want none", posts.Load(), stderr)
		}
	})
}
