package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgfeed/pgfeed/internal/brokertest"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// `pgfeed run` into a NATS server that asks for credentials, for each way
// to give them (user and password, token, nkey seed file, operator-mode
// .creds file): with the right ones every change reaches the JetStream
// stream; with wrong ones pgfeed exits non-zero with one line naming the
// sink and the failed authentication.
func TestRunNATSAuth(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "natsauth")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)")
	t.Setenv("TEST_DSN", dsn)
	dir := t.TempDir()
	userSrv := brokertest.StartNATS(t, "--user", "pgfeed", "--pass", "secret")
	tokenSrv := brokertest.StartNATS(t, "--auth", "s3cret")
	nkey := brokertest.StartNATSNKey(t)
	operator := brokertest.StartNATSOperator(t)
	for i, tc := range []struct {
		name         string
		srv          *brokertest.Server
		right, wrong string // the sink's credential lines
		client       natsgo.Option
	}{
		{"user and password", userSrv, "user = \"pgfeed\"\npassword = \"secret\"", "user = \"pgfeed\"\npassword = \"wrong\"", natsgo.UserInfo("pgfeed", "secret")},
		{"token", tokenSrv, `token = "s3cret"`, `token = "wrong"`, natsgo.Token("s3cret")},
		{"nkey", nkey.Server, fmt.Sprintf("nkey = %q", nkey.File), fmt.Sprintf("nkey = %q", nkey.WrongFile), nkeyOption(t, nkey.File)},
		{"creds", operator.Server, fmt.Sprintf("creds = %q", operator.File), fmt.Sprintf("creds = %q", operator.WrongFile), natsgo.UserCredentials(operator.File)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slot := fmt.Sprintf("natsauth%d", i)
			config := func(name, creds string) string {
				path := filepath.Join(dir, name+".toml")
				body := fmt.Sprintf(`checkpoint = %q
[sources.main]
dsn = "${TEST_DSN}"
slot = %q
create = true
tables = ["public.items"]
[sinks.bus]
type = "nats"
sources = ["main"]
url = %q
subject = "pgfeed.{schema}.{table}"
stream = "PGFEED"
create_stream = true
%s
`, filepath.Join(dir, slot, name, "pgfeed.db"), slot, tc.srv.URL(), creds)
				if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				return path
			}
			right, wrong := config(slot+"-right", tc.right), config(slot+"-wrong", tc.wrong)

			code, _, stderr := runCLI(t, "run", "--config", wrong)
			expectOneLineError(t, code, stderr, "sinks.bus:", "authentication failed")

			if code, _, stderr := runCLI(t, "run", "--config", right, "--endpos", "0/1"); code != 0 {
				t.Fatalf("creating the slot: %s", stderr)
			}
			base := 100 * (i + 1)
			pgtest.Exec(t, db, fmt.Sprintf("INSERT INTO items SELECT g, g, 'n' FROM generate_series(%d, %d) g", base, base+4))
			var end string
			if err := db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
				t.Fatal(err)
			}
			if code, _, stderr := runCLI(t, "run", "--config", right, "--endpos", end); code != 0 {
				t.Fatalf("pgfeed run with the right credentials: exit %d: %s", code, stderr)
			}
			nc, err := natsgo.Connect(tc.srv.URL(), tc.client)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range natsMessages(t, js, "PGFEED", "pgfeed.public.items") {
				if strings.Contains(string(m.Data), `"op":"insert"`) {
					ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
				}
			}
			if len(ids) != 5 {
				t.Fatalf("the stream holds %d inserts; want the 5 made", len(ids))
			}
		})
	}
}

func nkeyOption(t *testing.T, seedFile string) natsgo.Option {
	o, err := natsgo.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
