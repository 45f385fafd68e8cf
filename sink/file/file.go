package file

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgfeed/pgfeed/sink"
)

// DefaultMaxBytes is the size at which files rotate when Options.MaxBytes is
// zero: small enough to copy or ship one at a time, large enough that a busy
// database does not make thousands of files a day.
const DefaultMaxBytes = 64 << 20

// DefaultPrefix starts file names when Options.Prefix is empty.
const DefaultPrefix = "changes"

// ext ends every file name; readers and Files recognise files by it.
const ext = ".jsonl"

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("file sink is closed")

// Options tune a Sink. The zero value rotates at DefaultMaxBytes and never by
// age.
type Options struct {
	// Prefix starts every file name: <Prefix>-<sequence>.jsonl, the sequence
	// counting from 000001. Empty means DefaultPrefix. It must not contain a
	// path separator.
	Prefix string
	// MaxBytes is the largest a file may grow: a record that would take the
	// active file past it goes to a new file, unless the file is empty (a
	// record larger than MaxBytes gets a file of its own). Zero means
	// DefaultMaxBytes; negative means no limit.
	MaxBytes int64
	// MaxAge rotates the active file at the first Write that comes MaxAge or
	// more after the file's first record. Zero means never. A file resumed
	// after a restart counts from the restart, as the time of its first
	// record is not kept. No timer runs between writes, so a quiet database
	// leaves its last file open until the next change.
	MaxAge time.Duration
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
}

// Sink appends records to the files of one folder.
//
// Files are never renamed: the active file is always the one with the
// highest sequence number. Rotation fsyncs and closes it and creates the
// next one, so a file that is not the newest is complete and will not change
// again, and sorting names (or Files) gives the order of the records.
//
// Two sinks, in one process or two, must not share a folder and prefix.
type Sink struct {
	dir  string
	opts Options

	mu      sync.Mutex // Close may come from another goroutine than Write
	f       *os.File
	bw      *bufio.Writer
	seq     int
	size    int64     // bytes in f, including what bw holds
	started time.Time // when f got its first record (or was resumed), for MaxAge
	err     error     // set when the sink cannot go on; every Write returns it
	closed  bool
}

var _ sink.Sink = (*Sink)(nil)

