package avrofile

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/sink"
)

// ext ends every file name.
const ext = ".avro"

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("avro file sink is closed")

// Schemas gives the writer schema of an event's record; *encode.Avro
// implements it.
type Schemas interface {
	RecordSchema(e *event.Event) (string, error)
}

// Options tune a Sink; the zero value never rotates.
type Options struct {
	// MaxBytes rotates a topic's file before a batch that finds it at or
	// past MaxBytes; 0 or negative: never.
	MaxBytes int64
	// MaxAge rotates a topic's file at the first Write MaxAge or more
	// after the file was created; 0: never.
	MaxAge time.Duration
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
}

// Sink writes the records of each topic to <dir>/<topic>-<sequence>.avro.
//
// Values must be Avro's single-object encoding (the avro format's default
// off brokers): the sink strips its 10-byte header and keeps the datum,
// and takes a new fingerprint for a new schema. A schema change (a column
// added, dropped or retyped) completes the topic's file and starts the
// next, so every file has one writer schema, in its header, and a reader
// needs no registry. Schema events write nothing: the files carry their
// schemas.
//
// Each Write appends one block per topic it touches and fsyncs those
// files before it returns (sink.Sink's contract). A failed Write cuts the
// files back to where they were, so a crash or an error leaves no torn
// block for the retried batch to follow. After a restart the newest file
// of every topic is cut back to its last complete block (what a crash
// left beyond it was never acked), and writing resumes in a new file:
// pgfeed never appends to a file another run wrote, so a file that is not
// the newest of its topic is complete.
//
// Every topic written keeps its file open: a sink with more topics than
// the process may open files should route tables to fewer topics.
type Sink struct {
	dir     string
	opts    Options
	schemas Schemas

	mu     sync.Mutex
	topics map[string]*topicFile
	last   map[string]int // newest sequence of each topic found on disk at Open
	closed bool
	err    error
}

// topicFile is the open container of one topic.
type topicFile struct {
	f           *os.File
	path        string // f's name, which f.Name() is not: f was created under a temporary one
	enc         *ocf.Encoder
	w           *bufio.Writer
	fingerprint [8]byte
	seq         int
	size        int64 // bytes in f, durable
	created     time.Time
	done        bool // completed (fsynced) and closed: a new schema or a rotation
}

var _ sink.Sink = (*Sink)(nil)

// Open returns a sink writing to dir, created when missing, after cutting
// the newest file of each topic back to its last complete block.
func Open(dir string, schemas Schemas, opts Options) (*Sink, error) {
	if schemas == nil {
		return nil, errors.New("opening avro file sink: no schemas")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("opening avro file sink: creating folder: %w", err)
	}
	s := &Sink{dir: dir, opts: opts, schemas: schemas, topics: map[string]*topicFile{}, last: map[string]int{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("opening avro file sink: listing %q: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ext+".tmp") {
			// A header that a crash kept from being renamed into place.
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("opening avro file sink: %w", err)
			}
			continue
		}
		topic, seq, ok := parseName(e.Name())
		if ok && e.Type().IsRegular() && seq > s.last[topic] {
			s.last[topic] = seq
		}
	}
	for _, topic := range slices.Sorted(func(yield func(string) bool) {
		for t := range s.last {
			if !yield(t) {
				return
			}
		}
	}) {
		path := s.name(topic, s.last[topic])
		if err := Repair(path); err != nil {
			return nil, fmt.Errorf("opening avro file sink: repairing %q: %w", path, err)
		}
	}
	return s, nil
}

// parseName splits "<topic>-<sequence>.avro".
func parseName(name string) (string, int, bool) {
	base, ok := strings.CutSuffix(name, ext)
	i := strings.LastIndexByte(base, '-')
	if !ok || i <= 0 {
		return "", 0, false
	}
	num := base[i+1:]
	if num == "" || strings.Trim(num, "0123456789") != "" {
		return "", 0, false
	}
	seq, err := strconv.Atoi(num)
	return base[:i], seq, err == nil && seq > 0
}

// fileTopic makes a topic safe as a file name: letters, digits, '.', '_'
// and '-' stay, anything else becomes '_'.
func fileTopic(topic string) string {
	b := []byte(topic)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '.' {
		b = append([]byte{'_'}, b...)
	}
	return string(b)
}

func (s *Sink) name(topic string, seq int) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s-%06d%s", topic, seq, ext))
}

