package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/pgfeed/pgfeed/event"
)

// LockTimeout is how long Open waits for the file lock before giving up.
// bbolt holds an exclusive lock on the file while a Store is open, so a second
// pgfeed pointed at the same file fails fast instead of hanging.
const LockTimeout = time.Second

// ErrLocked is returned (wrapped) by Open when another Store, in this process
// or another one, holds the file.
var ErrLocked = errors.New("checkpoint file is in use by another pgfeed process; stop it or choose another checkpoint path")

// Top-level buckets. Each holds one nested bucket per source.
var (
	bucketPositions = []byte("positions") // sink name -> 8-byte big-endian LSN
	bucketProgress  = []byte("progress")  // table name -> JSON Progress
	bucketMarks     = []byte("marks")     // 8-byte time key -> 8-byte LSN
)

// Store is an open checkpoint file. Its methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
}

// Open opens the checkpoint file at path, creating it (but not its folder)
// when missing. It fails with an error wrapping ErrLocked after LockTimeout
// when another Store holds the file, and with a *CorruptError when the file
// is damaged or not a checkpoint file.
func Open(path string) (*Store, error) {
	// Verify first: its read-only opens check the file's length before
	// bbolt reads the freelist, so that a file cut short is reported as
	// such, the same way by pgfeed run --check.
	if err := Verify(path); err != nil {
		return nil, err
	}
	db, err := openBolt(path, bolt.Options{Timeout: LockTimeout})
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, path: path}
	if err := s.check(); err != nil {
		db.Close()
		return nil, err
	}
	err = s.update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPositions, bucketProgress, bucketMarks} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising checkpoint store %q: %w", path, err)
	}
	return s, nil
}

// Verify checks the checkpoint file at path as Open does, without creating
// it or writing to it: nil when it is missing (Open creates it) or sound,
// a *CorruptError when it is damaged. A file that another Store holds (a
// pgfeed running with it) is not read, and is no error: that pgfeed opened
// it, so it was sound. pgfeed run --check uses it.
func Verify(path string) error {
	if fi, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) || err == nil && fi.Size() == 0 {
		return nil // Open creates or initialises it
	}
	// First without the freelist: a read-only open reads the meta pages
	// only, and check compares the file's length with what they say.
	db, err := openBolt(path, bolt.Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
	if errors.Is(err, ErrLocked) {
		return nil
	}
	if err != nil {
		return err
	}
	err = (&Store{db: db, path: path}).check()
	db.Close()
	if err != nil {
		return err
	}
	// Then the freelist page too, which a writable open reads.
	db, err = openBolt(path, bolt.Options{ReadOnly: true, PreLoadFreelist: true, Timeout: 100 * time.Millisecond})
	if errors.Is(err, ErrLocked) {
		return nil
	}
	if err != nil {
		return err
	}
	return db.Close()
}

// openBolt is bolt.Open with its errors classified (see openError) and its
// panics on damaged pages, and faults reading past the end of a file cut
// short, turned into a *CorruptError. The file bbolt opened is then
// unlocked and closed, so that no lock is left behind (closing alone would
// not release it while the file is still mapped).
func openBolt(path string, opts bolt.Options) (db *bolt.DB, err error) {
	var file *os.File
	defer func() {
		if r := recover(); r != nil {
			if file != nil {
				unlock(file)
				file.Close()
			}
			db, err = nil, &CorruptError{Path: path, Err: fmt.Errorf("%v", r)}
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	opts.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	db, err = bolt.Open(path, 0o600, &opts)
	if err != nil {
		return nil, openError(path, err)
	}
	return db, nil
}

// check reads every page of the file once, so that damage is found when
// pgfeed starts rather than in the middle of a run. A checkpoint file is
// small (a position per sink, a progress entry per table, a bounded list
// of retention marks), so this takes milliseconds. It does not use
// bolt.Tx.Check, which reads pages in a goroutine of its own where a fault
// cannot be recovered.
func (s *Store) check() error {
	fi, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("opening checkpoint store %q: %w", s.path, err)
	}
	return s.view(func(tx *bolt.Tx) error {
		// A file cut short: its meta page names pages it no longer has.
		if need := tx.Size(); need > fi.Size() {
			return &CorruptError{Path: s.path, Err: fmt.Errorf("the file has %d bytes but its pages need %d: it was cut short", fi.Size(), need)}
		}
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) })
	})
}

// walk reads every key and value of b and of the buckets nested in it.
func walk(b *bolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if nested := b.Bucket(k); nested != nil {
				return walk(nested)
			}
		}
		return nil
	})
}

// openError classifies an error of bolt.Open: the lock held elsewhere, the
// file system refusing (a missing folder, permissions), or a file that is
// not a bbolt file or is damaged.
func openError(path string, err error) error {
	var pathErr *fs.PathError
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("opening checkpoint store %q: %w", path, ErrLocked)
	case errors.As(err, &pathErr):
		return fmt.Errorf("opening checkpoint store %q: %w", path, err)
	default:
		// ErrInvalid, ErrChecksum, ErrVersionMismatch, "file size too small".
		return &CorruptError{Path: path, Err: err}
	}
}

