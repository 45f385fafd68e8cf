package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
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
// when another Store holds the file.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: LockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening checkpoint store %q: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("opening checkpoint store %q: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
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
	return &Store{db: db, path: path}, nil
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
	err := s.db.Update(func(tx *bolt.Tx) error {
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
	err = s.db.View(func(tx *bolt.Tx) error {
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
	err = s.db.View(func(tx *bolt.Tx) error {
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
		return 0, false, fmt.Errorf("decoding position: %d bytes, want 8 (file corrupt or written by another program)", len(v))
	}
	return event.LSN(binary.BigEndian.Uint64(v)), true, nil
}
