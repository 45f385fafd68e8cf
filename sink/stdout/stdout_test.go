package stdout

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/sink/sinktest"
)

// lines splits JSON lines back into values; a last line without its '\n'
// is kept, so that a sink that forgets the final newline fails the suite.
func lines(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		line, rest, _ := bytes.Cut(b, []byte{'\n'})
		out = append(out, bytes.Clone(line))
		b = rest
	}
	return out
}

func TestConformanceBuffer(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		var buf bytes.Buffer
		return sinktest.Target{
			Sink: New(&buf),
			Read: func(t *testing.T) [][]byte { return lines(t, buf.Bytes()) },
		}
	})
}

func TestConformanceRegularFile(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		path := filepath.Join(t.TempDir(), "out.jsonl")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		s := New(f)
		if s.file == nil {
			t.Fatal("regular file not recognised: it would not be fsynced")
		}
		return sinktest.Target{
			Sink: s,
			Read: func(t *testing.T) [][]byte {
				b, err := os.ReadFile(path) // a separate open: only what reached the file counts
				if err != nil {
					t.Fatal(err)
				}
				return lines(t, b)
			},
		}
	})
}

func TestPipeIsNotSynced(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	s := New(w)
	if s.file != nil {
		t.Fatal("a pipe was taken for a regular file; Sync would fail on it")
	}
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	if err := s.Write(context.Background(), sinktest.Records(0, 3)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	w.Close()
	if got := lines(t, <-done); len(got) != 3 {
		t.Errorf("read %d lines from the pipe; want 3", len(got))
	}
}

func TestDefaultsToStdout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stdout")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stdout
	os.Stdout = f
	s := New(nil)
	os.Stdout = saved
	if err := s.Write(context.Background(), []sink.Record{{Value: []byte(`{"a":1}`)}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "{\"a\":1}\n" {
		t.Errorf("stdout got %q", b)
	}
}

func TestNewlineInValueRefused(t *testing.T) {
	var buf bytes.Buffer
	s := New(&buf)
	batch := []sink.Record{{Value: []byte(`{"a":1}`)}, {Topic: "public.t", Value: []byte("{\"a\":\n2}")}}
	err := s.Write(context.Background(), batch)
	if err == nil || !strings.Contains(err.Error(), "newline") {
		t.Fatalf("Write = %v; want an error about the newline", err)
	}
	if buf.Len() != 0 {
		t.Errorf("a refused batch wrote %q", buf.String())
	}
	if err := s.Write(context.Background(), batch[:1]); err != nil {
		t.Errorf("the sink is still usable after a refused batch: %v", err)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write(p []byte) (int, error) { return 0, w.err }

func TestWriterErrorIsFinal(t *testing.T) {
	broken := errors.New("broken pipe")
	s := New(failingWriter{broken})
	for i := range 2 {
		if err := s.Write(context.Background(), sinktest.Records(0, 1)); !errors.Is(err, broken) {
			t.Fatalf("Write %d = %v; want an error wrapping the writer's", i, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after a failed Write = %v; want nil (the error was reported)", err)
	}
}
