package encode

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/pgfeed/pgfeed/event"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ with the current output")

// TestGolden encodes every test event in every format and compares the
// bytes with testdata/golden/<format>/<case>. Run with -update after an
// intended change, and read the diff.
func TestGolden(t *testing.T) {
	for _, format := range Formats() {
		t.Run(format, func(t *testing.T) {
			enc, err := New(format, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			_, framed := enc.(TxFramer)
			for _, tc := range testEvents() {
				t.Run(tc.name, func(t *testing.T) {
					if framed && (tc.ev.Op == event.OpBegin || tc.ev.Op == event.OpCommit) {
						// Halves of a frame: TestWal2JSONTransaction has them.
						return
					}
					got, err := enc.Encode(nil, tc.ev)
					if err != nil {
						t.Fatalf("Encode: %v", err)
					}
					binary := format == FormatAvro && tc.ev.Op != event.OpSchema
					if !binary && !json.Valid(got) && (len(got) > 0 || (tc.ev.Op != event.OpSchema && tc.ev.Op != event.OpTruncate)) {
						t.Fatalf("output is not valid JSON:\n%s", got)
					}
					ext := ".json"
					if binary {
						ext = ".avro"
					}
					path := filepath.Join("testdata", "golden", format, tc.name+ext)
					if *update {
						if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
							t.Fatal(err)
						}
						if err := os.WriteFile(path, got, 0o644); err != nil {
							t.Fatal(err)
						}
						return
					}
					want, err := os.ReadFile(path)
					if err != nil {
						t.Fatalf("reading golden file (run go test -update to create it): %v", err)
					}
					if !bytes.Equal(got, want) {
						t.Errorf("output differs from %s\n got: %q\nwant: %q", path, got, want)
					}
				})
			}
		})
	}
}

// TestEncodeAppends checks the Encoder contract: output is appended after
// what dst holds, and a failed encode leaves dst as it was.
func TestEncodeAppends(t *testing.T) {
	bad := base(event.OpInsert, relData, 1)
	bad.After = rowOne()
	bad.After[7] = text("23/11/2026") // a date not in ISO form
	for _, format := range Formats() {
		t.Run(format, func(t *testing.T) {
			enc, err := New(format, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			ev := testEvents()[0].ev
			alone, err := enc.Encode(nil, ev)
			if err != nil {
				t.Fatal(err)
			}
			prefix := []byte("previous event\n")
			got, err := enc.Encode(append([]byte(nil), prefix...), ev)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, append(prefix, alone...)) {
				t.Errorf("Encode did not append to dst:\n%q", got)
			}
			if _, err := enc.Encode(nil, nil); err == nil {
				t.Error("Encode(nil event) succeeded")
			}
			if format == FormatDebezium || format == FormatAvro {
				out, err := enc.Encode(prefix, bad)
				if err == nil {
					t.Fatalf("a non-ISO date was encoded: %q", out)
				}
				if !strings.Contains(err.Error(), `"day"`) {
					t.Errorf("error does not name the column: %v", err)
				}
				if !bytes.Equal(out, prefix) {
					t.Errorf("failed Encode changed dst: %q", out)
				}
			}
		})
	}
}

