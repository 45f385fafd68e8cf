package encode

import "encoding/binary"

// AvroFingerprint returns the CRC-64-AVRO fingerprint of schema's Parsing
// Canonical Form, the one the single-object encoding puts after C3 01
// (little-endian). Sinks that hold datums of the Avro encoder use it to
// find which schema, announced by a schema event, a datum was written with.
func AvroFingerprint(schema string) (uint64, error) {
	h, err := singleObjectHeader(schema)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(h[2:]), nil
}