// Files returns the paths of the files of topic in dir, oldest first.
func Files(dir, topic string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type seqPath struct {
		seq  int
		path string
	}
	var out []seqPath
	for _, e := range entries {
		if t, seq, ok := parseName(e.Name()); ok && t == fileTopic(topic) {
			out = append(out, seqPath{seq, filepath.Join(dir, e.Name())})
		}
	}
	slices.SortFunc(out, func(a, b seqPath) int { return a.seq - b.seq })
	paths := make([]string, len(out))
	for i := range out {
		paths[i] = out[i].path
	}
	return paths, nil
}

// Write appends each topic's records of the batch as one block of its
// file, starting a new file where the schema changed, and returns once
// every file touched is fsynced.
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
		return fmt.Errorf("writing to avro file sink: %w", err)
	}
	var touched []*topicFile
	err := s.write(batch, &touched)
	if err == nil {
		for _, tf := range touched {
			if tf.done {
				continue // flushed when the batch moved on to its next file
			}
			if err = tf.flush(); err != nil {
				break
			}
		}
	}
	if err != nil {
		s.rollback(touched)
		return fmt.Errorf("writing to avro file sink: %w", err)
	}
	for _, tf := range touched {
		if !tf.done {
			tf.size = tf.written()
		}
	}
	return nil
}

func (s *Sink) write(batch []sink.Record, touched *[]*topicFile) error {
	for i := range batch {
		r := &batch[i]
		if r.Event != nil && r.Event.Op == event.OpSchema {
			continue
		}
		v := r.Value
		if len(v) < 10 || v[0] != 0xC3 || v[1] != 0x01 {
			return fmt.Errorf("record %d of the batch (topic %q) is not in Avro's single-object encoding; the avro file sink needs wire = \"single-object\"", i, r.Topic)
		}
		topic := fileTopic(r.Topic)
		tf := s.topics[topic]
		if tf == nil || !bytes.Equal(tf.fingerprint[:], v[2:10]) || s.due(tf) {
			if tf != nil && slices.Contains(*touched, tf) {
				// Complete this file's block of the batch before the next file.
				if err := tf.flush(); err != nil {
					return err
				}
				tf.size = tf.written()
			}
			schema, err := s.schemas.RecordSchema(r.Event)
			if err != nil {
				return fmt.Errorf("record %d of the batch: %w", i, err)
			}
			if tf, err = s.next(topic, schema, v[2:10]); err != nil {
				return err
			}
		}
		if !slices.Contains(*touched, tf) {
			*touched = append(*touched, tf)
		}
		if _, err := tf.enc.Write(v[10:]); err != nil {
			return err
		}
	}
	return nil
}

// due reports whether tf should rotate before more records.
func (s *Sink) due(tf *topicFile) bool {
	return s.opts.MaxBytes > 0 && tf.size >= s.opts.MaxBytes ||
		s.opts.MaxAge > 0 && s.opts.Now().Sub(tf.created) >= s.opts.MaxAge
}

// next closes topic's file, if open, and creates the next one with
// schema in its header.
func (s *Sink) next(topic, schema string, fingerprint []byte) (*topicFile, error) {
	seq := s.last[topic] + 1
	if old := s.topics[topic]; old != nil {
		seq = old.seq + 1
		old.done = true
		delete(s.topics, topic)
		if err := old.f.Close(); err != nil {
			return nil, fmt.Errorf("closing %q: %w", old.path, err)
		}
	}
	path := s.name(topic, seq)
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("creating %q: it exists already: is another sink writing to this folder?", path)
	}
	// The header goes to a temporary name first, renamed once fsynced, so
	// that a reader listing the folder never meets a file without one
	// (a crash leaves at most a *.avro.tmp, which Open removes).
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating %q: %w", tmp, err)
	}
	tf := &topicFile{f: f, path: path, seq: seq, created: s.opts.Now(), w: bufio.NewWriterSize(f, 64<<10)}
	copy(tf.fingerprint[:], fingerprint)
	// Through the bufio.Writer, not the *os.File, which hamba would take
	// for a file to append to.
	tf.enc, err = ocf.NewEncoder(schema, tf.w,
		ocf.WithBlockLength(0), // one block per Flush: per batch
		ocf.WithEncoderSchemaCache(&avro.SchemaCache{}),
		ocf.WithSchemaMarshaler(func(avro.Schema) ([]byte, error) { return []byte(schema), nil }))
	if err == nil {
		err = tf.w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("creating %q: %w", path, err)
	}
	tf.size = tf.written()
	s.last[topic] = seq
	s.topics[topic] = tf
	return tf, nil
}

