//go:build unix

package checkpoint

import (
	"os"
	"syscall"
)

// unlock releases bbolt's flock on f. Closing f alone would not release it
// while the file is still mapped, as it is after bbolt panicked in Open.
func unlock(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
