package checkpoint

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Progress is how far a snapshot or backfill of one table got, so that a
// restarted one continues after the last row it delivered instead of
// starting over.
type Progress struct {
	// LastKey is the key of the last row delivered, as the snapshot encodes it
	// (JSON of the key columns). The store keeps it as opaque bytes.
	LastKey []byte `json:"last_key"`
	// Rows is the number of rows delivered so far.
	Rows int64 `json:"rows"`
	// Done is set once the whole table has been delivered.
	Done bool `json:"done"`
	// UpdatedAt is when the progress was stored. SetProgress fills it in
	// with the current time when it is zero.
	UpdatedAt time.Time `json:"updated_at"`
}

// SetProgress stores the progress of table (as "schema.table") for source.
func (s *Store) SetProgress(source, table string, p Progress) error {
	if err := checkNames("source", source, "table", table); err != nil {
		return fmt.Errorf("storing progress of table %q: %w", table, err)
	}
	if p.UpdatedAt.IsZero() {
		p.UpdatedAt = time.Now().UTC()
	}
	v, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encoding progress of table %q: %w", table, err)
	}
	err = s.update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketProgress).CreateBucketIfNotExists([]byte(source))
		if err != nil {
			return err
		}
		return b.Put([]byte(table), v)
	})
	if err != nil {
		return fmt.Errorf("storing progress of table %q for source %q: %w", table, source, err)
	}
	return nil
}

// Progress returns the stored progress of table for source; ok is false when
// none is stored.
func (s *Store) Progress(source, table string) (p Progress, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketProgress).Bucket([]byte(source))
		if b == nil {
			return nil
		}
		v := b.Get([]byte(table))
		if v == nil {
			return nil
		}
		// v is only valid inside the transaction; Unmarshal copies what it keeps.
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("%w: progress: %w", errBadValue, err)
		}
		ok = true
		return nil
	})
	if err != nil {
		return Progress{}, false, fmt.Errorf("reading progress of table %q for source %q: %w", table, source, err)
	}
	return p, ok, nil
}

// DeleteProgress forgets the progress of table for source, so that the next
// snapshot of it starts from the beginning. Deleting a missing entry is not
// an error.
func (s *Store) DeleteProgress(source, table string) error {
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketProgress).Bucket([]byte(source))
		if b == nil {
			return nil
		}
		return b.Delete([]byte(table))
	})
	if err != nil {
		return fmt.Errorf("deleting progress of table %q for source %q: %w", table, source, err)
	}
	return nil
}
