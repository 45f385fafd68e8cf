package source

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// spool keeps the messages of one large in-progress transaction on disk
// until it commits or aborts (protocol v2 streaming). Holding them in memory
// would make memory grow with the transaction; a temporary file bounds it.
type spool struct {
	f       *os.File
	w       *bufio.Writer
	bytes   int64
	aborted map[uint32]bool // aborted subtransactions, whose changes are skipped
}

// spoolRecordHeader: xid (4), WAL position (8), message length (4).
const spoolRecordHeader = 16

func newSpool(dir string, xid uint32) (*spool, error) {
	f, err := os.CreateTemp(dir, fmt.Sprintf("pgfeed-txn-%d-*.spool", xid))
	if err != nil {
		return nil, fmt.Errorf("creating spool file for streamed transaction %d: %w", xid, err)
	}
	// Unlinked at once: the file vanishes with the process, even on kill -9.
	_ = os.Remove(f.Name())
	return &spool{f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

func (s *spool) add(xid uint32, walStart uint64, msg []byte) error {
	var h [spoolRecordHeader]byte
	binary.BigEndian.PutUint32(h[0:], xid)
	binary.BigEndian.PutUint64(h[4:], walStart)
	binary.BigEndian.PutUint32(h[12:], uint32(len(msg)))
	if _, err := s.w.Write(h[:]); err != nil {
		return fmt.Errorf("writing spool: %w", err)
	}
	if _, err := s.w.Write(msg); err != nil {
		return fmt.Errorf("writing spool: %w", err)
	}
	s.bytes += int64(len(h) + len(msg))
	return nil
}

func (s *spool) abortSub(subxid uint32) {
	if s.aborted == nil {
		s.aborted = map[uint32]bool{}
	}
	s.aborted[subxid] = true
}

// replay calls fn for every message of committed subtransactions, in order.
// fn may keep msg: each message gets its own buffer.
func (s *spool) replay(fn func(walStart uint64, msg []byte) error) error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("flushing spool: %w", err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewinding spool: %w", err)
	}
	r := bufio.NewReaderSize(s.f, 256<<10)
	var h [spoolRecordHeader]byte
	for {
		if _, err := io.ReadFull(r, h[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading spool: %w", err)
		}
		xid := binary.BigEndian.Uint32(h[0:])
		walStart := binary.BigEndian.Uint64(h[4:])
		msg := make([]byte, binary.BigEndian.Uint32(h[12:]))
		if _, err := io.ReadFull(r, msg); err != nil {
			return fmt.Errorf("reading spool: %w", err)
		}
		if s.aborted[xid] {
			continue
		}
		if err := fn(walStart, msg); err != nil {
			return err
		}
	}
}

func (s *spool) close() error { return s.f.Close() }
