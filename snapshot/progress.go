package snapshot

import (
	"bytes"
	"encoding/json"
	"sync"
)

// Progress is how far a backfill of one table got. A Walker stores it after
// each chunk whose rows are durable, and resumes after LastKey.
type Progress struct {
	// LastKey is the walking key of the last row read, as a JSON array of
	// the key columns' text forms; nil before the first chunk.
	LastKey json.RawMessage `json:"last_key,omitempty"`
	// Rows counts the rows read so far.
	Rows int64 `json:"rows"`
	// Done is set once the whole table has been read and delivered.
	Done bool `json:"done"`
}

// ProgressStore keeps backfill progress per source (a stream, such as its
// slot name) and table ("schema.table"). Its shape is that of
// checkpoint.Store, so a durable store adapts in a few lines.
type ProgressStore interface {
	// Progress returns the stored progress; ok is false when there is none.
	Progress(source, table string) (p Progress, ok bool, err error)
	// SetProgress stores p, replacing what was there.
	SetProgress(source, table string, p Progress) error
}

// MemoryProgress is a ProgressStore in memory, for tests and for backfills
// that need not survive a restart. The zero value is ready to use.
type MemoryProgress struct {
	mu sync.Mutex
	m  map[[2]string]Progress
}

// Progress implements ProgressStore.
func (s *MemoryProgress) Progress(source, table string) (Progress, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[[2]string{source, table}]
	p.LastKey = bytes.Clone(p.LastKey)
	return p, ok, nil
}

// SetProgress implements ProgressStore.
func (s *MemoryProgress) SetProgress(source, table string, p Progress) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[[2]string]Progress{}
	}
	p.LastKey = bytes.Clone(p.LastKey)
	s.m[[2]string{source, table}] = p
	return nil
}

// Delete forgets the progress of a table, so that its next backfill starts
// from the beginning.
func (s *MemoryProgress) Delete(source, table string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, [2]string{source, table})
}
