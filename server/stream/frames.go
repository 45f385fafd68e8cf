package stream

import (
	"bytes"
	"fmt"

	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/event"
)

// The formats of /v1/lr/stream. wal2json frames are pgdeltastream's: one
// per transaction. The others are one frame per change, as pgfeed's
// encoders write them.
const (
	formatWal2JSON = "wal2json"
)

var streamFormats = []string{formatWal2JSON, encode.FormatJSON, encode.FormatDebezium, encode.FormatCloudEvents}

// txnFrames builds pgdeltastream's frames, one per transaction:
//
//	{"nextlsn":"0/170FCB0","change":[{"kind":"insert",...},...]}
//
// each change as the wal2json plugin (format-version 1) prints it, through
// encode.Wal2JSON. A transaction larger than max bytes is split: the parts
// before the last have no nextlsn, since only the whole transaction may be
// acked.
type txnFrames struct {
	enc     encode.Wal2JSON
	max     int
	changes []byte // the transaction's changes so far, comma separated
	n       int    // changes in it
	scratch []byte
}

var (
	wal2jsonHead = []byte(`{"change":[`)
	wal2jsonTail = []byte(`]}`)
)

// add appends e's change. It returns a full part to send, if the
// transaction outgrew max (nil otherwise), valid until the next call.
func (f *txnFrames) add(e *event.Event) ([]byte, error) {
	b, err := f.enc.Encode(f.scratch[:0], e)
	if err != nil {
		return nil, err
	}
	f.scratch = b
	// The encoder writes {"change":[CHANGE]}: the change is what is inside.
	if !bytes.HasPrefix(b, wal2jsonHead) || !bytes.HasSuffix(b, wal2jsonTail) {
		return nil, fmt.Errorf("encoding %s event as wal2json: unexpected shape %.40q", e.Op, b)
	}
	change := b[len(wal2jsonHead) : len(b)-len(wal2jsonTail)]
	var part []byte
	if f.n > 0 && len(f.changes)+len(change) > f.max {
		part = f.frame(nil)
	}
	if f.n > 0 {
		f.changes = append(f.changes, ',')
	}
	f.changes = append(f.changes, change...)
	f.n++
	return part, nil
}

// commit returns the transaction's (last) frame, with nextlsn.
func (f *txnFrames) commit(nextLSN event.LSN) []byte { return f.frame(&nextLSN) }

// frame builds a frame of the changes gathered and starts over.
func (f *txnFrames) frame(next *event.LSN) []byte {
	out := make([]byte, 0, len(f.changes)+40)
	out = append(out, '{')
	if next != nil {
		out = append(out, `"nextlsn":"`...)
		out = next.AppendText(out)
		out = append(out, `",`...)
	}
	out = append(out, `"change":[`...)
	out = append(out, f.changes...)
	out = append(out, "]}"...)
	f.changes, f.n = f.changes[:0], 0
	return out
}
