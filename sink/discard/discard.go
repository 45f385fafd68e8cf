package discard

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/pgfeed/pgfeed/sink"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("discard sink is closed")

// Sink drops records. The zero value is ready to use. Records and Bytes may
// be read from any goroutine while another one writes.
type Sink struct {
	records atomic.Uint64
	bytes   atomic.Uint64
	closed  atomic.Bool
}

var _ sink.Sink = (*Sink)(nil)

// New returns a discard sink.
func New() *Sink { return &Sink{} }

// Write counts the batch and drops it. Like every sink it fails after Close
// and when ctx is already done, so that a pipeline behaves the same with it
// as with a real destination.
func (s *Sink) Write(ctx context.Context, batch []sink.Record) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("writing to discard sink: %w", err)
	}
	var n uint64
	for i := range batch {
		n += uint64(len(batch[i].Value))
	}
	s.records.Add(uint64(len(batch)))
	s.bytes.Add(n)
	return nil
}

// Close makes later writes fail. It is idempotent.
func (s *Sink) Close() error {
	s.closed.Store(true)
	return nil
}

// Records returns how many records Write has accepted.
func (s *Sink) Records() uint64 { return s.records.Load() }

// Bytes returns the total size of the values of the records Write has
// accepted (keys and framing are not counted).
func (s *Sink) Bytes() uint64 { return s.bytes.Load() }
