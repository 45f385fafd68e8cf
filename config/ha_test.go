package config

import (
	"strings"
	"testing"
)

func TestCheckpointStoreAndLease(t *testing.T) {
	tests := []struct {
		name, toml string
		store, dsn string
		lease      string
		problem    string // the whole error, "" for none
	}{
		{"default is the file", minimal, "", "", "", ""},
		{"a file path", `checkpoint = "state/pgfeed.db"` + minimal, "", "", "", ""},
		{"postgres in the source database", `checkpoint = "postgres"` + minimal, CheckpointPostgres, "postgres://localhost/db", "", ""},
		{"postgres in another database", "checkpoint = \"postgres\"\ncheckpoint_dsn = \"postgres://other/ck\"" + minimal, CheckpointPostgres, "postgres://other/ck", "", ""},
		{"a file named postgres", `checkpoint = "./postgres"` + minimal, "", "", "", ""},
		{"lease", "checkpoint = \"postgres\"\n[ha]\nlease = \"postgres\"\n" + minimal, CheckpointPostgres, "postgres://localhost/db", LeasePostgres, ""},
		{"lease without the postgres store", "[ha]\nlease = \"postgres\"\n" + minimal, "", "", LeasePostgres,
			`ha.lease: "postgres" needs checkpoint = "postgres": a standby must read the checkpoints the leader wrote`},
		{"unknown lease", "checkpoint = \"postgres\"\n[ha]\nlease = \"etcd\"\n" + minimal, "", "", "", `ha.lease: unknown lease "etcd" (have: postgres)`},
		{"unknown ha key", "checkpoint = \"postgres\"\n[ha]\nleese = \"postgres\"\n" + minimal, "", "", "", `ha.leese: unknown key (did you mean lease?)`},
		{"dsn without the postgres store", "checkpoint_dsn = \"postgres://other/ck\"" + minimal, "", "", "",
			`checkpoint_dsn: set, but checkpoints are kept in a file: set checkpoint = "postgres", or leave checkpoint_dsn out`},
		{"postgres store without a postgres database", `checkpoint = "postgres"
[sources.up]
type = "kafka"
brokers = ["k:9092"]
topics = ["t"]
[sinks.out]
type = "stdout"
sources = ["up"]`, "", "", "", `checkpoint_dsn: missing: checkpoint = "postgres" needs a database, and no postgres source has one to share`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.toml), nil)
			if tt.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tt.problem) {
					t.Fatalf("error = %v\nwant %s", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.CheckpointStore != tt.store || c.CheckpointDSN != tt.dsn || c.HA.Lease != tt.lease {
				t.Errorf("store %q dsn %q lease %q; want %q %q %q", c.CheckpointStore, c.CheckpointDSN, c.HA.Lease, tt.store, tt.dsn, tt.lease)
			}
		})
	}
}