// ErrCorrupt is wrapped by every *CorruptError.
var ErrCorrupt = errors.New("checkpoint file is corrupt")

// CorruptError reports a checkpoint file that bbolt cannot read: it was
// damaged (a disk or file system fault, a copy cut short) or is not a
// checkpoint file at all.
type CorruptError struct {
	Path string
	Err  error // bbolt's error, or the value it panicked with
}

// Error is one line that names the file and the way out. Moving the file
// away loses nothing that Postgres still has: a source then starts from its
// slot's confirmed position, which is never above what every sink made
// durable, so changes after it are delivered again. What the file alone
// knew is lost: an unfinished backfill is not resumed, and replay windows
// (retain) start over. (An unfinished initial snapshot is not: its state
// is kept beside the slot, in the source database.)
func (e *CorruptError) Error() string {
	return fmt.Sprintf("checkpoint file %s is corrupt (%v): move it away and restart; "+
		"each source resumes from its slot's confirmed position and delivers later changes again, "+
		"but an unfinished backfill is not resumed (request it again with pgfeed backfill)", e.Path, e.Err)
}

func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

// recoverCorrupt turns a panic of bbolt (which it raises on damaged pages)
// into a *CorruptError in *err. Deferred by every function that reads pages.
func recoverCorrupt(path string, err *error) {
	if r := recover(); r != nil {
		*err = &CorruptError{Path: path, Err: fmt.Errorf("%v", r)}
	}
}

// view and update are db.View and db.Update with bbolt's panics, and
// faults reading the mapped file, recovered: a file damaged while pgfeed
// runs fails the call with a *CorruptError instead of crashing the
// process. bbolt rolls the transaction back (and releases its locks)
// before the panic reaches here.
func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(s.path, &err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return s.damaged(s.db.View(fn))
}

func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(s.path, &err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return s.damaged(s.db.Update(fn))
}

// errBadValue is wrapped by the errors of values that cannot be decoded:
// bbolt read the page, but what it holds is not what pgfeed wrote.
var errBadValue = errors.New("a stored value is damaged")

// damaged turns an error wrapping errBadValue into a *CorruptError.
func (s *Store) damaged(err error) error {
	var ce *CorruptError
	if errors.Is(err, errBadValue) && !errors.As(err, &ce) {
		return &CorruptError{Path: s.path, Err: err}
	}
	return err
}

// Close releases the file and its lock. Calling it again returns nil; any
// other method called after Close returns an error.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing checkpoint store %q: %w", s.path, err)
	}
	return nil
}

// Path returns the file the Store was opened from.
func (s *Store) Path() string { return s.path }

// SetPosition records that sink has made every change up to lsn durable for
// source (a pipeline's source, typically named after its slot). The value is
// stored as given, even when lower than the previous one: moving a sink back
// (for a replay) only causes redelivery, never loss.
func (s *Store) SetPosition(source, sink string, lsn event.LSN) error {
	if err := checkNames("source", source, "sink", sink); err != nil {
		return fmt.Errorf("storing position of sink %q: %w", sink, err)
	}
	err := s.update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketPositions).CreateBucketIfNotExists([]byte(source))
		if err != nil {
			return err
		}
		return b.Put([]byte(sink), encodeLSN(lsn))
	})
	if err != nil {
		return fmt.Errorf("storing position of sink %q for source %q: %w", sink, source, err)
	}
	return nil
}

// Position returns the durable position of sink for source; ok is false when
// the sink never stored one.
func (s *Store) Position(source, sink string) (lsn event.LSN, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPositions).Bucket([]byte(source))
		if b == nil {
			return nil
		}
		lsn, ok, err = decodeLSN(b.Get([]byte(sink)))
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("reading position of sink %q for source %q: %w", sink, source, err)
	}
	return lsn, ok, nil
}

// Lowest returns the lowest durable position among sinks for source: the
// position that every one of them has made durable, hence the one that may be
// confirmed to Postgres. ok is false when sinks is empty or any of them never
// stored a position, because then nothing is known to be durable everywhere.
// Sinks stored but not listed (removed from the configuration) are ignored.
func (s *Store) Lowest(source string, sinks []string) (lowest event.LSN, ok bool, err error) {
	if len(sinks) == 0 {
		return 0, false, nil
	}
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPositions).Bucket([]byte(source))
		if b == nil {
			return nil
		}
		for i, name := range sinks {
			lsn, found, err := decodeLSN(b.Get([]byte(name)))
			if err != nil {
				return fmt.Errorf("sink %q: %w", name, err)
			}
			if !found {
				lowest, ok = 0, false
				return nil
			}
			if i == 0 || lsn < lowest {
				lowest = lsn
			}
		}
		ok = true
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("reading lowest position for source %q: %w", source, err)
	}
	return lowest, ok, nil
}

func checkNames(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return fmt.Errorf("empty %s name", pairs[i])
		}
	}
	return nil
}

func encodeLSN(lsn event.LSN) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(lsn))
}

func decodeLSN(v []byte) (event.LSN, bool, error) {
	if v == nil {
		return 0, false, nil
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("%w: a position of %d bytes, want 8", errBadValue, len(v))
	}
	return event.LSN(binary.BigEndian.Uint64(v)), true, nil
}
