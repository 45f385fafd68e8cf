package kafka

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/event"
)

// What the Debezium envelope cannot carry back, as substitutions on the
// native golden events: seq (a record header, not in the envelope),
// numeric NaN (Debezium writes null), timetz offsets (normalised to UTC by
// ZonedTime), the commit time of snapshot reads (the processing time), and
// the begin and commit records' own positions and time.
var dbzLosses = []struct{ re, repl string }{
	{`"seq":\d+,`, ``},
	{`"amount":"NaN"`, `"amount":null`},
	{`"tz":"04:56:29.368123\+05:30"`, `"tz":"23:26:29.368123+00"`},
	{`"tz":"23:00:00-02"`, `"tz":"01:00:00+00"`},
}

// Every golden Debezium record of the encoder (value with its key record)
// decodes to the native golden event of the same change, but for what the
// envelope does not hold (dbzLosses).
func TestDecodeDebeziumGolden(t *testing.T) {
	files, err := filepath.Glob("../../encode/testdata/golden/debezium/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files (%v)", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			value := readTrimmed(t, f)
			key := readTrimmed(t, filepath.Join(filepath.Dir(f), "key", name))
			want := string(readTrimmed(t, filepath.Join("../../encode/testdata/golden/json", name)))
			e, err := DecodeRecord(FormatAuto, key, value)
			if err != nil {
				t.Fatal(err)
			}
			switch name {
			case "schema.json", "truncate.json": // a schema change record; a truncate skipped by default (empty)
				if e != nil && name == "schema.json" {
					t.Fatalf("a schema change record decoded to %s; want it skipped", e.AppendJSON(nil))
				}
				return
			case "begin.json", "commit.json", "read.json":
				// Their times (and begin/commit positions) are not in the
				// envelope: compare the identity only.
				if e.Op.String() != strings.TrimSuffix(name, ".json") {
					t.Fatalf("op %s; want %s", e.Op, name)
				}
				if name == "read.json" {
					e.CommitTime = e.CommitTime.Truncate(0)
					got := string(e.AppendJSON(nil))
					got = regexp.MustCompile(`"commit_time":"[^"]*",`).ReplaceAllString(got, "")
					want = lossy(want)
					if got != want {
						t.Fatalf("\n got %s\nwant %s", got, want)
					}
				}
				return
			}
			if got := string(e.AppendJSON(nil)); got != lossy(want) {
				t.Fatalf("\n got %s\nwant %s", got, lossy(want))
			}
		})
	}
}

func lossy(s string) string {
	for _, l := range dbzLosses {
		s = regexp.MustCompile(l.re).ReplaceAllString(s, l.repl)
	}
	return s
}

func readTrimmed(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

// With schemas on and off, a change the Debezium encoder writes comes back
// as the same event: every native golden event, decoded, encoded as
// Debezium (value and key) and decoded again, prints as it did (but for
// seq, which travels in a header).
func TestDecodeDebeziumRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("../../encode/testdata/golden/json/*.json")
	for _, payloadOnly := range []bool{false, true} {
		for _, f := range files {
			name := filepath.Base(f)
			// Truncates carry no columns, which the encoder needs.
			if name == "schema.json" || name == "begin.json" || name == "commit.json" || name == "truncate.json" {
				continue
			}
			t.Run(name, func(t *testing.T) {
				e, err := Decode(readTrimmed(t, f))
				if err != nil {
					t.Fatal(err)
				}
				if payloadOnly && e.Rel != nil {
					// Without schemas a json column's text is a string
					// like any other (doc.go): it comes back as text.
					for i := range e.Rel.Columns {
						if c := &e.Rel.Columns[i]; c.Type.Kind == event.KindJSON {
							c.Type = typeText
						}
					}
				}
				got, err := debeziumRoundTrip(e, payloadOnly)
				if err != nil {
					t.Fatal(err)
				}
				if got == nil {
					t.Fatal("decoded to nothing")
				}
				e.Seq = 0
				if e.Op == event.OpRead {
					// A snapshot read's source time is when it was encoded.
					got.CommitTime = e.CommitTime
				}
				if a, b := got.AppendJSON(nil), e.AppendJSON(nil); !bytes.Equal(a, b) {
					t.Fatalf("payload only %v:\n got %s\nwant %s", payloadOnly, a, b)
				}
			})
		}
	}
}

func debeziumRoundTrip(e *event.Event, payloadOnly bool) (*event.Event, error) {
	enc := encode.NewDebezium(encode.Options{DebeziumPayloadOnly: payloadOnly, DebeziumTruncates: true})
	value, err := enc.Encode(nil, e)
	if err != nil {
		return nil, err
	}
	key, ok, err := enc.EncodeKey(nil, e)
	if err != nil {
		return nil, err
	}
	if !ok {
		key = nil
	}
	return DecodeRecord(FormatDebezium, key, value)
}

// Tombstones, the wrong format and bad envelopes: no event, or one error
// that says what is wrong.
func TestDecodeRecordErrors(t *testing.T) {
	if e, err := DecodeRecord(FormatAuto, []byte(`{"id":1}`), nil); e != nil || err != nil {
		t.Fatalf("tombstone: %v, %v; want skipped", e, err)
	}
	if e, err := DecodeRecord(FormatDebezium, nil, []byte(`{"schema":null,"payload":null}`)); e != nil || err != nil {
		t.Fatalf("wrapped tombstone: %v, %v; want skipped", e, err)
	}
	for _, c := range []struct{ format, value, want string }{
		{FormatJSON, `{"payload":{"op":"c"}}`, "native JSON"},
		{FormatDebezium, `{"op":"insert","schema":"public","table":"t"}`, `unknown op "insert"`},
		{FormatDebezium, `{"op":"c","after":{"id":1}}`, `no "source"`},
		{FormatAuto, `{"op":"c","source":{"lsn":1},"after":[1]}`, "after"},
		{FormatAuto, `{"op":"u","source":{"sequence":"[\"x\"]"},"after":{}}`, "sequence"},
		{FormatAuto, `{"status":"END","id":"nope"}`, "xid:commit LSN"},
		{"xml", `{}`, `unknown record format "xml"`},
	} {
		_, err := DecodeRecord(c.format, nil, []byte(c.value))
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s %s: error %v; want one line with %q", c.format, c.value, err, c.want)
		}
	}
}
