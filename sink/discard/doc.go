// Package discard is a sink that drops every record and counts what it
// dropped. It measures the rest of a pipeline (decode, encode, batching)
// without any destination in the way, and it is the sink of `pgfeed bench`.
package discard
