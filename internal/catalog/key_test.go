package catalog

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

var pg *pgcluster.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg, pgcluster.Options{})) }

// The key of every kind of table: the replica identity index under USING
// INDEX, else the primary key (in index order) whatever the replica
// identity, else none.
func TestKey(t *testing.T) {
	db := pgtest.Connect(t, pgtest.CreateDB(t, pg, "key"))
	pgtest.Exec(t, db,
		"CREATE TABLE pk(a int, b text, c int, PRIMARY KEY (b, a))",
		"CREATE TABLE fullpk(id int PRIMARY KEY, v text)", "ALTER TABLE fullpk REPLICA IDENTITY FULL",
		"CREATE TABLE nothingpk(id int PRIMARY KEY, v text)", "ALTER TABLE nothingpk REPLICA IDENTITY NOTHING",
		"CREATE TABLE idx(n int PRIMARY KEY, code text NOT NULL, v text)",
		"CREATE UNIQUE INDEX idx_code ON idx(code)", "ALTER TABLE idx REPLICA IDENTITY USING INDEX idx_code",
		// a replica identity index that was dropped: back to the primary key
		"CREATE TABLE dropped(n int PRIMARY KEY, code text NOT NULL)",
		"CREATE UNIQUE INDEX dropped_code ON dropped(code)", "ALTER TABLE dropped REPLICA IDENTITY USING INDEX dropped_code",
		"DROP INDEX dropped_code",
		// a unique index is not a key (the walker may page by it, the event's key is every column)
		"CREATE TABLE uniq(x int NOT NULL UNIQUE, v text)",
		"CREATE TABLE fullnopk(x int, v text)", "ALTER TABLE fullnopk REPLICA IDENTITY FULL",
		// the root of a partitioned table, as publish_via_partition_root names it
		"CREATE TABLE parted(id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
		"CREATE TABLE parted_2026 PARTITION OF parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
		// an included column is not part of the key
		"CREATE TABLE incl(id int, extra int, CONSTRAINT incl_pk PRIMARY KEY (id) INCLUDE (extra))")
	for table, want := range map[string]string{
		"pk": "b,a", "fullpk": "id", "nothingpk": "id", "idx": "code", "dropped": "n",
		"uniq": "", "fullnopk": "", "parted": "id,at", "parted_2026": "id,at", "incl": "id",
	} {
		var oid uint32
		if err := db.QueryRow(context.Background(), "SELECT $1::regclass::oid", table).Scan(&oid); err != nil {
			t.Fatal(err)
		}
		got, err := Key(context.Background(), db, oid)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != want {
			t.Errorf("%s: key %v, want %s", table, got, want)
		}
	}
}
