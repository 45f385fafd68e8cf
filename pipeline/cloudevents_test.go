package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/pgfeed/pgfeed/config"
	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink/file"
	"github.com/pgfeed/pgfeed/source"
)

// ceReceiver is an HTTP endpoint that parses every request with the
// CloudEvents SDK's HTTP binding, as a stock CloudEvents consumer would.
type ceReceiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	events []cloudevents.Event
	modes  map[string]int // content types seen
}

func newCEReceiver(t *testing.T, batched bool) *ceReceiver {
	r := &ceReceiver{t: t, modes: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodOptions {
			// pgfeed's probe at start (as the CloudEvents webhook spec's
			// validation handshake uses OPTIONS): no event.
			w.WriteHeader(http.StatusNoContent)
			return
		}
		var evs []cloudevents.Event
		if batched {
			var err error
			if evs, err = cehttp.NewEventsFromHTTPRequest(req); err != nil {
				t.Errorf("the SDK refuses a batched request: %v", err)
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		} else {
			if req.Header.Get("Ce-Specversion") == "" {
				t.Errorf("a binary-mode request without ce-specversion: %v", req.Header)
			}
			ev, err := cehttp.NewEventFromHTTPRequest(req)
			if err != nil {
				t.Errorf("the SDK refuses a binary-mode request: %v", err)
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			evs = []cloudevents.Event{*ev}
		}
		r.mu.Lock()
		r.events = append(r.events, evs...)
		r.modes[req.Header.Get("Content-Type")]++
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *ceReceiver) received() []cloudevents.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]cloudevents.Event(nil), r.events...)
}

