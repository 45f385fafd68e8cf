// Package schemaregistry is the client of a Confluent Schema Registry that
// the Avro Confluent wire format (encode.Confluent) registers its schemas
// with. It is franz-go's sr client plus what pgfeed adds: a cache, so that
// the registry sees one request per schema and subject, the compatibility
// level set on each subject before its first schema, and refusals told
// apart from outages (encode.SchemaRefusedError).
package schemaregistry
