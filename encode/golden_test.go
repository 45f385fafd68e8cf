package encode

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
			for _, tc := range testEvents() {
				t.Run(tc.name, func(t *testing.T) {
					got, err := enc.Encode(nil, tc.ev)
					if err != nil {
						t.Fatalf("Encode: %v", err)
					}
					binary := format == FormatAvro && tc.ev.Op != event.OpSchema
					if !binary && !json.Valid(got) {
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
