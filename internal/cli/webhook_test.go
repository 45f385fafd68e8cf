package cli

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// webhookEvent is what the test endpoint keeps of each native JSON event.
type webhookEvent struct {
	Op        string         `json:"op"`
	Table     string         `json:"table"`
	CommitLSN event.LSN      `json:"commit_lsn"`
	Seq       int            `json:"seq"`
	Key       map[string]any `json:"key"`
	Before    map[string]any `json:"before"`
	After     map[string]any `json:"after"`
}

// flakyEndpoint is a webhook receiver that verifies each request's
// signature, fails one request in eight on purpose (500, or 429), and
// keeps the events of every request it accepted.
type flakyEndpoint struct {
	secret []byte
	mu     sync.Mutex
	rand   *rand.Rand
	events []webhookEvent
	// Counters, under mu.
	requests, failed, badSignatures int
}

func (f *flakyEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		return // pgfeed's startup probe: no event, nothing signed
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // pgfeed was killed mid-request
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	m := hmac.New(sha256.New, f.secret)
	m.Write([]byte(r.Header.Get("X-Pgfeed-Timestamp") + "."))
	m.Write(body)
	if !hmac.Equal([]byte(r.Header.Get("X-Pgfeed-Signature")), []byte("sha256="+hex.EncodeToString(m.Sum(nil)))) {
		f.badSignatures++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	switch f.rand.IntN(16) {
	case 0:
		f.failed++
		w.WriteHeader(http.StatusInternalServerError)
		return
	case 1:
		f.failed++
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	var evs []webhookEvent
	if err := json.Unmarshal(body, &evs); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	f.events = append(f.events, evs...)
}

func (f *flakyEndpoint) received() []webhookEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// The state invariant through a webhook: examples/webhook.toml as it is,
// pointed at an endpoint that fails some requests, SIGKILLed five times
// under concurrent writers, then run to the end of the WAL. Applying what
// the endpoint accepted, deduplicated by event identity (commit_lsn, seq)
// and in that order, as the sink's documentation tells receivers to, gives
// exactly SELECT * of the table; so does applying it as it arrived, since
// one request in flight keeps commit order.
func TestWebhookStateInvariantUnderKill9(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "webhook_kill")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)")
	ep := &flakyEndpoint{secret: []byte("kill-9-secret"), rand: rand.New(rand.NewPCG(1, 2))}
	srv := httptest.NewServer(ep)
	defer srv.Close()

	dir := t.TempDir()
	t.Setenv("PGFEED_DSN", dsn)
	t.Setenv("PGFEED_STATE", filepath.Join(dir, "state"))
	t.Setenv("PGFEED_SLOT", "webhook_kill")
	t.Setenv("PGFEED_HTTP", "127.0.0.1:0")
	t.Setenv("PGFEED_DEAD_LETTERS", filepath.Join(dir, "dead"))
	t.Setenv("WEBHOOK_URL", srv.URL+"/pgfeed")
	t.Setenv("WEBHOOK_SECRET", string(ep.secret))
	cfg, err := filepath.Abs("../../examples/webhook.toml")
	if err != nil {
		t.Fatal(err)
	}
	// Create the slot before any write, so that every change is in the stream.
	if code, _, stderr := runCLI(t, "run", "--config", cfg, "--endpos", "0/1"); code != 0 {
		t.Fatalf("creating slot: %s", stderr)
	}

	ctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			writeRandomly(ctx, t, dsn, rand.New(rand.NewPCG(uint64(w), 7)))
		}()
	}
	for i := range 5 {
		cmd, _ := startProcess(t, filepath.Join(dir, fmt.Sprintf("stdout-%d", i)), "run", "--config", cfg)
		time.Sleep(time.Duration(600+rand.IntN(900)) * time.Millisecond)
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
	cmd, stderr := startProcess(t, filepath.Join(dir, "stdout-final"), "run", "--config", cfg, "--endpos", end)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final run: %v\n%s", err, stderr.String())
	}

	events := ep.received()
	type id struct {
		lsn event.LSN
		seq int
	}
	seen := map[id]bool{}
	var unique []webhookEvent
	for _, e := range events {
		if k := (id{e.CommitLSN, e.Seq}); !seen[k] {
			seen[k] = true
			unique = append(unique, e)
		}
	}
	slices.SortStableFunc(unique, func(a, b webhookEvent) int {
		return cmp.Or(cmp.Compare(a.CommitLSN, b.CommitLSN), cmp.Compare(a.Seq, b.Seq))
	})
	got, n := applyWebhookEvents(unique)
	want := itemsInTable(t, db)
	// max_in_flight = 1 promises commit order: what arrived, applied as it
	// arrived with every redelivery, gives the same state.
	if arrived, _ := applyWebhookEvents(events); !reflect.DeepEqual(arrived, want) {
		reportDiff(t, arrived, want)
		t.Fatalf("applied in arrival order: %d rows from the webhook, %d in the table", len(arrived), len(want))
	}
	ep.mu.Lock()
	requests, failed, bad := ep.requests, ep.failed, ep.badSignatures
	ep.mu.Unlock()
	if bad > 0 {
		t.Errorf("%d requests with a wrong signature", bad)
	}
	if len(want) == 0 || n < 200 || failed == 0 {
		t.Fatalf("the workload was too small to mean anything: %d rows, %d events, %d failed requests", len(want), n, failed)
	}
	if !reflect.DeepEqual(got, want) {
		reportDiff(t, got, want)
		t.Fatalf("state invariant broken: %d rows from the webhook, %d in the table", len(got), len(want))
	}
	t.Logf("%d events (%d redelivered) in %d requests (%d failed on purpose), %d rows", len(unique), len(events)-len(unique), requests, failed, len(want))
}

// run --check accepts examples/webhook.toml and names every bad webhook
// and dead-letter setting, without connecting anywhere.
func TestRunCheckWebhook(t *testing.T) {
	t.Setenv("PGFEED_DSN", "postgres://nowhere.invalid/app")
	t.Setenv("WEBHOOK_SECRET", "s")
	cfg, err := filepath.Abs("../../examples/webhook.toml")
	if err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runCLI(t, "run", "--check", "--config", cfg); code != 0 || !strings.Contains(stdout, "ok (1 sources, 2 sinks)") {
		t.Fatalf("--check of examples/webhook.toml: %d %s %s", code, stdout, stderr)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.toml")
	writeConfig(t, path, `[sources.main]
dsn = "postgres://x"
[sinks.hook]
type = "webhook"
sources = ["main"]
url = "http://h/"
mode = "batched"
max_in_flight = 0
retry_backoff = "soon"
dead_letter = "dlq"
[sinks.hook.tls]
ca = "`+filepath.Join(dir, "missing.pem")+`"
`)
	code, _, stderr := runCLI(t, "run", "--check", "--config", path)
	if code == 0 {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"sinks.hook.mode", "sinks.hook.max_in_flight", "sinks.hook.retry_backoff", "sinks.hook.tls.ca", "sinks.hook.tls: set, but url is http://", `sinks.hook.dead_letter: unknown sink "dlq"`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not name %s:\n%s", want, stderr)
		}
	}
}

// applyWebhookEvents applies the items events to a map by key and returns
// it with the number of items events.
func applyWebhookEvents(events []webhookEvent) (map[int]map[string]any, int) {
	state := map[int]map[string]any{}
	n := 0
	for _, e := range events {
		if e.Table != "items" {
			continue
		}
		n++
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
	}
	return state, n
}
