package cli

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/source"
)

// Every failure a user can cause: one clear line, a non-zero exit, no panic.
func TestBadInput(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "badinput")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db,
		"CREATE TABLE present(id int primary key)",
		"CREATE ROLE "+pgcluster.PasswordRole+" NOLOGIN",
		"CREATE ROLE pw_user LOGIN REPLICATION PASSWORD 'right' IN ROLE "+pgcluster.PasswordRole,
		"CREATE ROLE no_repl LOGIN",
		"CREATE PUBLICATION only_present FOR TABLE present",
		"CREATE TABLE outside(id int primary key)")
	closedPort := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}()
	base := "host=127.0.0.1 port=" + strconv.Itoa(pg.Port) + " dbname=badinput sslmode=disable"

	cases := []struct {
		name      string
		args      []string
		fragments []string
	}{
		{"unreachable server", []string{"stream", "--dsn", "host=127.0.0.1 port=" + strconv.Itoa(closedPort) + " user=postgres sslmode=disable connect_timeout=5"},
			[]string{"connection refused", "127.0.0.1:" + strconv.Itoa(closedPort)}},
		{"wrong password", []string{"stream", "--dsn", base + " user=pw_user password=wrong"}, []string{"password authentication failed"}},
		{"no replication privilege", []string{"stream", "--dsn", base + " user=no_repl", "--create"}, []string{"REPLICATION", "ALTER ROLE"}},
		{"missing table", []string{"stream", "--dsn", dsn, "--create", "--slot", "bad1", "--tables", "public.nope"}, []string{`"public.nope" does not exist`}},
		{"missing publication", []string{"stream", "--dsn", dsn, "--publication", "nopub"}, []string{`publication "nopub" does not exist`, "--create"}},
		{"table outside the publication", []string{"stream", "--dsn", dsn, "--publication", "only_present", "--tables", "outside"}, []string{"public.outside is not in publication", "ALTER PUBLICATION"}},
		{"missing slot", []string{"stream", "--dsn", dsn, "--publication", "only_present", "--slot", "nosuch"}, []string{`slot "nosuch" does not exist`, "--create"}},
		{"invalid slot name", []string{"stream", "--dsn", dsn, "--slot", "Bad-Name"}, []string{`invalid slot name "Bad-Name"`}},
		{"invalid endpos", []string{"stream", "--dsn", dsn, "--endpos", "xyz"}, []string{"--endpos", `invalid LSN "xyz"`}},
		{"unknown flag", []string{"stream", "--bogus"}, []string{"unknown flag: --bogus", "pgfeed stream --help"}},
		{"invalid table glob", []string{"stream", "--dsn", dsn, "--tables", "public.[x"}, []string{"invalid table pattern"}},
		{"bad DSN", []string{"stream", "--dsn", "port=notanumber"}, []string{"invalid DSN"}},
		{"unknown format", []string{"stream", "--dsn", dsn, "--format", "xml"}, []string{`invalid --format "xml"`}},
		{"drop missing slot", []string{"slot", "drop", "--dsn", dsn, "nosuch"}, []string{`"nosuch" does not exist`, "slot list"}},
		{"unknown command", []string{"streem"}, []string{`unknown command "streem"`}},
		{"backfill of a missing table", []string{"backfill", "--dsn", dsn, "nope"}, []string{`"public.nope" does not exist`}},
		{"backfill of a table outside the publication", []string{"backfill", "--dsn", dsn, "--publication", "only_present", "outside"}, []string{"public.outside is not in publication", "ALTER PUBLICATION"}},
		{"backfill without permission", []string{"backfill", "--dsn", base + " user=no_repl", "--publication", "only_present", "present"}, []string{"present", "SELECT"}},
		{"snapshot of a missing table", []string{"snapshot", "--dsn", dsn, "public.nope"}, []string{`"public.nope" does not exist`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			expectOneLineError(t, code, stderr, tc.fragments...)
		})
	}

	t.Run("slot active elsewhere", func(t *testing.T) {
		ctx := context.Background()
		s, err := source.Open(ctx, source.Config{DSN: dsn, Slot: "busy", Create: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		code, _, stderr := runCLI(t, "stream", "--dsn", dsn, "--slot", "busy")
		expectOneLineError(t, code, stderr, `slot "busy" is active for PID`, "another consumer")
	})
}

// wal_level below logical is caught before anything is created. Postgres
// will not start with wal_level=replica while logical slots exist, so this
// test gets a small cluster of its own.
func TestWalLevelNotLogical(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{Settings: map[string]string{"wal_level": "replica"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove()
	code, _, stderr := runCLI(t, "stream", "--dsn", c.DSN(""), "--create")
	expectOneLineError(t, code, stderr, `wal_level is "replica"`, "wal_level = logical", "restart")
}
