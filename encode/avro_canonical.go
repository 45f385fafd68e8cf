package encode

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/pkg/crc64"
)

// singleObjectMagic starts every Avro single-object encoded datum.
var singleObjectMagic = [2]byte{0xC3, 0x01}

// singleObjectHeader checks that schema is a valid Avro schema and returns
// the single-object header for it: the magic and the little-endian
// CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form.
//
// The canonical form is computed here rather than taken from hamba/avro,
// whose canonical form keeps logicalType attributes. The specification
// strips them, and so do the Java and Python implementations that readers
// use to compute the fingerprints they look schemas up by; a header made
// from hamba's form would not match theirs for any table with a date or a
// timestamp.
func singleObjectHeader(schema string) ([]byte, error) {
	// hamba parses it to prove the schema is valid. A private cache, because
	// the global one would make two versions of a table's schema, which
	// share their full name, collide.
	if _, err := avro.ParseWithCache(schema, "", &avro.SchemaCache{}); err != nil {
		return nil, err
	}
	pcf, err := parsingCanonicalForm(schema)
	if err != nil {
		return nil, err
	}
	h := crc64.New()
	h.Write([]byte(pcf))
	header := append([]byte(nil), singleObjectMagic[:]...)
	return binary.LittleEndian.AppendUint64(header, h.Sum64()), nil
}

var avroPrimitives = map[string]bool{
	"null": true, "boolean": true, "int": true, "long": true,
	"float": true, "double": true, "bytes": true, "string": true,
}

// parsingCanonicalForm returns the Parsing Canonical Form of an Avro schema
// as the specification defines it: primitive types in their simple form,
// full names for named types, only the attributes that matter for parsing
// (type, name, fields, symbols, items, values, size), in that order, and no
// whitespace.
func parsingCanonicalForm(schema string) (string, error) {
	d := json.NewDecoder(strings.NewReader(schema))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "", fmt.Errorf("parsing avro schema: %w", err)
	}
	b, err := appendCanonical(nil, v, "")
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func appendCanonical(dst []byte, v any, namespace string) ([]byte, error) {
	switch s := v.(type) {
	case string:
		if avroPrimitives[s] {
			return appendQuoted(dst, s), nil
		}
		return appendQuoted(dst, fullName(s, namespace)), nil
	case []any: // a union
		dst = append(dst, '[')
		for i, branch := range s {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendCanonical(dst, branch, namespace); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case map[string]any:
		typ, ok := s["type"].(string)
		if !ok {
			return appendCanonical(dst, s["type"], namespace)
		}
		switch typ {
		case "record", "error", "enum", "fixed":
			name, _ := s["name"].(string)
			if name == "" {
				return dst, fmt.Errorf("avro schema: %s without a name", typ)
			}
			if ns, ok := s["namespace"].(string); ok {
				namespace = ns
			}
			full := fullName(name, namespace)
			if i := strings.LastIndexByte(full, '.'); i >= 0 {
				namespace = full[:i]
			} else {
				namespace = ""
			}
			dst = append(dst, `{"name":`...)
			dst = appendQuoted(dst, full)
			dst = append(dst, `,"type":`...)
			dst = appendQuoted(dst, typ)
			switch typ {
			case "enum":
				dst = append(dst, `,"symbols":[`...)
				symbols, _ := s["symbols"].([]any)
				for i, sym := range symbols {
					if i > 0 {
						dst = append(dst, ',')
					}
					str, _ := sym.(string)
					dst = appendQuoted(dst, str)
				}
				dst = append(dst, ']')
			case "fixed":
				size, ok := s["size"].(json.Number)
				if !ok {
					return dst, fmt.Errorf("avro schema: fixed %s without a size", full)
				}
				dst = append(dst, `,"size":`...)
				dst = append(dst, size...)
			default:
				dst = append(dst, `,"fields":[`...)
				fields, _ := s["fields"].([]any)
				for i, f := range fields {
					field, ok := f.(map[string]any)
					if !ok {
						return dst, fmt.Errorf("avro schema: a field of %s is not an object", full)
					}
					if i > 0 {
						dst = append(dst, ',')
					}
					fname, _ := field["name"].(string)
					dst = append(dst, `{"name":`...)
					dst = appendQuoted(dst, fname)
					dst = append(dst, `,"type":`...)
					var err error
					if dst, err = appendCanonical(dst, field["type"], namespace); err != nil {
						return dst, err
					}
					dst = append(dst, '}')
				}
				dst = append(dst, ']')
			}
			return append(dst, '}'), nil
		case "array":
			dst = append(dst, `{"type":"array","items":`...)
			dst, err := appendCanonical(dst, s["items"], namespace)
			return append(dst, '}'), err
		case "map":
			dst = append(dst, `{"type":"map","values":`...)
			dst, err := appendCanonical(dst, s["values"], namespace)
			return append(dst, '}'), err
		}
		// A primitive with attributes ({"type":"long","logicalType":...})
		// or a reference to a named type.
		return appendCanonical(dst, typ, namespace)
	}
	return dst, fmt.Errorf("avro schema: unexpected %T", v)
}

// fullName resolves a name against the enclosing namespace: a name with a
// dot is already full.
func fullName(name, namespace string) string {
	if strings.IndexByte(name, '.') >= 0 || namespace == "" {
		return name
	}
	return namespace + "." + name
}

// appendQuoted writes s as a JSON string. Avro names and symbols are plain
// ASCII, and the canonical form writes other characters as UTF-8, so only
// quotes and backslashes need escaping.
func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}