// written returns the size of the file as far as written to it.
func (tf *topicFile) written() int64 {
	fi, err := tf.f.Stat()
	if err != nil {
		return tf.size
	}
	return fi.Size() + int64(tf.w.Buffered())
}

// flush writes the pending block and fsyncs the file.
func (tf *topicFile) flush() error {
	if err := tf.enc.Flush(); err != nil {
		return fmt.Errorf("writing %q: %w", tf.path, err)
	}
	if err := tf.w.Flush(); err != nil {
		return fmt.Errorf("writing %q: %w", tf.path, err)
	}
	if err := tf.f.Sync(); err != nil {
		return fmt.Errorf("syncing %q: %w", tf.path, err)
	}
	return nil
}

// rollback cuts the files a failed batch touched back to their last
// durable size and closes them: the next record of each topic starts a
// new file, with a fresh encoder and no half-written block in memory.
// Files the batch completed (a schema change in it) keep their records
// of it, fsynced: the retried batch duplicates them, which a failed batch
// may.
func (s *Sink) rollback(touched []*topicFile) {
	for _, tf := range touched {
		if tf.done {
			continue
		}
		name := tf.path
		err := tf.f.Truncate(tf.size)
		if err == nil {
			err = tf.f.Sync()
		}
		tf.f.Close()
		for topic, open := range s.topics {
			if open == tf {
				delete(s.topics, topic)
			}
		}
		if err == nil {
			// Proves the container whole, and drops a file whose very
			// header did not make it.
			err = Repair(name)
		}
		if err != nil {
			s.err = fmt.Errorf("writing to avro file sink: cutting %q back after a failed write also failed, so the sink stopped: %w", name, err)
		}
	}
}

// Close fsyncs and closes every open file. It is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, tf := range s.topics {
		if err := tf.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing %q: %w", tf.path, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing avro file sink: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening folder %q to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing folder %q: %w", dir, err)
	}
	return nil
}

// Repair cuts an object container file back to its last complete block:
// what a crash left after it (a torn block) was never acknowledged. A file
// whose header itself is incomplete is removed: it holds no record.
func Repair(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	good, headerOK, err := completeLength(f)
	if err != nil {
		return err
	}
	if !headerOK {
		f.Close()
		return os.Remove(path)
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == good {
		return nil
	}
	if err := f.Truncate(good); err != nil {
		return err
	}
	return f.Sync()
}

// completeLength walks the container's header and blocks and returns the
// offset after the last whole block (a block whose sync marker matches),
// reading through a small buffer.
func completeLength(f *os.File) (int64, bool, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, false, err
	}
	r := &offsetReader{r: bufio.NewReaderSize(f, 64<<10)}
	magic := make([]byte, 4)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != "Obj\x01" {
		return 0, false, nil
	}
	// The metadata map: blocks of (key string, value bytes), ending with 0.
	for {
		n, err := binary.ReadVarint(r)
		if err != nil {
			return 0, false, nil
		}
		if n == 0 {
			break
		}
		if n < 0 {
			if _, err := binary.ReadVarint(r); err != nil { // the block's size
				return 0, false, nil
			}
			n = -n
		}
		for range 2 * n {
			l, err := binary.ReadVarint(r)
			if err != nil || l < 0 {
				return 0, false, nil
			}
			if _, err := r.Discard(l); err != nil {
				return 0, false, nil
			}
		}
	}
	var syncMarker, got [16]byte
	if _, err := io.ReadFull(r, syncMarker[:]); err != nil {
		return 0, false, nil
	}
	good := r.off
	for {
		count, err := binary.ReadVarint(r)
		if err != nil || count < 0 {
			return good, true, nil
		}
		size, err := binary.ReadVarint(r)
		if err != nil || size < 0 {
			return good, true, nil
		}
		if _, err := r.Discard(size); err != nil {
			return good, true, nil
		}
		if _, err := io.ReadFull(r, got[:]); err != nil || got != syncMarker {
			return good, true, nil
		}
		good = r.off
	}
}

type offsetReader struct {
	r   *bufio.Reader
	off int64
}

func (o *offsetReader) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	o.off += int64(n)
	return n, err
}

func (o *offsetReader) ReadByte() (byte, error) {
	b, err := o.r.ReadByte()
	if err == nil {
		o.off++
	}
	return b, err
}

func (o *offsetReader) Discard(n int64) (int64, error) {
	var done int64
	for n > 0 {
		k := int(min(n, 1<<30))
		m, err := o.r.Discard(k)
		done += int64(m)
		o.off += int64(m)
		n -= int64(m)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}
