package stdout

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/pgfeed/pgfeed/sink"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("stdout sink is closed")

// bufferSize is large enough that a typical batch goes out in a few write
// calls rather than one per record.
const bufferSize = 64 << 10

// Sink writes record values as lines to an io.Writer.
type Sink struct {
	mu     sync.Mutex // Close may come from a signal handler's goroutine
	bw     *bufio.Writer
	file   *os.File // set when the writer is a regular file, to fsync it
	err    error    // the first write error; the sink is unusable after it
	closed bool
}

var _ sink.Sink = (*Sink)(nil)

// New returns a sink writing to w, or to os.Stdout when w is nil. The sink
// does not close w.
//
// Write returns once its lines are handed to w. When w is an *os.File that
// is a regular file (`pgfeed stream > changes.jsonl`), Write also fsyncs it,
// so that an acked change survives a crash of the machine; a pipe or a
// terminal has nothing to fsync, and the reader having the bytes is as
// durable as it gets.
func New(w io.Writer) *Sink {
	if w == nil {
		w = os.Stdout
	}
	s := &Sink{bw: bufio.NewWriterSize(w, bufferSize)}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			s.file = f
		}
	}
	return s
}

// Write writes the value of each record followed by '\n', then flushes (and
// fsyncs a regular file). A value holding a newline would break the line
// framing for every reader, so such a batch is refused before anything of it
// is written. After an error from the writer, every later Write fails: part of
// a line may have gone out and cannot be taken back.
func (s *Sink) Write(ctx context.Context, batch []sink.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.err != nil {
		return s.err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("writing to stdout sink: %w", err)
	}
	if err := sink.CheckLines(batch); err != nil {
		return fmt.Errorf("writing to stdout sink: %w", err)
	}
	for i := range batch {
		s.bw.Write(batch[i].Value) // errors are sticky in bufio; Flush reports them
		s.bw.WriteByte('\n')
	}
	if err := s.bw.Flush(); err != nil {
		s.err = fmt.Errorf("writing to stdout sink: %w", err)
		return s.err
	}
	if s.file != nil {
		if err := s.file.Sync(); err != nil {
			s.err = fmt.Errorf("syncing stdout sink file %q: %w", s.file.Name(), err)
			return s.err
		}
	}
	return nil
}

// Close flushes what is buffered and makes later writes fail; it does not
// close the writer. It is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.err != nil {
		return nil // reported by the Write that failed
	}
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("flushing stdout sink: %w", err)
	}
	return nil
}
