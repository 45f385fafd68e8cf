package cli

import (
	"strconv"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// Error messages that were raw or said nothing: a DSN with a port that is
// not a number printed "invalid DSN: <nil>", cobra's "accepts 1 arg(s),
// received 0" named neither the command nor its arguments, "pgfeed slot
// lst" printed help and exited 0, sslmode=require against a server without
// TLS printed pgx's chain, and connection errors did not all say which
// host:port they tried. Each is now one line with the cause and the fix.
func TestErrorMessages(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "messages")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE ROLE msg_user LOGIN")
	at := "127.0.0.1:" + strconv.Itoa(pg.Port)
	base := "host=127.0.0.1 port=" + strconv.Itoa(pg.Port) + " sslmode=disable"
	cases := []struct {
		name      string
		args      []string
		fragments []string
	}{
		{"port not a number", []string{"stream", "--dsn", "host=127.0.0.1 port=notanumber"},
			[]string{"invalid DSN: invalid port", "a number from 1 to 65535"}},
		{"URL port not a number", []string{"slot", "list", "--dsn", "postgres://u:secret@127.0.0.1:abc/db"},
			[]string{"invalid DSN: invalid port", "a number from 1 to 65535"}},
		{"DSN of neither form", []string{"stream", "--dsn", "nonsense"},
			[]string{"invalid DSN", "key=value pairs", "postgres://"}},
		{"sslmode=require without TLS on the server", []string{"stream", "--dsn", "host=127.0.0.1 port=" + strconv.Itoa(pg.Port) + " user=postgres dbname=messages sslmode=require"},
			[]string{at, "does not accept TLS", "sslmode=prefer"}},
		{"missing database says where", []string{"slot", "list", "--dsn", base + " user=postgres dbname=nosuchdb"},
			[]string{at, `database "nosuchdb" does not exist`, "check the database name"}},
		{"missing role says where", []string{"slot", "list", "--dsn", base + " user=nosuchrole dbname=messages"},
			[]string{at, `"nosuchrole"`}},
		{"replication without the privilege says where", []string{"stream", "--dsn", base + " user=msg_user dbname=messages", "--create", "--slot", "msg_norepl"},
			[]string{"REPLICATION"}},
		{"slot drop without its argument", []string{"slot", "drop"},
			[]string{"slot drop: takes 1 argument, got 0", "usage: pgfeed slot drop NAME", "pgfeed slot drop --help"}},
		{"slot drop with two arguments", []string{"slot", "drop", "a", "b"},
			[]string{"slot drop: takes 1 argument, got 2"}},
		{"snapshot without a table", []string{"snapshot"},
			[]string{"snapshot: takes at least 1 argument, got 0", "pgfeed snapshot --help"}},
		{"run with an argument", []string{"run", "pgfeed.toml"},
			[]string{`run: takes no arguments, got "pgfeed.toml"`, "usage: pgfeed run [flags]"}},
		{"replay without --from", []string{"replay"},
			[]string{"replay: missing required flag --from", "pgfeed replay --help"}},
		{"unknown subcommand of slot", []string{"slot", "lst"},
			[]string{`slot: unknown command "lst" (did you mean list?)`, "pgfeed slot create|drop|list"}},
		{"slot alone", []string{"slot"},
			[]string{"slot: name a subcommand", "pgfeed slot create|drop|list"}},
		{"unknown command suggests", []string{"streem"},
			[]string{`unknown command "streem" (did you mean stream?)`, "pgfeed --help"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			expectOneLineError(t, code, stderr, tc.fragments...)
			for _, raw := range []string{"<nil>", "arg(s)", "SQLSTATE 28000", "failed to connect to `", "secret"} {
				if strings.Contains(stderr, raw) {
					t.Errorf("stderr has %q: %s", raw, stderr)
				}
			}
		})
	}
}
