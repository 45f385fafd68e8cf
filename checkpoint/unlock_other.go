//go:build !unix

package checkpoint

import "os"

// unlock is a no-op where bbolt does not lock with flock: closing the file
// releases its lock.
func unlock(*os.File) {}
