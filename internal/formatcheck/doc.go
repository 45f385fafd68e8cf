// Package formatcheck holds the tests that compare pgfeed's compatibility
// formats with their originals on the same changes: the wal2json encoders
// with the real wal2json output plugin, reading one stretch of WAL through
// both. It has no code of its own.
package formatcheck
