// Package sinktest is the conformance suite that every pgfeed sink passes:
// records arrive in order, are readable at the destination as soon as Write
// returns, a cancelled context fails a write without breaking the sink, an
// empty batch is harmless, and Close is final and idempotent.
//
// A sink's own tests call Run with a function that opens the sink on a fresh
// destination and says how to read that destination back, e.g. a file sink
// reads its files, a Kafka sink consumes its topic from the (test) broker.
package sinktest
