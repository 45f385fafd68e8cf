package config_test

import (
	"fmt"

	"github.com/pgfeed/pgfeed/config"
)

func ExampleParse() {
	_, err := config.Parse([]byte(`
[sources.main]
dsn = "${PGFEED_DSN}"
create = "yes"

[sinks.archive]
type = "file"
sources = ["mian"]
path = "out/"
rotat_bytes = "64MB"
`), nil)
	fmt.Println(err)
	// Output:
	// sources.main.dsn: environment variable PGFEED_DSN is not set (set it, or give a default: ${PGFEED_DSN:-value})
	// sources.main.create: expected a boolean, got string
	// sinks.archive.rotat_bytes: unknown key (did you mean rotate_bytes?)
	// sinks.archive.sources[0]: unknown source "mian" (did you mean main? have: main)
}
