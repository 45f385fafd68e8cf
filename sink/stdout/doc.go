// Package stdout is the sink of `pgfeed stream`: each record's value on a
// line of its own (JSON lines) on standard output or any io.Writer, flushed
// before Write returns so that a consumer reading the pipe sees every change
// that pgfeed acks.
package stdout
