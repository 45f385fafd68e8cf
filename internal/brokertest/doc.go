// Package brokertest starts real message servers for tests: redis-server and
// nats-server (with JetStream), each on a free port of 127.0.0.1 with its
// data in a temporary folder, stopped when the test ends. A server can be
// stopped and started again on the same port and data, to test a sink
// through an outage. With CI set in the environment a missing server binary
// fails the test; elsewhere the test is skipped with a hint.
package brokertest
