package snapshot

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/catalog"
)

// ExportOptions tune Export. The zero value reads up to 4 tables in
// parallel in one fresh snapshot and reports no progress.
type ExportOptions struct {
	// Workers is the number of connections reading tables in parallel.
	// Zero means one per table, at most 4.
	Workers int
	// Snapshot, if set, is an exported snapshot to read in (see
	// ReadSnapshot); otherwise Export takes its own.
	Snapshot string
	// Position is put in LSN and CommitLSN of every event; zero when unknown,
	// as for a snapshot taken without a slot.
	Position event.LSN
	// Progress receives a progress line (rows done, rows/s, ETA), rewritten
	// in place with \r. Nil reports nothing. It is meant for a terminal:
	// set it to os.Stderr only when IsTerminal(os.Stderr).
	Progress io.Writer
	// ProgressInterval is how often the progress line is rewritten;
	// zero means every 250ms.
	ProgressInterval time.Duration
	// Types caches type lookups; nil means a fresh cache.
	Types *catalog.Types
}

// Stats sum up a read.
type Stats struct {
	Tables  int
	Rows    int64
	Bytes   int64 // JSON bytes written, by Export
	Elapsed time.Duration
}

// blockSize is how much JSON a worker gathers before one write to the
// output: big enough that writes are rare, small enough to stay in cache.
const blockSize = 256 << 10

// Export writes every row of tables to w as native JSON lines of op "read"
// events (the `pgfeed snapshot` command). All tables are read in one
// snapshot, over parallel connections when there are several tables, each
// with COPY; each worker encodes into its own reused block and writes whole
// blocks of lines, so lines of different tables never interleave mid-line.
// A table that is missing or unreadable fails before any row is written.
func Export(ctx context.Context, dsn string, tables []string, w io.Writer, opts ExportOptions) (Stats, error) {
	start := time.Now()
	var (
		mu       sync.Mutex // serialises writes to w
		written  int64
		done     atomic.Int64
		estimate atomic.Int64
		werr     error
	)
	write := func(b []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if werr != nil {
			return werr
		}
		n, err := w.Write(b)
		written += int64(n)
		if err != nil {
			werr = fmt.Errorf("writing rows: %w", err)
		}
		return werr
	}

	workers := opts.Workers
	if workers <= 0 {
		workers = min(len(tables), 4)
	}
	workers = max(workers, 1)
	blocks := make([][]byte, workers)
	// blocks[i] and pending[i] (rows in blocks[i], not yet counted in done)
	// belong to worker i alone: tableReader runs each worker index in one
	// goroutine, so they need no lock.
	pending := make([]int64, workers)
	flush := func(i int) error {
		if len(blocks[i]) == 0 {
			return nil
		}
		err := write(blocks[i])
		blocks[i] = blocks[i][:0]
		done.Add(pending[i])
		pending[i] = 0
		return err
	}

	r := tableReader{
		dsn:      dsn,
		snapshot: opts.Snapshot,
		workers:  workers,
		types:    opts.Types,
		read:     ReadOptions{Position: opts.Position},
		fn: func(i int, e *event.Event) error {
			b := e.AppendJSON(blocks[i])
			blocks[i] = append(b, '\n')
			pending[i]++
			if len(blocks[i]) >= blockSize {
				return flush(i)
			}
			return nil
		},
		described: func(ts []*Table) {
			var n int64
			for _, t := range ts {
				if t.EstimatedRows > 0 {
					n += t.EstimatedRows
				}
			}
			estimate.Store(n)
		},
	}
	for i := range blocks {
		blocks[i] = make([]byte, 0, blockSize+blockSize/4)
	}

	var stopProgress func()
	if opts.Progress != nil {
		stopProgress = reportProgress(opts.Progress, opts.ProgressInterval, start, &done, &estimate)
	}
	stats, err := r.run(ctx, tables)
	if err == nil {
		for i := range blocks {
			if err = flush(i); err != nil {
				break
			}
		}
	}
	if stopProgress != nil {
		stopProgress()
	}
	stats.Bytes = written
	stats.Elapsed = time.Since(start)
	return stats, err
}

// IsTerminal reports whether f is a terminal (a character device), where a
// progress line belongs; a pipe or file gets none.
func IsTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// reportProgress rewrites a progress line on w until the returned function
// is called, which writes the last line and a newline.
func reportProgress(w io.Writer, every time.Duration, start time.Time, done, estimate *atomic.Int64) func() {
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Fprint(w, progressLine(done.Load(), estimate.Load(), time.Since(start)))
			case <-stop:
				fmt.Fprint(w, progressLine(done.Load(), -1, time.Since(start))+"\n")
				return
			}
		}
	}()
	return func() {
		close(stop)
		<-finished
	}
}

// progressLine formats rows done, the rate and, when the table sizes are
// known (estimate > 0), the share done and the time left. pg_class.reltuples
// is an estimate, so the share is capped below 100% until the end.
func progressLine(done, estimate int64, elapsed time.Duration) string {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	line := fmt.Sprintf("\r%d rows, %.0f rows/s", done, rate)
	if estimate > 0 {
		pct := min(float64(done)/float64(estimate)*100, 99)
		line = fmt.Sprintf("\r%d of ~%d rows (%.0f%%), %.0f rows/s", done, estimate, pct, rate)
		if rate > 0 && done < estimate {
			eta := time.Duration(float64(estimate-done) / rate * float64(time.Second))
			line += ", ETA " + eta.Round(time.Second).String()
		}
	}
	if estimate < 0 {
		line += fmt.Sprintf(" in %s", elapsed.Round(time.Millisecond))
	}
	// Erase what a longer previous line left on the terminal.
	return line + "\x1b[K"
}
