package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/checkpoint"
	"github.com/pgfeed/pgfeed/config"
	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink/file"
	"github.com/pgfeed/pgfeed/sink/webhook"
	"github.com/pgfeed/pgfeed/source"
)

// hookEvent is the part of a native JSON event the tests look at.
type hookEvent struct {
	Op        string         `json:"op"`
	Table     string         `json:"table"`
	CommitLSN event.LSN      `json:"commit_lsn"`
	Seq       int            `json:"seq"`
	Key       map[string]any `json:"key"`
	Before    map[string]any `json:"before"`
	After     map[string]any `json:"after"`
}

func (e hookEvent) id() int {
	if v, ok := e.Key["id"].(float64); ok {
		return int(v)
	}
	return -1
}

// hookServer is a webhook endpoint that refuses (400) every request
// holding an event of a refused id, and keeps the events it accepted.
type hookServer struct {
	srv    *httptest.Server
	refuse atomic.Int64 // the id refused; 0: none

	mu     sync.Mutex
	events []hookEvent
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		var evs []hookEvent
		if err := json.Unmarshal(body, &evs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, e := range evs {
			if e.Table == "items" && int64(e.id()) == h.refuse.Load() {
				http.Error(w, fmt.Sprintf("id %d is not welcome", e.id()), http.StatusBadRequest)
				return
			}
		}
		h.mu.Lock()
		h.events = append(h.events, evs...)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookServer) received() []hookEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookEvent(nil), h.events...)
}

func (h *hookServer) sawMarker() bool { return h.marker() != 0 }

// marker returns the commit position of the marker row, once received.
func (h *hookServer) marker() event.LSN {
	for _, e := range h.received() {
		if e.Table == "marker" {
			return e.CommitLSN
		}
	}
	return 0
}

// failingEncoder is the JSON encoder, failing on the items row of one id.
type failingEncoder struct{ id string }

func (f failingEncoder) Encode(dst []byte, e *event.Event) ([]byte, error) {
	if e.Table == "items" && e.Rel != nil && len(e.After) > 0 && string(e.After[0].Raw) == f.id {
		return dst, errors.New("cannot encode this row")
	}
	return encode.JSON{}.Encode(dst, e)
}

// state applies the webhook's items events by key.
func applyItems(events []hookEvent) map[int]map[string]any {
	state := map[int]map[string]any{}
	for _, e := range events {
		if e.Table != "items" {
			continue
		}
		switch e.Op {
		case "insert", "update":
			state[e.id()] = e.After
		case "delete":
			delete(state, e.id())
		}
	}
	return state
}

