package file

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/sink/sinktest"
)

// readAll reads back every file of the sink, in order, as a separate reader
// would: through its own os.Open, seeing only what reached the file.
func readAll(t *testing.T, dir, prefix string) [][]byte {
	t.Helper()
	paths, err := Files(dir, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s ends in a torn line", filepath.Base(p))
		}
		for line := range bytes.Lines(b) {
			out = append(out, bytes.TrimSuffix(line, []byte{'\n'}))
		}
	}
	return out
}

// clock is a fake time source that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestConformance(t *testing.T) {
	run := func(name string, opts func() Options) {
		rotates := opts().MaxBytes > 0 || opts().MaxAge > 0
		t.Run(name, func(t *testing.T) {
			sinktest.Run(t, func(t *testing.T) sinktest.Target {
				dir := t.TempDir()
				o := opts()
				s, err := Open(dir, o)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					// Make sure the suite's ordering checks crossed files.
					paths, _ := Files(dir, o.Prefix)
					if rotates && t.Name() == "TestConformance/"+name+"/OrderedAndVisibleWhenWriteReturns" && len(paths) < 10 {
						t.Errorf("only %d files: rotation did not happen", len(paths))
					}
				})
				return sinktest.Target{Sink: s, Read: func(t *testing.T) [][]byte { return readAll(t, dir, o.Prefix) }}
			})
		})
	}
	run("Defaults", func() Options { return Options{} })
	// Rotation every few records, and the suite's 70 KiB records each in a
	// file of their own.
	run("SmallFiles", func() Options { return Options{MaxBytes: 4 << 10, Prefix: "small"} })
	// A clock that moves a minute whenever it is read: rotation by age at
	// most Write calls.
	run("ShortAge", func() Options {
		c := newClock()
		return Options{MaxAge: time.Minute, MaxBytes: -1, Now: func() time.Time { c.Advance(time.Minute); return c.Now() }}
	})
}

func record(v string) sink.Record { return sink.Record{Value: []byte(v)} }

func write(t *testing.T, s *Sink, values ...string) {
	t.Helper()
	batch := make([]sink.Record, len(values))
	for i, v := range values {
		batch[i] = record(v)
	}
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
}

// contents returns each file's base name and lines, in order.
func contents(t *testing.T, dir string) string {
	t.Helper()
	paths, err := Files(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s: %q\n", filepath.Base(p), data)
	}
	return b.String()
}

