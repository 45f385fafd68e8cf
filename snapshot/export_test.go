package snapshot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

func TestExport(t *testing.T) {
	ctx := testCtx(t)
	dsn, conn := newDB(t)
	pgtest.Exec(t, conn,
		`CREATE TABLE a (id int PRIMARY KEY, s text)`,
		`INSERT INTO a SELECT g, repeat(E'x\ty', g % 50) FROM generate_series(1, 3000) g`,
		`CREATE TABLE b (k text PRIMARY KEY, j jsonb)`,
		`INSERT INTO b SELECT 'k' || g, jsonb_build_object('g', g, 'nested', jsonb_build_array(g, 'a')) FROM generate_series(1, 2000) g`,
		`ANALYZE a, b`,
	)
	var out, progress bytes.Buffer
	stats, err := Export(ctx, dsn, []string{"a", "b"}, &out, ExportOptions{Workers: 2, Progress: &progress, ProgressInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	written := int64(out.Len())
	counts := map[string]int{}
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	lines := 0
	seqs := map[int]string{} // one position for all: each read needs a seq of its own
	for sc.Scan() {
		lines++
		var e struct {
			Op, Table string
			Seq       int
			After     map[string]any
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %d is not JSON (%v): %s", lines, err, sc.Bytes())
		}
		if e.Op != "read" || e.Seq < 1 || len(e.After) != 2 {
			t.Fatalf("line %d: %s", lines, sc.Bytes())
		}
		counts[e.Table]++
		if prev, dup := seqs[e.Seq]; dup {
			t.Fatalf("seq %d twice, in %s and %s", e.Seq, prev, e.Table)
		}
		seqs[e.Seq] = e.Table
	}
	if counts["a"] != 3000 || counts["b"] != 2000 || stats.Rows != 5000 || stats.Tables != 2 {
		t.Errorf("counts %v, stats %+v", counts, stats)
	}
	if stats.Bytes != written {
		t.Errorf("stats.Bytes %d", stats.Bytes)
	}
	p := progress.String()
	if !strings.HasPrefix(p, "\r") || !strings.HasSuffix(p, "\n") || !strings.Contains(p, "5000 rows, ") {
		t.Errorf("progress output %q", p)
	}

	// A missing table fails before anything is written.
	out.Reset()
	_, err = Export(ctx, dsn, []string{"a", "nope"}, &out, ExportOptions{})
	if err == nil || err.Error() != `table "public.nope" does not exist (SQLSTATE 42P01)` || out.Len() != 0 {
		t.Errorf("error %v, %d bytes written", err, out.Len())
	}
	// A failing writer stops the export with its error.
	_, err = Export(ctx, dsn, []string{"a"}, failingWriter{}, ExportOptions{})
	if err == nil || !strings.Contains(err.Error(), "writing rows: disk full") {
		t.Errorf("error %v", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestProgressLine(t *testing.T) {
	tests := []struct {
		done, estimate int64
		elapsed        time.Duration
		want           string
	}{
		{500, 0, time.Second, "\r500 rows, 500 rows/s\x1b[K"},
		{250, 1000, time.Second, "\r250 of ~1000 rows (25%), 250 rows/s, ETA 3s\x1b[K"},
		{1500, 1000, time.Second, "\r1500 of ~1000 rows (99%), 1500 rows/s\x1b[K"},
		{1500, -1, 2 * time.Second, "\r1500 rows, 750 rows/s in 2s\x1b[K"},
	}
	for _, tt := range tests {
		if got := progressLine(tt.done, tt.estimate, tt.elapsed); got != tt.want {
			t.Errorf("progressLine(%d, %d, %v) = %q, want %q", tt.done, tt.estimate, tt.elapsed, got, tt.want)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if IsTerminal(w) || IsTerminal(nil) {
		t.Error("a pipe is not a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("a file is not a terminal")
	}
}

// BenchmarkExport measures Export (COPY, decoding, JSON encoding) of a
// mixed-type table to io.Discard against a plain COPY of the same table to
// io.Discard, in the same run, and reports both rates and their ratio.
// PGFEED_BENCH_ROWS overrides the 1M rows.
func BenchmarkExport(b *testing.B) {
	rows := 1_000_000
	if n, err := strconv.Atoi(os.Getenv("PGFEED_BENCH_ROWS")); err == nil && n > 0 {
		rows = n
	}
	ctx := context.Background()
	dsn, conn := newDB(b)
	pgtest.Exec(b, conn,
		`CREATE TABLE bench (id int PRIMARY KEY, big bigint, t text, n numeric, ts timestamptz, j jsonb, b bool, u uuid)`,
		`INSERT INTO bench SELECT g, g::bigint * 1000003, 'row ' || g || ' of the benchmark', (g / 7.0)::numeric(12, 4),
			'2026-01-01'::timestamptz + g * interval '1 second', jsonb_build_object('id', g, 'tags', jsonb_build_array('a', g % 10)),
			g % 2 = 0, md5(g::text)::uuid
			FROM generate_series(1, `+strconv.Itoa(rows)+`) g`,
		`VACUUM ANALYZE bench`,
	)
	var copyTime, exportTime time.Duration
	var copied, exported int64
	for b.Loop() {
		start := time.Now()
		tag, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY bench TO STDOUT")
		if err != nil {
			b.Fatal(err)
		}
		copyTime += time.Since(start)
		copied += tag.RowsAffected()

		start = time.Now()
		stats, err := Export(ctx, dsn, []string{"bench"}, io.Discard, ExportOptions{})
		if err != nil {
			b.Fatal(err)
		}
		exportTime += time.Since(start)
		exported += stats.Rows
	}
	copyRate := float64(copied) / copyTime.Seconds()
	exportRate := float64(exported) / exportTime.Seconds()
	b.ReportMetric(exportRate, "export_rows/s")
	b.ReportMetric(copyRate, "copy_rows/s")
	b.ReportMetric(exportRate/copyRate, "ratio")
}
