// Package source streams committed changes out of PostgreSQL through a
// logical replication slot and the pgoutput plugin. It owns the replication
// connection (one goroutine reads and writes it), turns pgoutput messages
// into events, keeps large in-progress transactions on disk until they
// commit, and confirms to Postgres only the positions its consumer acked:
// after any crash, everything after the last ack is delivered again.
package source
