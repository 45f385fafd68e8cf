package snapshot

import (
	"encoding/json"
	"fmt"

	"github.com/pgfeed/pgfeed/event"
)

// WatermarkPrefix is the pg_logical_emit_message prefix of backfill
// watermarks. The stream side must decode logical messages (pgoutput option
// messages 'true') and hand them to Merger.Observe like any other event; the
// Merger swallows the ones with this prefix.
const WatermarkPrefix = "pgfeed.backfill"

// The kinds of watermark: a low one is written before a chunk is read, a
// high one after.
const (
	WatermarkLow  = "low"
	WatermarkHigh = "high"
)

// Watermark is the content of a watermark message, as JSON.
type Watermark struct {
	// Backfill identifies one Walker run, so that watermarks a crashed run
	// left in the WAL never match the chunks of a later one.
	Backfill string `json:"backfill"`
	Schema   string `json:"schema"`
	Table    string `json:"table"`
	// Chunk numbers the chunks of one run from 1; a chunk read again after
	// a retry gets a new number.
	Chunk int    `json:"chunk"`
	Kind  string `json:"kind"`
	// Key names the walking key's columns (low watermarks only), so that
	// the Merger can pick them out of the stream's rows before the chunk
	// itself arrives.
	Key []string `json:"key,omitempty"`
}

// ParseWatermark decodes and checks the content of a watermark message.
func ParseWatermark(content []byte) (Watermark, error) {
	var w Watermark
	if err := json.Unmarshal(content, &w); err != nil {
		return Watermark{}, fmt.Errorf("parsing watermark: %w", err)
	}
	switch {
	case w.Kind != WatermarkLow && w.Kind != WatermarkHigh:
		return Watermark{}, fmt.Errorf("parsing watermark: kind %q, want %q or %q", w.Kind, WatermarkLow, WatermarkHigh)
	case w.Backfill == "" || w.Table == "" || w.Chunk < 1:
		return Watermark{}, fmt.Errorf("parsing watermark: backfill, table and chunk (>= 1) are required")
	}
	if len(w.Key) == 0 {
		w.Key = nil // "key":[] means no key, as a missing one does
	}
	return w, nil
}

// IsWatermark reports whether e is a watermark message (by its prefix).
func IsWatermark(e *event.Event) bool {
	return e.Op == event.OpMessage && e.Message != nil && e.Message.Prefix == WatermarkPrefix
}

func (w Watermark) ref() chunkRef {
	return chunkRef{backfill: w.Backfill, table: tableName{w.Schema, w.Table}, no: w.Chunk}
}

type tableName struct{ schema, table string }

type chunkRef struct {
	backfill string
	table    tableName
	no       int
}
