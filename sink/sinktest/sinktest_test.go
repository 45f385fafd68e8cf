package sinktest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/sink"
)

// memSink is a reference sink kept in memory. Its flaw, when set, is one way
// a real sink gets the contract wrong; the suite must catch each of them.
type memSink struct {
	flaw    string
	dest    *[][]byte
	pending [][]byte
	closed  bool
	closes  int
}

func (m *memSink) Write(ctx context.Context, batch []sink.Record) error {
	if m.closed && m.flaw != "writes after close" {
		return errors.New("closed")
	}
	if m.flaw == "rejects empty batches" && len(batch) == 0 {
		return errors.New("empty")
	}
	if err := ctx.Err(); err != nil && m.flaw != "ignores context" {
		return err
	}
	for _, r := range batch {
		v := append([]byte(nil), r.Value...)
		switch m.flaw {
		case "acks before durable":
			m.pending = append(m.pending, v)
		case "reorders":
			*m.dest = slices.Insert(*m.dest, len(*m.dest)-min(len(*m.dest), 1), v)
		case "drops large values":
			if len(v) < 64<<10 {
				*m.dest = append(*m.dest, v)
			}
		default:
			*m.dest = append(*m.dest, v)
		}
	}
	return nil
}

func (m *memSink) Close() error {
	m.closes++
	*m.dest = append(*m.dest, m.pending...)
	m.pending = nil
	m.closed = true
	if m.closes > 1 && m.flaw == "close twice fails" {
		return errors.New("already closed")
	}
	return nil
}

func openMem(flaw string) func(t *testing.T) Target {
	return func(t *testing.T) Target {
		var dest [][]byte
		return Target{
			Sink: &memSink{flaw: flaw, dest: &dest},
			Read: func(t *testing.T) [][]byte { return slices.Clone(dest) },
		}
	}
}

func TestReferenceSink(t *testing.T) {
	Run(t, openMem(""))
}

func TestReferenceSinkWithoutRead(t *testing.T) {
	Run(t, func(t *testing.T) Target {
		tg := openMem("")(t)
		tg.Read = nil
		return tg
	})
}

// TestSuiteCatchesFlaws runs the suite against each flawed sink in a child
// process (a failing suite fails its test) and expects it to fail.
func TestSuiteCatchesFlaws(t *testing.T) {
	flaws := []string{"acks before durable", "reorders", "drops large values", "ignores context", "writes after close", "close twice fails", "rejects empty batches"}
	for _, flaw := range flaws {
		t.Run(flaw, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestFlawedSinkChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "SINKTEST_FLAW="+flaw)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || !strings.Contains(string(out), "--- FAIL: TestFlawedSinkChild/") {
				t.Fatalf("suite did not fail on a sink that %s (err %v):\n%s", flaw, err, out)
			}
		})
	}
}

// TestFlawedSinkChild is the child process of TestSuiteCatchesFlaws.
func TestFlawedSinkChild(t *testing.T) {
	flaw := os.Getenv("SINKTEST_FLAW")
	if flaw == "" {
		t.Skip("child process of TestSuiteCatchesFlaws")
	}
	Run(t, openMem(flaw))
}

func TestMatches(t *testing.T) {
	v := func(s string) [][]byte {
		var out [][]byte
		for _, c := range s {
			out = append(out, []byte{byte(c)})
		}
		return out
	}
	segs := []segment{{values: v("ab")}, {values: v("cd"), partial: true}, {values: v("cd")}, {values: v("e")}}
	for got, want := range map[string]bool{
		"abcde":     true,
		"abccde":    true,
		"abcdcde":   true,
		"abde":      false, // redelivery missing its first record
		"abdcde":    false, // partial that is not a prefix
		"abcdcd":    false, // last batch missing
		"abcdee":    false,
		"abcdcdcde": false,
	} {
		if matches(v(got), segs) != want {
			t.Errorf("matches(%q) = %v; want %v", got, !want, want)
		}
	}
}
