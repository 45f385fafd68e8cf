// Package avrofile is the file sink of format = "avro": Avro object
// container files (OCF), one sequence of files per topic (routing's
// destination, "public.users" by default), each file holding one writer
// schema in its header and one block per batch, so any Avro reader
// (avro-tools, goavro, fastavro, Spark) reads them without pgfeed.
package avrofile