func TestRotateBySize(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{MaxBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write(t, s, "aaaa", "bbbb")          // 5 + 5 bytes: exactly full
	write(t, s, "c")                     // next file
	write(t, s, "0123456789abc", "dddd") // larger than MaxBytes: a file of its own
	write(t, s, "ee", "ff", "gg")
	want := `changes-000001.jsonl: "aaaa\nbbbb\n"
changes-000002.jsonl: "c\n"
changes-000003.jsonl: "0123456789abc\n"
changes-000004.jsonl: "dddd\nee\n"
changes-000005.jsonl: "ff\ngg\n"
`
	if got := contents(t, dir); got != want {
		t.Errorf("files:\n%s\nwant:\n%s", got, want)
	}
	if got := filepath.Base(s.Path()); got != "changes-000005.jsonl" {
		t.Errorf("Path = %s; want the newest file", got)
	}
}

func TestRotateByAge(t *testing.T) {
	dir := t.TempDir()
	c := newClock()
	s, err := Open(dir, Options{MaxAge: time.Hour, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c.Advance(2 * time.Hour) // an empty file is not rotated, however old
	write(t, s, "a")
	c.Advance(59 * time.Minute)
	write(t, s, "b") // 59 minutes into the file: same file
	c.Advance(time.Minute)
	write(t, s, "c", "d") // an hour old: new file, the whole batch in it
	c.Advance(30 * time.Minute)
	write(t, s, "e")
	c.Advance(30 * time.Minute)
	write(t, s, "f")
	want := `changes-000001.jsonl: "a\nb\n"
changes-000002.jsonl: "c\nd\ne\n"
changes-000003.jsonl: "f\n"
`
	if got := contents(t, dir); got != want {
		t.Errorf("files:\n%s\nwant:\n%s", got, want)
	}
}

func TestDataInFileWhenWriteReturns(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var want strings.Builder
	for i := range 20 {
		v := fmt.Sprintf(`{"i":%d}`, i)
		write(t, s, v)
		want.WriteString(v + "\n")
		// A separate open of the file, not through the sink.
		f, err := os.Open(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		_, err = got.ReadFrom(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Fatalf("after Write %d the file holds %q; want %q", i, got.String(), want.String())
		}
	}
}

func TestResumeAppends(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{MaxBytes: 6})
	if err != nil {
		t.Fatal(err)
	}
	write(t, s, "a1", "a2", "a3", "a4") // two files
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, Options{MaxBytes: 6})
	if err != nil {
		t.Fatal(err)
	}
	write(t, s, "b1")
	write(t, s, "b2")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Without a size limit the newest file just grows.
	s, err = Open(dir, Options{MaxBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write(t, s, "c1", "c2", "c3")
	want := `changes-000001.jsonl: "a1\na2\n"
changes-000002.jsonl: "a3\na4\n"
changes-000003.jsonl: "b1\nb2\nc1\nc2\nc3\n"
`
	if got := contents(t, dir); got != want {
		t.Errorf("files:\n%s\nwant:\n%s", got, want)
	}
}

func TestResumeCutsTornLine(t *testing.T) {
	for _, tt := range []struct{ name, before, after string }{
		{"torn last line", "{\"a\":1}\n{\"a\":2}\n{\"a\":", "{\"a\":1}\n{\"a\":2}\n"},
		{"only a torn line", "{\"a\":", ""},
		{"torn line longer than the read chunk", "x\n" + strings.Repeat("y", 200<<10), "x\n"},
		{"complete", "{\"a\":1}\n", "{\"a\":1}\n"},
		{"empty", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "changes-000007.jsonl")
			if err := os.WriteFile(path, []byte(tt.before), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			write(t, s, "next")
			got, _ := os.ReadFile(path)
			if want := tt.after + "next\n"; string(got) != want {
				t.Errorf("file holds %q; want %q", short(got), short([]byte(want)))
			}
		})
	}
}

func short(b []byte) string {
	if len(b) > 40 {
		return fmt.Sprintf("%s...%s", b[:20], b[len(b)-20:])
	}
	return string(b)
}

func TestFilesOrderAndFilter(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{
		"changes-000002.jsonl", "changes-1000000.jsonl", "changes-999999.jsonl", "changes-000010.jsonl",
		"changes-.jsonl", "changes-12a.jsonl", "changes-000003.jsonl.tmp", "other-000001.jsonl", "changes-000000.jsonl", "README",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "changes-000004.jsonl"), 0o750); err != nil {
		t.Fatal(err)
	}
	paths, err := Files(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	want := "changes-000002.jsonl changes-000010.jsonl changes-999999.jsonl changes-1000000.jsonl"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("Files = %s\nwant    %s", got, want)
	}

	// A sink opened there goes on after the highest sequence.
	s, err := Open(dir, Options{MaxBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write(t, s, "a", "b")
	if got := filepath.Base(s.Path()); got != "changes-1000001.jsonl" {
		t.Errorf("after rotation Path = %s; want changes-1000001.jsonl", got)
	}
}

func TestBadPrefix(t *testing.T) {
	if _, err := Open(t.TempDir(), Options{Prefix: "a/b"}); err == nil {
		t.Error("prefix with a separator: want error")
	}
}

func TestNewlineInValueRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Write(context.Background(), []sink.Record{record("ok"), record("two\nlines")})
	if err == nil || !strings.Contains(err.Error(), "newline") {
		t.Fatalf("Write = %v; want an error about the newline", err)
	}
	if got := contents(t, dir); got != "changes-000001.jsonl: \"\"\n" {
		t.Errorf("a refused batch wrote: %s", got)
	}
}

// shortWriter writes up to left bytes to w, then fails like a full disk.
type shortWriter struct {
	w    *os.File
	left int
}

var errDiskFull = errors.New("no space left on device")

func (s *shortWriter) Write(p []byte) (int, error) {
	n := min(len(p), s.left)
	n, err := s.w.Write(p[:n])
	s.left -= n
	if err == nil && n < len(p) {
		err = errDiskFull
	}
	return n, err
}

func TestFailedWriteLeavesNoTornLine(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write(t, s, "first", "second")
	// The disk fills up in the middle of the second record of a batch.
	s.bw = bufio.NewWriterSize(&shortWriter{w: s.f, left: len("third\nfou")}, 16)
	err = s.Write(context.Background(), []sink.Record{record("third"), record("fourth"), record("fifth")})
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("Write = %v; want the disk-full error", err)
	}
	if got := contents(t, dir); got != "changes-000001.jsonl: \"first\\nsecond\\nthird\\n\"\n" {
		t.Errorf("after the failed write: %s", got)
	}
	// Space again: the pipeline delivers the batch again.
	write(t, s, "third", "fourth", "fifth")
	if got := contents(t, dir); got != "changes-000001.jsonl: \"first\\nsecond\\nthird\\nthird\\nfourth\\nfifth\\n\"\n" {
		t.Errorf("after the redelivery: %s", got)
	}
}

func TestBrokenFileStopsTheSink(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, s, "a")
	s.f.Close() // the descriptor goes bad under the sink: nothing can be repaired
	for i := range 2 {
		if err := s.Write(context.Background(), []sink.Record{record("b")}); err == nil {
			t.Fatalf("Write %d on a broken file returned nil", i)
		}
	}
	s.Close()

	// Reopening resumes from what is on disk.
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write(t, s, "b")
	if got := contents(t, dir); got != "changes-000001.jsonl: \"a\\nb\\n\"\n" {
		t.Errorf("after reopening: %s", got)
	}
}

func BenchmarkFileSink(b *testing.B) {
	for _, size := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			batch := sinktest.Records(0, size)
			var bytes int64
			for _, r := range batch {
				bytes += int64(len(r.Value)) + 1
			}
			s, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			b.SetBytes(bytes)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Write(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// TestFailedRotationRecovers makes a rotation fail for a while (the folder
// replaced by a plain file: the next file cannot be created, which root
// permissions do not get around) and then puts the folder back. Writes fail
// while the folder is gone, then the sink recovers by itself, and every
// record of every batch, redelivered as the pipeline does after an error,
// is in the files.
func TestFailedRotationRecovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	s, err := Open(dir, Options{MaxBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write(t, s, "aaaa", "bbbb") // exactly full: the next record rotates

	moved := dir + ".away"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	batch := []sink.Record{record("cccc"), record("dddd")}
	for i := range 2 {
		if err := s.Write(context.Background(), batch); err == nil {
			t.Fatalf("Write %d with the folder gone returned nil", i)
		}
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}

	write(t, s, "cccc", "dddd") // the redelivery of the failed batch
	write(t, s, "ee")
	want := `changes-000001.jsonl: "aaaa\nbbbb\n"
changes-000002.jsonl: "cccc\ndddd\n"
changes-000003.jsonl: "ee\n"
`
	if got := contents(t, dir); got != want {
		t.Errorf("files:\n%s\nwant:\n%s", got, want)
	}
	if got := filepath.Base(s.Path()); got != "changes-000003.jsonl" {
		t.Errorf("Path = %s; want the newest file", got)
	}
}

// TestRotationResumesFileLeftByFailedAttempt: a rotation that created the
// next file but failed after it (syncing the folder) leaves that file
// behind; the retry resumes it instead of failing on it for ever.
func TestRotationResumesFileLeftByFailedAttempt(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{MaxBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write(t, s, "aaaa", "bbbb")
	// What a failed rotation leaves: the old file closed, no active file,
	// and the next one already on disk.
	if err := s.f.Close(); err != nil {
		t.Fatal(err)
	}
	s.f = nil
	if err := os.WriteFile(s.name(2), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	write(t, s, "cccc")
	want := `changes-000001.jsonl: "aaaa\nbbbb\n"
changes-000002.jsonl: "cccc\n"
`
	if got := contents(t, dir); got != want {
		t.Errorf("files:\n%s\nwant:\n%s", got, want)
	}
}

// Check says what Open would say of a folder that is a file or a bad
// prefix, and creates nothing.
func TestCheckAsOpen(t *testing.T) {
	dir := t.TempDir()
	taken := filepath.Join(dir, "taken")
	if err := os.WriteFile(taken, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir  string
		opts Options
	}{
		{taken, Options{}},
		{filepath.Join(dir, "out"), Options{Prefix: "a/b"}},
	} {
		cerr := Check(tc.dir, tc.opts)
		_, oerr := Open(tc.dir, tc.opts)
		if cerr == nil || oerr == nil || cerr.Error() != oerr.Error() {
			t.Errorf("Check(%s, %+v) = %v; Open: %v", tc.dir, tc.opts, cerr, oerr)
		}
	}
	missing := filepath.Join(dir, "missing", "out")
	if err := Check(missing, Options{}); err != nil {
		t.Errorf("Check of a folder to create: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("Check created %s (%v)", missing, err)
	}
	if err := Check(dir, Options{}); err != nil {
		t.Errorf("Check of an existing folder: %v", err)
	}
}
