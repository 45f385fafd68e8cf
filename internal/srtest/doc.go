// Package srtest is an in-process Confluent Schema Registry for tests: the
// subset of its REST API that pgfeed and franz-go's sr client use
// (registering a version, a schema by id, a subject's compatibility),
// with BACKWARD compatibility checked by hamba/avro, so that a test sees
// the refusals a real registry would give.
package srtest
