package avrofile

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/sink/sinktest"
)

// lineSchema holds the suite's JSON values, one string per record.
const lineSchema = `{"type":"record","name":"Line","namespace":"sinktest","fields":[{"name":"json","type":"string"}]}`

type fixedSchema string

func (s fixedSchema) RecordSchema(*event.Event) (string, error) { return string(s), nil }

// singleObject wraps value as a single-object datum of lineSchema (the
// fingerprint is only compared by the sink, never computed).
func singleObject(fp byte, value []byte) []byte {
	b := []byte{0xC3, 0x01, fp, 0, 0, 0, 0, 0, 0, 0}
	b = binary.AppendVarint(b, int64(len(value)))
	return append(b, value...)
}

// avroSink is the sink under the suite: it turns the suite's values into
// datums on the way in, as the avro encoder would have.
type avroSink struct{ *Sink }

func (a avroSink) Write(ctx context.Context, batch []sink.Record) error {
	conv := make([]sink.Record, len(batch))
	for i, r := range batch {
		conv[i] = r
		conv[i].Value = singleObject(1, r.Value)
	}
	return a.Sink.Write(ctx, conv)
}

// readTopic returns the json field of every record of topic's files,
// read by goavro.
func readTopic(t *testing.T, dir, topic string) [][]byte {
	t.Helper()
	paths, err := Files(dir, topic)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		r, err := goavro.NewOCFReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for r.Scan() {
			v, err := r.Read()
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			out = append(out, []byte(v.(map[string]any)["json"].(string)))
		}
		if r.Err() != nil {
			t.Fatalf("%s: %v", p, r.Err())
		}
	}
	return out
}

func TestConformance(t *testing.T) {
	for name, opts := range map[string]Options{"Defaults": {}, "Rotating": {MaxBytes: 4096}} {
		t.Run(name, func(t *testing.T) {
			sinktest.Run(t, func(t *testing.T) sinktest.Target {
				dir := t.TempDir()
				s, err := Open(dir, fixedSchema(lineSchema), opts)
				if err != nil {
					t.Fatal(err)
				}
				return sinktest.Target{Sink: avroSink{s}, Read: func(t *testing.T) [][]byte { return readTopic(t, dir, sinktest.Topic) }}
			})
		})
	}
}

// A batch with a value that is not a single-object datum fails with one
// line that says so, and leaves no part of itself in the file; a schema
// change (a new fingerprint) starts a new file.
func TestBadValueAndSchemaChange(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, fixedSchema(lineSchema), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := func(fp byte, v string) sink.Record {
		return sink.Record{Topic: "public.t", Event: &event.Event{Op: event.OpInsert}, Value: singleObject(fp, []byte(v))}
	}
	ctx := context.Background()
	if err := s.Write(ctx, []sink.Record{rec(1, "a")}); err != nil {
		t.Fatal(err)
	}
	err = s.Write(ctx, []sink.Record{rec(1, "b"), {Topic: "public.t", Value: []byte(`{"json":1}`)}})
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), `record 1 of the batch (topic "public.t") is not in Avro's single-object encoding`) {
		t.Fatalf("bad value: %v", err)
	}
	if got := readTopic(t, dir, "public.t"); len(got) != 1 || string(got[0]) != "a" {
		t.Fatalf("after the failed batch: %q", got)
	}
	if err := s.Write(ctx, []sink.Record{rec(1, "b"), rec(2, "c")}); err != nil {
		t.Fatal(err)
	}
	if got := readTopic(t, dir, "public.t"); len(got) != 3 || string(got[2]) != "c" {
		t.Fatalf("after the retry: %q", got)
	}
	paths, _ := Files(dir, "public.t")
	// The first file, the one after the failed batch (which closed the
	// first), and the one of the second fingerprint.
	if len(paths) != 3 {
		t.Fatalf("files %v", paths)
	}
}

// Repair removes a file whose header is torn, and keeps a whole one.
func TestRepair(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, fixedSchema(lineSchema), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), []sink.Record{{Topic: "x", Value: singleObject(1, []byte("v"))}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	paths, _ := Files(dir, "x")
	data, _ := os.ReadFile(paths[0])
	whole := int64(len(data))
	if err := Repair(paths[0]); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(paths[0]); fi.Size() != whole {
		t.Fatalf("a whole file changed: %d bytes, was %d", fi.Size(), whole)
	}
	if err := os.WriteFile(paths[0], data[:10], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Repair(paths[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(paths[0]); !os.IsNotExist(err) {
		t.Fatalf("a file with a torn header is still there: %v", err)
	}
}