func currentLSN(t *testing.T, db *pgx.Conn) event.LSN {
	t.Helper()
	var s string
	if err := db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	l, err := event.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// One row's event is refused by the webhook (400) and another's cannot be
// encoded: both land in the file dead-letter sink with their errors, every
// other change reaches the webhook, and the checkpoint moves past them.
func TestDeadLetterEndToEnd(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "deadletter")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int)", "CREATE TABLE marker(id int PRIMARY KEY)")
	hook := newHookServer(t)
	hook.refuse.Store(13)
	wh, err := webhook.New(webhook.Options{URL: hook.srv.URL, MaxBatch: 8, MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dlDir := t.TempDir()
	dlFile, err := file.Open(dlDir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hk := newSink(t, "hook", "main", wh)
	hk.Encoder = failingEncoder{id: "21"}
	hk.DeadLetter = "dlq"
	dl := newSink(t, "dlq", "", dlFile)
	dl.Sources = nil
	p := &Pipeline{
		Sources: []Source{{Name: "main", Stream: source.Config{DSN: dsn, Slot: "deadletter", Create: true}}},
		Sinks:   []Sink{hk, dl},
		Store:   openStore(t),
	}
	stop := run(t, p)
	waitFor(t, "the slot", func() bool {
		var n int
		_ = db.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'deadletter' AND active").Scan(&n)
		return n == 1
	})
	pgtest.Exec(t, db,
		"INSERT INTO items SELECT g, g FROM generate_series(1, 30) g",
		"UPDATE items SET val = val * 10 WHERE id % 3 = 0 AND id NOT IN (13, 21)",
		"DELETE FROM items WHERE id IN (2, 4)",
		"INSERT INTO marker VALUES (1)",
	)
	waitFor(t, "the marker at the webhook", hook.sawMarker)
	waitFor(t, "the checkpoint past the marker", func() bool { return event.LSN(p.Stats("hook").Durable.Load()) >= hook.marker() })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// The webhook has every change but the two poison ones, each once.
	want := tableState(t, db)
	delete(want, 13)
	delete(want, 21)
	events := hook.received()
	if got := applyItems(events); !reflect.DeepEqual(got, want) {
		t.Fatalf("webhook state %v\nwant %v", got, want)
	}
	seen := map[string]bool{}
	for _, e := range events {
		id := fmt.Sprintf("%s:%d", e.CommitLSN, e.Seq)
		if seen[id] {
			t.Fatalf("event %s delivered twice without any failure", id)
		}
		seen[id] = true
		if e.Table == "items" && (e.id() == 13 || e.id() == 21) {
			t.Fatalf("poison event reached the webhook: %+v", e)
		}
	}

	// The dead-letter file has the two, in the order of the stream.
	files, err := file.Files(dlDir, "")
	if err != nil {
		t.Fatal(err)
	}
	var envs []Envelope
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for line := range bytes.Lines(data) {
			var env Envelope
			if err := json.Unmarshal(line, &env); err != nil {
				t.Fatalf("dead letter %q: %v", line, err)
			}
			envs = append(envs, env)
		}
	}
	if len(envs) != 2 {
		t.Fatalf("%d dead letters, want 2: %+v", len(envs), envs)
	}
	refused, unencodable := envs[0], envs[1]
	var v hookEvent
	if err := json.Unmarshal(refused.Value, &v); err != nil || v.id() != 13 || v.Op != "insert" {
		t.Errorf("first dead letter's value %s (%v), want the insert of id 13", refused.Value, err)
	}
	if !strings.Contains(refused.Error, "400") || !strings.Contains(refused.Error, "id 13 is not welcome") {
		t.Errorf("first dead letter's error %q, want the 400 and its body", refused.Error)
	}
	if string(refused.Key) != `{"id":13}` || refused.Sink != "hook" || refused.Topic != "public.items" || refused.Op != "insert" ||
		refused.ID != fmt.Sprintf("%s:%d", refused.CommitLSN, refused.Seq) || refused.Seq != 13 {
		t.Errorf("first dead letter %+v", refused)
	}
	if v := string(unencodable.Value); (v != "" && v != "null") || !strings.Contains(unencodable.Error, "cannot encode this row") || string(unencodable.Key) != `{"id":21}` {
		t.Errorf("second dead letter %+v, want the encode error of id 21 and no value", unencodable)
	}
	if n := p.Stats("hook").DeadLettered.Load(); n != 2 {
		t.Errorf("hook dead-lettered %d records, want 2", n)
	}
	st := p.Status()
	if st.Sinks[0].DeadLettered != 2 || st.Sinks[1].Events != 2 {
		t.Errorf("status %+v", st.Sinks)
	}
}

// syncLog is a log output that a test reads while the pipeline writes.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Without a dead-letter sink a refused record is never dropped: the sink
// is stuck on it, says so, and holds the checkpoint back, sending that
// record alone again; once the endpoint takes it, everything goes through,
// each event once.
func TestPoisonWithoutDeadLetterIsStuck(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "stuck")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int)", "CREATE TABLE marker(id int PRIMARY KEY)")
	hook := newHookServer(t)
	hook.refuse.Store(5)
	wh, err := webhook.New(webhook.Options{URL: hook.srv.URL, MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncLog{}
	p := &Pipeline{
		Sources:    []Source{{Name: "main", Stream: source.Config{DSN: dsn, Slot: "stuck", Create: true}}},
		Sinks:      []Sink{newSink(t, "hook", "main", wh)},
		Store:      openStore(t),
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}
	stop := run(t, p)
	waitFor(t, "the slot", func() bool {
		var n int
		_ = db.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'stuck' AND active").Scan(&n)
		return n == 1
	})
	pgtest.Exec(t, db, "INSERT INTO items SELECT g, g FROM generate_series(1, 4) g")
	before := currentLSN(t, db)
	waitFor(t, "the first rows at the webhook", func() bool { return len(hook.received()) == 4 })
	pgtest.Exec(t, db, "INSERT INTO items VALUES (5, 5)", "INSERT INTO items VALUES (6, 6)", "INSERT INTO marker VALUES (1)")
	waitFor(t, "the sink to say it is stuck", func() bool { return strings.Count(logs.String(), "stuck on a poison record") >= 3 })
	if d := event.LSN(p.Stats("hook").Durable.Load()); d > before {
		t.Fatalf("checkpoint at %s, past the poison record (before it: %s)", d, before)
	}
	for _, e := range hook.received() {
		if e.Table == "items" && e.id() == 5 {
			t.Fatal("the refused event reached the webhook")
		}
	}

	hook.refuse.Store(0) // the endpoint is fixed
	waitFor(t, "the marker at the webhook", hook.sawMarker)
	waitFor(t, "the checkpoint past the marker", func() bool { return event.LSN(p.Stats("hook").Durable.Load()) >= hook.marker() })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	events := hook.received()
	if got, want := applyItems(events), tableState(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("webhook state %v\nwant %v", got, want)
	}
	// Only the refused record was sent again while stuck, not its batch.
	seen := map[string]bool{}
	for _, e := range events {
		id := fmt.Sprintf("%s:%d", e.CommitLSN, e.Seq)
		if seen[id] {
			t.Fatalf("event %s (%s id %d) delivered twice", id, e.Table, e.id())
		}
		seen[id] = true
	}
}

// FromConfig builds a webhook sink and its dead-letter sink from a config.
func TestFromConfigWebhook(t *testing.T) {
	dir := t.TempDir()
	// Opening the sink probes its endpoint: something must answer.
	endpoint := httptest.NewServer(http.NotFoundHandler())
	defer endpoint.Close()
	cfg, err := config.Parse([]byte(`
[sources.main]
dsn = "postgres://localhost/app"
[sinks.hook]
type = "webhook"
sources = ["main"]
format = "cloudevents"
url = "`+endpoint.URL+`/in"
secret = "s"
dead_letter = "dlq"
[sinks.dlq]
type = "file"
path = "`+filepath.Join(dir, "dlq")+`"
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := checkpoint.Open(filepath.Join(dir, "pgfeed.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	p, err := FromConfig(cfg, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.CloseSinks()
	if err := p.validate(); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Sinks[0].Sink.(*webhook.Sink); !ok || p.Sinks[0].DeadLetter != "dlq" || len(p.Sinks[1].Sources) != 0 {
		t.Fatalf("sinks %+v", p.Sinks)
	}
}
