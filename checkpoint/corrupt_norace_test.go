//go:build !race

// The race detector's pointer checks (checkptr) stop the process on some
// damaged pages, where bbolt casts a copied value shorter than a bucket
// header to one; without -race that cast reads a few bytes of garbage,
// which the walk of Open then reports or the store ignores. So this test
// runs in the plain build only (go test ./checkpoint/).

package checkpoint

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestOpenRandomDamage cuts, overwrites or flips bits of a real checkpoint
// file at seeded random places: Verify, Open and the calls after it either work or
// fail with a *CorruptError, and never crash the process. (Damage bbolt
// cannot see, such as a flipped bit inside a stored value, opens fine:
// bbolt keeps no checksum of its data pages.)
func TestOpenRandomDamage(t *testing.T) {
	orig, err := os.ReadFile(writeStore(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for seed := range 300 {
		r := rand.New(rand.NewPCG(uint64(seed), 1))
		b := append([]byte(nil), orig...)
		switch r.IntN(3) {
		case 0:
			b = b[:r.IntN(len(b))]
		case 1:
			off := 2*4096 + r.IntN(len(b)-2*4096)
			for i := off; i < min(len(b), off+1+r.IntN(256)); i++ {
				b[i] = byte(r.Uint32())
			}
		case 2:
			for range 1 + r.IntN(20) {
				b[r.IntN(len(b))] ^= 1 << r.IntN(8)
			}
		}
		path := filepath.Join(dir, fmt.Sprintf("seed%d.db", seed))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Verify(path); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("seed %d: Verify: %v, want nil or a *CorruptError", seed, err)
		}
		s, err := Open(path)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("seed %d: %v, want nil or a *CorruptError", seed, err)
			}
			continue
		}
		for _, err := range []error{
			s.SetPosition("src", "sink001", 5),
			func() error { _, _, err := s.Lowest("src", []string{"sink001", "sink150"}); return err }(),
			s.Close(),
		} {
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("seed %d: %v, want nil or a *CorruptError", seed, err)
			}
		}
	}
}
