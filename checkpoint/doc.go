// Package checkpoint is pgfeed's embedded, durable record of how far each
// pipeline got, so that a restart resumes exactly where the last run left off.
//
// A Store is one bbolt file holding, per source: the position each sink has
// made durable (the pipeline confirms to Postgres only the lowest of them),
// the progress of snapshots and backfills table by table, and a short log of
// (time, position) marks used to hold confirmation back when a retention
// window is configured, so that recent history stays replayable. Every write
// is a bbolt transaction fsynced before the method returns.
//
// PGStore keeps the same records in tables of schema pgfeed of a PostgreSQL
// database, so that the standby of an active/passive pair resumes where the
// leader left off; both implement Storage, what the pipeline uses.
package checkpoint
