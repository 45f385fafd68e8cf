package snapshot

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/event"
)

func TestParseWatermark(t *testing.T) {
	w, err := ParseWatermark([]byte(`{"backfill":"ab12","schema":"public","table":"t","chunk":3,"kind":"low","key":["a","b"]}`))
	want := Watermark{Backfill: "ab12", Schema: "public", Table: "t", Chunk: 3, Kind: WatermarkLow, Key: []string{"a", "b"}}
	if err != nil || !reflect.DeepEqual(w, want) {
		t.Fatalf("%+v, %v", w, err)
	}
	for _, bad := range []string{`{`, `{"backfill":"a","table":"t","chunk":1,"kind":"middle"}`, `{"table":"t","chunk":1,"kind":"low"}`,
		`{"backfill":"a","table":"t","chunk":0,"kind":"high"}`, `[]`, `null`} {
		if _, err := ParseWatermark([]byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "parsing watermark") {
			t.Errorf("%s: error %v", bad, err)
		}
	}
	e := &event.Event{Op: event.OpMessage, Message: &event.Message{Prefix: WatermarkPrefix}}
	if !IsWatermark(e) || IsWatermark(&event.Event{Op: event.OpMessage}) || IsWatermark(&event.Event{Op: event.OpInsert}) {
		t.Error("IsWatermark")
	}
}

// Watermark content comes from the WAL, which anyone may write messages
// to with our prefix: parsing must never panic, and what it accepts must
// survive encoding again.
func FuzzParseWatermark(f *testing.F) {
	f.Add([]byte(`{"backfill":"ab12","schema":"public","table":"t","chunk":3,"kind":"low","key":["a","b"]}`))
	f.Add([]byte(`{"backfill":"x","table":"t","chunk":1,"kind":"high"}`))
	f.Fuzz(func(t *testing.T, content []byte) {
		w, err := ParseWatermark(content)
		if err != nil {
			return
		}
		b, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseWatermark(b)
		if err != nil || !reflect.DeepEqual(w, again) {
			t.Fatalf("%+v became %+v (%v)", w, again, err)
		}
	})
}
