package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeStore creates a checkpoint file with enough positions to fill
// several pages and returns its path.
func writeStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "checkpoint.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		must(t, s.SetPosition("src", fmt.Sprintf("sink%03d", i), 100))
	}
	must(t, s.Close())
	return path
}

// damage rewrites the bytes of the file at path from offset from on (n of
// them, or to the end when n is 0) with f, or truncates it at from when f
// is nil.
func damage(t *testing.T, path string, from, n int, f func(i int, b byte) byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if f == nil {
		b = b[:from]
	} else {
		end := len(b)
		if n > 0 {
			end = min(end, from+n)
		}
		for i := from; i < end; i++ {
			b[i] = f(i, b[i])
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkCorrupt checks that err is the one line of a damaged file.
func checkCorrupt(t *testing.T, err error, path string) {
	t.Helper()
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%v (%T), want a *CorruptError", err, err)
	}
	msg := err.Error()
	for _, want := range []string{path, "is corrupt", "move it away and restart"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
}

// TestOpenCorruptFile damages a real checkpoint file in the ways a disk
// fault or a cut copy does. bbolt panics on several of them while opening
// (a freelist page of the wrong type, a page naming another id); Open must
// return one line instead, leave no lock behind, and a new file must open
// once the damaged one is moved away, as the line says.
func TestOpenCorruptFile(t *testing.T) {
	const page = 4096
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"garbage everywhere", func(t *testing.T, p string) { damage(t, p, 0, 0, func(i int, _ byte) byte { return byte(i*7 + 3) }) }},
		{"cut to one page", func(t *testing.T, p string) { damage(t, p, page, 0, nil) }},
		{"cut after the meta pages", func(t *testing.T, p string) { damage(t, p, 2*page, 0, nil) }},
		{"cut in the middle of a page", func(t *testing.T, p string) { damage(t, p, 2*page+808, 0, nil) }},
		{"data pages overwritten", func(t *testing.T, p string) { damage(t, p, 3*page, 0, func(int, byte) byte { return 0x5a }) }},
		{"freelist page overwritten", func(t *testing.T, p string) { damage(t, p, 2*page, page, func(int, byte) byte { return 0xff }) }},
		{"bits flipped in the data pages", func(t *testing.T, p string) {
			damage(t, p, 2*page+16, 0, func(i int, b byte) byte {
				if i%3 == 0 {
					return b ^ 0xff
				}
				return b
			})
		}},
		{"not a bbolt file", func(t *testing.T, p string) {
			if err := os.WriteFile(p, []byte(strings.Repeat("[source]\nname = \"x\"\n", 1000)), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeStore(t)
			tt.damage(t, path)
			if err := Verify(path); err == nil {
				t.Fatal("Verify of the damaged file: no error")
			} else {
				checkCorrupt(t, err, path)
			}
			for range 2 { // the second open finds no lock left behind
				s, err := Open(path)
				if err == nil {
					s.Close()
					t.Fatal("opening the damaged file: no error")
				}
				checkCorrupt(t, err, path)
			}
			if err := os.Rename(path, path+".corrupt"); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path)
			if err != nil {
				t.Fatalf("opening after moving the file away: %v", err)
			}
			s.Close()
		})
	}
}

// TestCorruptedWhileOpen damages the pages under an open store (bbolt maps
// the file, so the damage is seen at once): calls fail with a
// *CorruptError instead of panicking.
func TestCorruptedWhileOpen(t *testing.T) {
	path := writeStore(t)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(strings.Repeat("\x5a", int(fi.Size())-2*4096)), 2*4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, _, err = s.Position("src", "sink005")
	if err == nil {
		err = s.SetPosition("src", "sink005", 200)
	}
	checkCorrupt(t, err, path)
}

// Verify passes what Open opens: a missing, an empty or a sound file, and
// one that a running Store holds (it was sound when that one opened it).
func TestVerifySoundFiles(t *testing.T) {
	dir := t.TempDir()
	if err := Verify(filepath.Join(dir, "missing.db")); err != nil {
		t.Errorf("missing file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !os.IsNotExist(err) {
		t.Errorf("Verify created the missing file (%v)", err)
	}
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Verify(empty); err != nil {
		t.Errorf("empty file: %v", err)
	}
	path := writeStore(t)
	if err := Verify(path); err != nil {
		t.Errorf("sound file: %v", err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := Verify(path); err != nil {
		t.Errorf("file held by an open Store: %v", err)
	}
}
