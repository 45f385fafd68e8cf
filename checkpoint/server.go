package checkpoint

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketServers holds, per source, the PostgreSQL cluster its positions
// were written against (JSON Server). It is created on first use.
var bucketServers = []byte("servers")

// Server identifies the PostgreSQL cluster behind a source's checkpoints.
// An LSN means something only on the cluster (and timeline) it came from:
// a checkpoint taken to another server would skip or repeat changes.
type Server struct {
	// SystemID is IDENTIFY_SYSTEM's systemid: the cluster's identity,
	// kept by its physical standbys, new for any initdb.
	SystemID string `json:"system_id"`
	// Timeline is the timeline the positions were last written on.
	Timeline int32 `json:"timeline"`
	// Slot is the replication slot the source streamed from: once it
	// existed, a missing slot is lost data, never a reason to create one.
	Slot string `json:"slot,omitempty"`
}

// SetServer records the server of source.
func (s *Store) SetServer(source string, srv Server) error {
	if err := checkNames("source", source); err != nil {
		return fmt.Errorf("storing the server of source %q: %w", source, err)
	}
	v, err := json.Marshal(srv)
	if err != nil {
		return fmt.Errorf("encoding the server of source %q: %w", source, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketServers)
		if err != nil {
			return err
		}
		return b.Put([]byte(source), v)
	})
	if err != nil {
		return fmt.Errorf("storing the server of source %q: %w", source, err)
	}
	return nil
}

// Server returns the recorded server of source; ok is false when none is.
func (s *Store) Server(source string) (srv Server, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketServers)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(source))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &srv)
	})
	if err != nil {
		return Server{}, false, fmt.Errorf("reading the server of source %q: %w", source, err)
	}
	return srv, ok, nil
}

// ForgetSource removes everything stored for source: sink positions,
// progress, retain marks and its server, so that it starts over.
func (s *Store) ForgetSource(source string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketPositions, bucketProgress, bucketMarks} {
			if b := tx.Bucket(name); b != nil && b.Bucket([]byte(source)) != nil {
				if err := b.DeleteBucket([]byte(source)); err != nil {
					return err
				}
			}
		}
		if b := tx.Bucket(bucketServers); b != nil {
			return b.Delete([]byte(source))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forgetting source %q: %w", source, err)
	}
	return nil
}