// A capture of every op, many types, messages and snapshot reads, through
// a file sink (structured mode, one event per line), a webhook in batched
// mode and a webhook in binary mode: the CloudEvents SDK accepts every
// event, and the attributes are what encode.CloudEvents documents.
func TestCloudEventsConformance(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "ce_conf")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db,
		"CREATE TYPE mood AS ENUM ('sad', 'happy')",
		`CREATE TABLE "Odd table"(id int, region text, n numeric, f float8, b bool, j jsonb, raw bytea, ts timestamptz,
			d date, tags text[], m mood, u uuid, note text, PRIMARY KEY (id, region))`,
		"CREATE TABLE plain(id bigint PRIMARY KEY, v text)",
		"INSERT INTO plain VALUES (1, 'before the slot'), (2, 'ünïcode \"quoted\" %25')",
	)
	dir := t.TempDir()
	batch, binary := newCEReceiver(t, true), newCEReceiver(t, false)
	cfg, err := config.Parse([]byte(`
[sources.main]
dsn = "`+dsn+`"
slot = "ce_conf"
create = true
snapshot = true
[sinks.lines]
type = "file"
sources = ["main"]
format = "cloudevents"
path = "`+filepath.Join(dir, "lines")+`"
[sinks.batch]
type = "webhook"
sources = ["main"]
format = "cloudevents"
url = "`+batch.srv.URL+`"
max_batch = 7
[sinks.binary]
type = "webhook"
sources = ["main"]
format = "cloudevents"
mode = "binary"
url = "`+binary.srv.URL+`"
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := FromConfig(cfg, openStore(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, p)
	waitSlot(t, db, "ce_conf")
	// TRUNCATE is not MVCC-safe: run before the snapshot read its table,
	// it would empty the snapshot's view too.
	waitFor(t, "the initial snapshot read", func() bool {
		var done bool
		_ = db.QueryRow(context.Background(), "SELECT done FROM "+source.SnapshotTable+" WHERE slot = 'ce_conf'").Scan(&done)
		return done
	})
	pgtest.Exec(t, db,
		`INSERT INTO "Odd table" VALUES (1, 'eu', 12.50, 1.5, true, '{"a":[1,2]}', '\x00ff', '2026-11-23 04:56:29.368123+00',
			'2026-11-23', '{x,"y z"}', 'happy', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'ok')`,
		`INSERT INTO "Odd table"(id, region) VALUES (2, 'us/west')`,
		`UPDATE "Odd table" SET note = 'changed', f = 'NaN' WHERE id = 1`,
		`DELETE FROM "Odd table" WHERE id = 2`,
		"SELECT pg_logical_emit_message(true, 'app', 'in a transaction')",
		"SELECT pg_logical_emit_message(false, 'audit', '\\x00c0ffee'::bytea)",
		"TRUNCATE plain",
		"INSERT INTO plain VALUES (3, 'last')",
	)
	want := 2 + 2 + 4 + 2 + 1 + 1 // schemas, reads, changes, messages, truncate, last insert
	waitFor(t, "every event at every sink", func() bool {
		return len(batch.received()) >= want && len(binary.received()) >= want && p.Stats("lines").Events.Load() >= uint64(want)
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Structured mode: every line is one CloudEvent the SDK reads and validates.
	files, err := file.Files(filepath.Join(dir, "lines"), "")
	if err != nil {
		t.Fatal(err)
	}
	var lines []cloudevents.Event
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ev cloudevents.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("the SDK refuses line %s: %v", sc.Bytes(), err)
			}
			if err := ev.Validate(); err != nil {
				t.Errorf("line %s: %v", sc.Bytes(), err)
			}
			lines = append(lines, ev)
		}
		f.Close()
	}

	source := "/pgfeed/main/ce_conf"
	for name, evs := range map[string][]cloudevents.Event{"file": lines, "batched": batch.received(), "binary": binary.received()} {
		if len(evs) != want {
			t.Errorf("%s: %d events, want %d", name, len(evs), want)
		}
		ids := map[string]bool{}
		types := map[string]int{}
		for _, ev := range evs {
			if name == "binary" {
				// The HTTP binding percent-encodes header values (3.1.3.2);
				// sdk-go does not decode them (cloudevents/sdk-go#1331), a
				// consumer following the spec does.
				ev = percentDecoded(t, ev)
			}
			if err := ev.Validate(); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			if ids[ev.ID()] {
				t.Errorf("%s: id %s twice", name, ev.ID())
			}
			ids[ev.ID()] = true
			types[ev.Type()]++
			if ev.Source() != source {
				t.Errorf("%s: source %q, want %q", name, ev.Source(), source)
			}
			if ev.Time().IsZero() {
				t.Errorf("%s: event %s without a time", name, ev.ID())
			}
			if ev.DataContentType() != "application/json" {
				t.Errorf("%s: datacontenttype %q", name, ev.DataContentType())
			}
			var data map[string]any
			if err := ev.DataAs(&data); err != nil {
				t.Errorf("%s: data of %s: %v", name, ev.ID(), err)
				continue
			}
			op := data["op"].(string)
			if got := encode.CloudEventsTypePrefix + "change." + op; op != "message" && op != "schema" && got != ev.Type() {
				t.Errorf("%s: type %s for op %v", name, ev.Type(), op)
			}
			id := data["commit_lsn"].(string) + ":" + jsonNumber(data["seq"])
			if op == "schema" {
				id = data["commit_lsn"].(string) + ":0:schema:public." + data["table"].(string)
			}
			if ev.ID() != id {
				t.Errorf("%s: id %s, the event's identity is %s", name, ev.ID(), id)
			}
			// The subject is schema.table, then the key for a row.
			subject := ev.Subject()
			switch data["op"] {
			case "message":
				if subject != data["prefix"] {
					t.Errorf("%s: message subject %q, want its prefix %v", name, subject, data["prefix"])
				}
			case "truncate", "schema":
				if want := "public." + data["table"].(string); subject != want {
					t.Errorf("%s: %s subject %q, want %q", name, op, subject, want)
				}
			default:
				key, _ := json.Marshal(data["key"])
				wantSubject := "public." + data["table"].(string) + "/" + string(key)
				if subject != wantSubject {
					t.Errorf("%s: subject %q, want %q", name, subject, wantSubject)
				}
			}
		}
		for typ, n := range map[string]int{
			"io.pgfeed.change.read": 2, "io.pgfeed.change.insert": 3, "io.pgfeed.change.update": 1,
			"io.pgfeed.change.delete": 1, "io.pgfeed.change.truncate": 1, "io.pgfeed.message": 2, "io.pgfeed.schema": 2,
		} {
			if types[typ] != n {
				t.Errorf("%s: %d events of type %s, want %d (all: %v)", name, types[typ], typ, n, types)
			}
		}
	}
	if binary.modes["application/json"] != want {
		t.Errorf("binary-mode requests by content type %v, want %d of application/json", binary.modes, want)
	}
	if batch.modes["application/cloudevents-batch+json"] == 0 || len(batch.modes) != 1 {
		t.Errorf("batched requests by content type %v", batch.modes)
	}
	// The three carry the same events.
	for _, evs := range [][]cloudevents.Event{batch.received(), binary.received()} {
		for i := range min(len(evs), len(lines)) {
			ev := percentDecoded(t, evs[i])
			if ev.ID() != lines[i].ID() || string(ev.Data()) != string(lines[i].Data()) || ev.Subject() != lines[i].Subject() || (bytes.Contains(ev.Data(), []byte(`"commit_time"`)) && !ev.Time().Equal(lines[i].Time())) {
				t.Errorf("event %d differs between sinks:\n%s\n%s", i, evs[i], lines[i])
			}
		}
	}
	if !strings.Contains(lines[len(lines)-1].Subject(), `{"id":3}`) {
		t.Errorf("last subject %q", lines[len(lines)-1].Subject())
	}
}

// percentDecoded returns ev with its string attributes percent-decoded,
// as the HTTP binding's binary mode asks of a receiver.
func percentDecoded(t *testing.T, ev cloudevents.Event) cloudevents.Event {
	t.Helper()
	dec := func(s string) string {
		out, err := url.PathUnescape(s)
		if err != nil {
			t.Errorf("attribute %q is not percent-encoded: %v", s, err)
		}
		return out
	}
	ev = ev.Clone()
	ev.SetID(dec(ev.ID()))
	ev.SetSubject(dec(ev.Subject()))
	ev.SetSource(dec(ev.Source()))
	return ev
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
