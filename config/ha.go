package config

// Checkpoint stores.
const (
	// CheckpointFile keeps checkpoints in the local bbolt file named by
	// checkpoint. It is the default (also as "").
	CheckpointFile = "file"
	// CheckpointPostgres (checkpoint = "postgres") keeps them in tables of
	// schema pgfeed of a PostgreSQL database, where a standby pgfeed can
	// read them. A file of that name is written "./postgres".
	CheckpointPostgres = "postgres"
)

// LeasePostgres is the only lease ([ha] lease): a session-level advisory
// lock in the checkpoint database.
const LeasePostgres = "postgres"

// HA configures active/passive operation ([ha]).
type HA struct {
	// Lease is "" (every pgfeed started streams) or "postgres": pgfeeds
	// with the same sources take a lease in the checkpoint database; one
	// streams, the others wait as standbys and take over when it goes.
	Lease string
}

// UsesPostgresCheckpoints reports whether checkpoints are kept in
// PostgreSQL (checkpoint = "postgres").
func (c *Config) UsesPostgresCheckpoints() bool { return c.CheckpointStore == CheckpointPostgres }

// checkpointStore reads which store checkpoint names, checkpoint_dsn and
// [ha]. c.Checkpoint is already read.
func (r *reader) checkpointStore(top *table, c *Config) {
	if c.Checkpoint == CheckpointPostgres {
		c.CheckpointStore = CheckpointPostgres
	}
	c.CheckpointDSN = top.str("checkpoint_dsn")
	if c.CheckpointStore != CheckpointPostgres && top.has("checkpoint_dsn") {
		r.add("checkpoint_dsn", `set, but checkpoints are kept in a file: set checkpoint = "postgres", or leave checkpoint_dsn out`)
	}
	ht := top.sub("ha")
	c.HA.Lease = ht.str("lease")
	switch c.HA.Lease {
	case "":
	case LeasePostgres:
		if c.CheckpointStore != CheckpointPostgres {
			r.add(ht.path("lease"), `"postgres" needs checkpoint = "postgres": a standby must read the checkpoints the leader wrote`)
		}
	default:
		r.add(ht.path("lease"), "unknown lease %q (have: postgres)", c.HA.Lease)
	}
	ht.done()
}

// checkCheckpointDSN makes sure a Postgres checkpoint store has a
// database: checkpoint_dsn, else the first postgres source's.
func (r *reader) checkCheckpointDSN(c *Config) {
	if c.CheckpointStore != CheckpointPostgres || c.CheckpointDSN != "" {
		return
	}
	for _, s := range c.Sources {
		if pg, ok := s.Settings.(*PostgresSource); ok {
			c.CheckpointDSN = pg.DSN
			return
		}
	}
	r.add("checkpoint_dsn", `missing: checkpoint = "postgres" needs a database, and no postgres source has one to share`)
}
