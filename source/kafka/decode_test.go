package kafka

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every golden native JSON event of the encoders decodes to an event that
// encodes back to the same bytes.
func TestDecodeRoundTrip(t *testing.T) {
	files, err := filepath.Glob("../../encode/testdata/golden/json/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files (%v)", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want = bytes.TrimSpace(want)
			e, err := Decode(want)
			if strings.HasPrefix(name, "schema") || strings.HasPrefix(name, "begin") {
				if name == "schema.json" && err == nil {
					t.Fatal("a schema event decoded; want it refused")
				}
				if err != nil {
					return
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := e.AppendJSON(nil); !bytes.Equal(got, want) {
				t.Fatalf("round trip:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// FuzzDecode: no input makes Decode, DecodeDebezium or DecodeRecord panic;
// what Decode decodes encodes to an event that decodes to the same encoding
// again, and what DecodeRecord decodes is an event native JSON can carry.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("../../encode/testdata/golden/json/*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(bytes.TrimSpace(b))
	}
	f.Add([]byte(`{"op":"delete","key":{"id":1},"before":null,"after":null}`))
	dbz, _ := filepath.Glob("../../encode/testdata/golden/debezium/*.json")
	for _, file := range dbz {
		b, _ := os.ReadFile(file)
		f.Add(bytes.TrimSpace(b))
	}
	f.Add([]byte(`{"schema":null,"payload":{"op":"d","before":{"id":1,"v":null},"after":null,"source":{"lsn":1,"sequence":"[null,\"1\"]"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Debezium's envelope (what auto-detection takes for one): no
		// panic, and what decodes is an event native JSON carries.
		if e, err := DecodeRecord(FormatAuto, []byte(`{"id":1}`), b); err == nil && e != nil {
			once := e.AppendJSON(nil)
			if _, err := Decode(once); err != nil {
				t.Fatalf("a decoded Debezium record prints as %s, which does not decode: %v", once, err)
			}
		}
		_, _ = DecodeDebezium(nil, b)
		e, err := Decode(b)
		if err != nil {
			return
		}
		once := e.AppendJSON(nil)
		e2, err := Decode(once)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", once, err)
		}
		if twice := e2.AppendJSON(nil); !bytes.Equal(once, twice) {
			t.Fatalf("not stable:\n%s\n%s", once, twice)
		}
	})
}