func TestNew(t *testing.T) {
	for _, f := range append(Formats(), "") {
		if _, err := New(f, Options{}); err != nil {
			t.Errorf("New(%q): %v", f, err)
		}
	}
	_, err := New("protobuf", Options{})
	if err == nil {
		t.Fatal("New accepted an unknown format")
	}
	for _, f := range Formats() {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not list format %q", err, f)
		}
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		name string
		ev   *event.Event
		want string // "" for no key
	}{
		{"insert", testEvents()[0].ev, `{"id":2}`},
		{"delete key-only", testEvents()[4].ev, `{"id":2}`},
		{"message", testEvents()[7].ev, ""},
		{"truncate", testEvents()[6].ev, ""},
		{"no key columns", &event.Event{Op: event.OpInsert, Rel: &event.Relation{Columns: []event.Column{{Name: "a", Type: typ(25)}}}, After: event.Row{text("x")}}, ""},
		{"composite key", &event.Event{Op: event.OpInsert, Rel: &event.Relation{Columns: []event.Column{
			{Name: "tenant", Type: typ(25), Key: true}, {Name: "v", Type: typ(25)}, {Name: "n", Type: typ(20), Key: true},
		}}, After: event.Row{text("a\"b"), text("v"), text("12")}}, `{"tenant":"a\"b","n":12}`},
		{"null key value", &event.Event{Op: event.OpInsert, Rel: &event.Relation{Columns: []event.Column{{Name: "k", Type: typ(23), Key: true}}}, After: event.Row{null}}, `{"k":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Key(tt.ev)
			if tt.want == "" {
				if got != nil {
					t.Errorf("Key = %q, want nil", got)
				}
				return
			}
			if string(got) != tt.want {
				t.Errorf("Key = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestConcurrentEncode runs every encoder from several goroutines over
// events of several tables, including new descriptions of the same table,
// and expects what one goroutine alone produces. Run with -race.
func TestConcurrentEncode(t *testing.T) {
	var events []*event.Event
	for _, tc := range testEvents() {
		events = append(events, tc.ev)
	}
	again := *relData // the same table described again, as after a reconnect
	e := base(event.OpInsert, &again, 9)
	e.After = rowOne()
	events = append(events, e)

	for _, format := range Formats() {
		t.Run(format, func(t *testing.T) {
			want := make([][]byte, len(events))
			ref, _ := New(format, testOptions())
			if _, framed := ref.(TxFramer); framed {
				t.Skip("a transaction framer has the state of its transaction: one goroutine at a time")
			}
			for i, e := range events {
				want[i], _ = ref.Encode(nil, e)
			}
			enc, _ := New(format, testOptions())
			var wg sync.WaitGroup
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var buf []byte
					for n := 0; n < 50; n++ {
						i := (g + n) % len(events)
						var err error
						buf, err = enc.Encode(buf[:0], events[i])
						if err != nil {
							t.Error(err)
							return
						}
						if !bytes.Equal(buf, want[i]) {
							t.Errorf("event %d differs when encoded concurrently", i)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

func TestUnknownOp(t *testing.T) {
	for _, format := range Formats()[1:] { // the native JSON prints any op
		enc, _ := New(format, testOptions())
		if out, err := enc.Encode(nil, &event.Event{Op: 0}); err == nil {
			t.Errorf("%s encoded an event without an op: %q", format, out)
		}
	}
}

// FuzzEncode puts arbitrary text in any column of a row, as a misbehaving
// type output function or a catalog mix-up could: encoders must not panic,
// and whatever they accept must be well formed (valid JSON, or an Avro
// datum that decodes with its schema).
func FuzzEncode(f *testing.F) {
	f.Add(uint8(0), "2")
	f.Add(uint8(7), "0044-03-15 BC")
	f.Add(uint8(6), `\x0`)
	f.Add(uint8(4), `{{"a"}`)
	f.Add(uint8(5), "\xff\xfe")
	encs := map[string]Encoder{}
	for _, format := range Formats() {
		encs[format], _ = New(format, testOptions())
	}
	avroEnc := encs[FormatAvro].(*Avro)
	schema, err := avroEnc.Schema(relData)
	if err != nil {
		f.Fatal(err)
	}
	parsed, err := avro.ParseWithCache(schema, "", &avro.SchemaCache{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, col uint8, raw string) {
		e := base(event.OpUpdate, relData, 1)
		e.After = rowOne()
		e.Before = rowOne()
		i := int(col) % len(e.After)
		e.After[i] = text(raw)
		if native := text(raw).AppendJSON(nil, relData.Columns[i].Type); !json.Valid(native) {
			// Not this package's to fix: the native mapping itself writes
			// invalid JSON for this text (for example "00" as an integer).
			t.Skipf("event.Value.AppendJSON writes invalid JSON for %s %q: %s", relData.Columns[i].Type.Name, raw, native)
		}
		for format, enc := range encs {
			out, err := enc.Encode(nil, e)
			if err != nil {
				continue
			}
			if format == FormatAvro {
				var m map[string]any
				if err := avro.Unmarshal(parsed, out[10:], &m); err != nil {
					t.Errorf("avro output does not decode: %v", err)
				}
				continue
			}
			if !json.Valid(out) {
				t.Errorf("%s output is not valid JSON: %q", format, out)
			}
		}
	})
}