// Open returns a sink writing to dir, creating the folder when missing. It
// appends to the newest existing file of the prefix, first cutting off a
// last line left incomplete by a crash (a line that was never acked: the
// pipeline delivers it again), or creates the first file. Files are created
// with mode 0600, since they hold row data.
func Open(dir string, opts Options) (*Sink, error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(opts.Prefix, `/\`) {
		return nil, fmt.Errorf("opening file sink: prefix %q contains a path separator; use the folder for that", opts.Prefix)
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("opening file sink: creating folder: %w", err)
	}
	s := &Sink{dir: dir, opts: opts}
	files, err := list(dir, opts.Prefix)
	if err != nil {
		return nil, fmt.Errorf("opening file sink: %w", err)
	}
	if len(files) == 0 {
		err = s.create(1)
	} else {
		err = s.resume(files[len(files)-1])
	}
	if err != nil {
		return nil, fmt.Errorf("opening file sink: %w", err)
	}
	return s, nil
}

// Check runs the checks of Open that need no change on disk: the prefix,
// and that dir, when it exists, is a folder whose files can be listed.
// pgfeed run --check uses it; its errors read as Open's.
func Check(dir string, opts Options) error {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(opts.Prefix, `/\`) {
		return fmt.Errorf("opening file sink: prefix %q contains a path separator; use the folder for that", opts.Prefix)
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // Open creates it
	case err != nil:
		return fmt.Errorf("opening file sink: creating folder: %w", err)
	case !fi.IsDir():
		// What os.MkdirAll says of a path that is a file.
		return fmt.Errorf("opening file sink: creating folder: %w", &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR})
	}
	if _, err := list(dir, opts.Prefix); err != nil {
		return fmt.Errorf("opening file sink: %w", err)
	}
	return nil
}

// Files returns the paths of the files a sink with this prefix ("" for
// DefaultPrefix) wrote in dir, oldest first; the last one is the active file
// while a sink is open.
func Files(dir, prefix string) ([]string, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	files, err := list(dir, prefix)
	if err != nil {
		return nil, err
	}
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = filepath.Join(dir, f.name)
	}
	return paths, nil
}

type seqFile struct {
	name string
	seq  int
}

// list returns the sink's files in dir by sequence. It sorts by the parsed
// number, not the name, so that a sequence past 999999 still comes last.
func list(dir, prefix string) ([]seqFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing %q: %w", dir, err)
	}
	var files []seqFile
	for _, e := range entries {
		num, ok := strings.CutPrefix(e.Name(), prefix+"-")
		if !ok {
			continue
		}
		if num, ok = strings.CutSuffix(num, ext); !ok || num == "" || strings.Trim(num, "0123456789") != "" {
			continue
		}
		seq, err := strconv.Atoi(num)
		if err != nil || seq <= 0 || !e.Type().IsRegular() {
			continue
		}
		files = append(files, seqFile{e.Name(), seq})
	}
	slices.SortFunc(files, func(a, b seqFile) int { return a.seq - b.seq })
	return files, nil
}

func (s *Sink) name(seq int) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s-%06d%s", s.opts.Prefix, seq, ext))
}

// create makes file number seq the active file. The folder is fsynced too:
// without it, a crash could lose the new file's name along with records
// that Write had reported durable.
func (s *Sink) create(seq int) error {
	path := s.name(seq)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("creating %q: %w", path, err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	s.activate(f, seq, 0)
	return nil
}

// resume makes an existing file the active one, after cutting off an
// incomplete last line.
func (s *Sink) resume(sf seqFile) error {
	path := filepath.Join(s.dir, sf.name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("opening %q: %w", path, err)
	}
	size, err := completeLength(f)
	if err == nil {
		err = truncate(f, size)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("repairing the end of %q: %w", path, err)
	}
	s.activate(f, sf.seq, size)
	return nil
}

func (s *Sink) activate(f *os.File, seq int, size int64) {
	s.f, s.seq, s.size = f, seq, size
	if size > 0 {
		s.started = s.opts.Now()
	}
	if s.bw == nil {
		s.bw = bufio.NewWriterSize(f, 256<<10)
	} else {
		s.bw.Reset(f)
	}
}

// completeLength returns the length of f up to and including its last '\n'.
func completeLength(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := fi.Size()
	buf := make([]byte, 64<<10)
	for end > 0 {
		n := min(end, int64(len(buf)))
		if _, err := f.ReadAt(buf[:n], end-n); err != nil && err != io.EOF {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return end - n + int64(i) + 1, nil
		}
		end -= n
	}
	return 0, nil
}

// truncate cuts f to size if it is longer, durably.
func truncate(f *os.File, size int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == size {
		return nil
	}
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// Write appends the value of each record and a '\n', rotating as the options
// say, and returns once everything is fsynced. A value holding a newline
// would break the line framing, so such a batch is refused before anything
// of it is written. When writing fails, the active file is cut back to its
// last complete record so that the redelivered batch does not follow a torn
// line; if even that fails, the sink stays failed and must be reopened. A
// rotation that cannot create the next file is retried by the next Write.
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
		return fmt.Errorf("writing to file sink: %w", err)
	}
	if err := sink.CheckLines(batch); err != nil {
		return fmt.Errorf("writing to file sink: %w", err)
	}
	if len(batch) == 0 {
		return nil
	}
	if s.f == nil {
		// A rotation closed the last file but could not create the next
		// (the folder unwritable, replaced or full for a moment): try
		// again now, so the sink recovers without a restart.
		if err := s.reopen(); err != nil {
			return fmt.Errorf("writing to file sink: %w", err)
		}
	}
	if err := s.write(batch); err != nil {
		return s.recover(err)
	}
	return nil
}

func (s *Sink) write(batch []sink.Record) error {
	if s.opts.MaxAge > 0 && s.size > 0 && s.opts.Now().Sub(s.started) >= s.opts.MaxAge {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	for i := range batch {
		n := int64(len(batch[i].Value)) + 1
		if s.opts.MaxBytes > 0 && s.size > 0 && s.size+n > s.opts.MaxBytes {
			if err := s.rotate(); err != nil {
				return err
			}
		}
		if s.size == 0 && s.opts.MaxAge > 0 {
			s.started = s.opts.Now()
		}
		s.bw.Write(batch[i].Value) // errors are sticky in bufio; Flush reports them
		s.bw.WriteByte('\n')
		s.size += n
	}
	return s.sync()
}

// sync flushes the buffer and fsyncs the active file.
func (s *Sink) sync() error {
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("writing %q: %w", s.f.Name(), err)
	}
	if err := s.f.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the dirty pages
		// and a retry can report success for data that is gone, so nothing
		// written to this file can be trusted any more: stop for good.
		s.err = fmt.Errorf("writing to file sink: syncing %q (stopped; reopen the sink to resume from the acked position): %w", s.f.Name(), err)
		return s.err
	}
	return nil
}

// rotate completes the active file and starts the next one. The records of
// the current batch already in the old file are fsynced with it. When the
// next file cannot be created, the sink is left without an active file and
// the next Write tries again (see reopen).
func (s *Sink) rotate() error {
	if err := s.sync(); err != nil {
		return err
	}
	// The old file is durable now; an error closing it cannot lose what
	// it holds, so the sink moves on to the next file either way.
	name := s.f.Name()
	cerr := s.f.Close()
	s.f = nil
	if cerr != nil {
		return fmt.Errorf("rotating: closing %q: %w", name, cerr)
	}
	if err := s.create(s.seq + 1); err != nil {
		return fmt.Errorf("rotating: %w", err)
	}
	return nil
}

// reopen makes a new active file after a failed rotation. The file the
// failed attempt may have left (created, but its folder entry not
// fsynced) is resumed rather than skipped, so that the sequence has no
// hole; otherwise the next number is created.
func (s *Sink) reopen() error {
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return fmt.Errorf("rotating: creating folder: %w", err)
	}
	files, err := list(s.dir, s.opts.Prefix)
	if err != nil {
		return fmt.Errorf("rotating: %w", err)
	}
	if n := len(files); n > 0 && files[n-1].seq > s.seq {
		err = s.resume(files[n-1])
	} else {
		err = s.create(s.seq + 1)
	}
	if err != nil {
		return fmt.Errorf("rotating: %w", err)
	}
	return nil
}

// recover handles a failed write: it drops what is buffered and cuts the
// active file back to its last complete line. Whole records of the batch
// may remain (the pipeline delivers the batch again; duplicates of a failed
// batch are allowed), torn ones may not.
func (s *Sink) recover(cause error) error {
	if s.err != nil { // already final, see sync
		return s.err
	}
	err := fmt.Errorf("writing to file sink: %w", cause)
	if s.f == nil { // failed between closing a file and creating the next: Write retries
		return err
	}
	s.bw.Reset(s.f)
	size, rerr := completeLength(s.f)
	if rerr == nil {
		rerr = truncate(s.f, size)
	}
	if rerr != nil {
		s.err = fmt.Errorf("%w; cutting %q back to its last complete line also failed, so the sink stopped: %w", err, s.f.Name(), rerr)
		return s.err
	}
	s.size = size
	return err
}

// Close fsyncs and closes the active file. It is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.f == nil {
		return nil
	}
	var err error
	if s.err == nil {
		err = s.sync() // nothing is buffered between writes; this is cheap insurance
	}
	if cerr := s.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing %q: %w", s.f.Name(), cerr)
	}
	if err != nil {
		return fmt.Errorf("closing file sink: %w", err)
	}
	return nil
}

// Path returns the active file, the one the next record goes to unless it
// rotates first.
func (s *Sink) Path() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.name(s.seq)
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
