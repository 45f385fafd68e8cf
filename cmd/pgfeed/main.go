// Command pgfeed streams every committed change of a PostgreSQL database.
// See the README, or run pgfeed --help.
package main

import (
	"os"

	"github.com/pgfeed/pgfeed/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
