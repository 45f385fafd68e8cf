package checkpoint

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pgfeed/pgfeed/event"
)

// Retention is how much already-delivered history a source keeps replayable
// (`retain` in the configuration, the window of `pgfeed replay --from`):
// pgfeed holds back what it confirms to Postgres so that the slot keeps the
// WAL of that window. The zero value keeps nothing: everything durable in
// every sink is confirmed at once. When both fields are set, the larger
// window wins.
type Retention struct {
	// Age keeps every change made durable within the last Age.
	Age time.Duration
	// Bytes keeps at least this many bytes of WAL behind the durable position.
	Bytes uint64
}

// Mark says that at time At, every change up to LSN was durable in every sink
// of a source.
type Mark struct {
	At  time.Time
	LSN event.LSN
}

// MarkInterval is the smallest gap between two stored marks of a source.
// Marks closer than that are dropped, which bounds the log to one entry per
// second of the retention window and only makes the window err on the long
// side, by at most MarkInterval.
const MarkInterval = time.Second

// AddMark records m for source and prunes the marks that keep no longer
// needs as of m.At. It is meant to be called each time the lowest durable
// position advances. A mark that does not move forward (an LSN not above the
// last mark's, or a time before it, as when the clock steps back) or that
// comes within MarkInterval of the last one is not stored; the error is nil.
func (s *Store) AddMark(source string, m Mark, keep Retention) error {
	if err := checkNames("source", source); err != nil {
		return fmt.Errorf("storing retention mark: %w", err)
	}
	err := s.update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketMarks).CreateBucketIfNotExists([]byte(source))
		if err != nil {
			return err
		}
		c := b.Cursor()
		if k, v := c.Last(); k != nil {
			last, err := decodeMark(k, v)
			if err != nil {
				return err
			}
			if m.LSN <= last.LSN || m.At.Sub(last.At) < MarkInterval {
				return nil
			}
		}
		if err := b.Put(encodeTime(m.At), encodeLSN(m.LSN)); err != nil {
			return err
		}
		return prune(b, m.At, keep)
	})
	if err != nil {
		return fmt.Errorf("storing retention mark %s for source %q: %w", m.LSN, source, err)
	}
	return nil
}

// prune deletes the marks older than the one that ConfirmableAt would pick
// at now. Without an age window only the newest mark is kept, so that the log
// is still there, short, if a window is configured later.
func prune(b *bolt.Bucket, now time.Time, keep Retention) error {
	c := b.Cursor()
	var keepFrom []byte // the oldest key to keep
	if keep.Age > 0 {
		keepFrom, _ = newestAtOrBefore(c, now.Add(-keep.Age))
	} else {
		keepFrom, _ = c.Last()
	}
	if keepFrom == nil {
		return nil
	}
	// Deleting through a cursor while iterating skips keys in bbolt, so
	// collect first.
	var old [][]byte
	for k, _ := c.First(); k != nil && string(k) < string(keepFrom); k, _ = c.Next() {
		old = append(old, append([]byte(nil), k...))
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Marks returns the stored marks of source, oldest first.
func (s *Store) Marks(source string) ([]Mark, error) {
	var marks []Mark
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMarks).Bucket([]byte(source))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			m, err := decodeMark(k, v)
			marks = append(marks, m)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading retention marks of source %q: %w", source, err)
	}
	return marks, nil
}

// ConfirmableAt returns the highest position of source that may be confirmed
// to Postgres at time now while keeping the window keep, given current, the
// lowest position durable in every sink. ok is false when nothing may be
// confirmed yet (the window reaches back before the oldest mark, or before
// the start of the WAL). It never returns more than current.
func (s *Store) ConfirmableAt(source string, now time.Time, keep Retention, current event.LSN) (lsn event.LSN, ok bool, err error) {
	var marks []Mark
	if keep.Age > 0 {
		// Only the newest mark at or before the cutoff matters.
		err = s.view(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketMarks).Bucket([]byte(source))
			if b == nil {
				return nil
			}
			k, v := newestAtOrBefore(b.Cursor(), now.Add(-keep.Age))
			if k == nil {
				return nil
			}
			m, err := decodeMark(k, v)
			marks = append(marks, m)
			return err
		})
		if err != nil {
			return 0, false, fmt.Errorf("reading retention marks of source %q: %w", source, err)
		}
	}
	lsn, ok = confirmable(marks, now, keep, current)
	return lsn, ok, nil
}

// newestAtOrBefore positions c on the newest mark at or before t and returns
// it, or nil when every mark is later.
func newestAtOrBefore(c *bolt.Cursor, t time.Time) (k, v []byte) {
	if k, _ := c.Seek(encodeTime(t.Add(time.Nanosecond))); k == nil {
		return c.Last()
	}
	return c.Prev()
}

// confirmable is the retention rule, apart from storage: marks are oldest
// first.
func confirmable(marks []Mark, now time.Time, keep Retention, current event.LSN) (event.LSN, bool) {
	limit := current
	if keep.Bytes > 0 {
		if uint64(current) <= keep.Bytes {
			return 0, false
		}
		limit = current - event.LSN(keep.Bytes)
	}
	if keep.Age > 0 {
		cutoff := now.Add(-keep.Age)
		found := false
		for i := len(marks) - 1; i >= 0; i-- {
			if !marks[i].At.After(cutoff) {
				limit = min(limit, marks[i].LSN)
				found = true
				break
			}
		}
		if !found {
			return 0, false
		}
	}
	if limit == 0 {
		return 0, false
	}
	return limit, true
}

// encodeTime makes a key that sorts like the time: nanoseconds since 1970
// with the sign bit flipped, big-endian.
func encodeTime(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(t.UnixNano())^(1<<63))
}

func decodeTime(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k)^(1<<63))).UTC()
}

func decodeMark(k, v []byte) (Mark, error) {
	if len(k) != 8 {
		return Mark{}, fmt.Errorf("%w: a retention mark key of %d bytes, want 8", errBadValue, len(k))
	}
	lsn, _, err := decodeLSN(v)
	return Mark{At: decodeTime(k), LSN: lsn}, err
}
