package config

import (
	"slices"
	"strings"
)

// Avro wire formats (avro.wire).
const (
	// AvroConfluent is Confluent's wire format: a zero byte, the schema's
	// 4-byte id in a schema registry, the datum. The default of Kafka sinks.
	AvroConfluent = "confluent"
	// AvroSingleObject is Avro's single-object encoding: C3 01, the
	// schema's CRC-64 fingerprint, the datum. The default of other sinks.
	AvroSingleObject = "single-object"
)

var (
	avroWires             = []string{AvroConfluent, AvroSingleObject}
	avroSubjectStrategies = []string{"topic", "record"}
	avroCompatibilities   = []string{"BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE", "keep"}
)

// Avro is [sinks.NAME.avro], the options of format = "avro".
type Avro struct {
	// Wire is AvroConfluent or AvroSingleObject; when left out,
	// AvroConfluent for Kafka sinks, AvroSingleObject for the others.
	Wire string
	// Registry is the schema registry's URL (several separated by
	// commas), required by AvroConfluent.
	Registry string
	// User and Password are the registry's basic auth (user set: on).
	User, Password string
	// TLS is [sinks.NAME.avro.tls], for an https:// registry.
	TLS *TLS
	// SubjectStrategy is "topic" (TopicNameStrategy, the default:
	// "<topic>-key", "<topic>-value") or "record" (RecordNameStrategy:
	// the record's full name).
	SubjectStrategy string
	// Compatibility is the level set on each subject before the first
	// schema pgfeed registers there; empty: BACKWARD. "keep" sets none.
	Compatibility string
}

// avro reads [sinks.NAME.avro]; it returns nil for sinks of other
// formats, which may not have the table.
func (r *reader) avro(t *table, s *Sink) *Avro {
	if s.Format != "avro" {
		if t.has("avro") {
			t.sub("avro").skipRest()
			r.add(t.path("avro"), "set, but format is %q: the avro options apply to format = \"avro\"", s.Format)
		}
		return nil
	}
	at := t.sub("avro")
	a := &Avro{
		Wire:            at.str("wire"),
		Registry:        at.str("registry"),
		User:            at.str("user"),
		Password:        at.str("password"),
		SubjectStrategy: at.str("subject_strategy"),
		Compatibility:   at.str("compatibility"),
	}
	if at.m != nil {
		a.TLS = r.tls(at)
	}
	at.done()
	switch {
	case a.Wire == "" && s.Type == SinkKafka:
		a.Wire = AvroConfluent
	case a.Wire == "":
		a.Wire = AvroSingleObject
	case !slices.Contains(avroWires, a.Wire):
		r.add(at.path("wire"), "unknown wire format %q (have: %s)", a.Wire, strings.Join(avroWires, ", "))
	}
	if a.Wire == AvroConfluent && s.Type == SinkFile {
		r.add(at.path("wire"), `file sinks write object container files, which carry their schemas: remove wire, or set it to "single-object"`)
	}
	if a.SubjectStrategy != "" && !slices.Contains(avroSubjectStrategies, a.SubjectStrategy) {
		r.add(at.path("subject_strategy"), "unknown subject strategy %q (have: %s)", a.SubjectStrategy, strings.Join(avroSubjectStrategies, ", "))
	}
	if a.Compatibility != "" && !slices.Contains(avroCompatibilities, a.Compatibility) {
		r.add(at.path("compatibility"), "unknown compatibility %q (have: %s)", a.Compatibility, strings.Join(avroCompatibilities, ", "))
	}
	if a.Wire == AvroConfluent {
		switch {
		case a.Registry == "":
			r.add(at.path("registry"), `missing: the confluent wire format (the default of kafka sinks) needs the schema registry's url, e.g. "http://localhost:8081"; or set wire = "single-object"`)
		default:
			for u := range strings.SplitSeq(a.Registry, ",") {
				if u = strings.TrimSpace(u); !validURL(u, "http", "https") {
					r.add(at.path("registry"), "invalid URL %q (want http:// or https://)", u)
				}
			}
		}
	} else {
		for _, k := range []string{"registry", "user", "subject_strategy", "compatibility", "tls"} {
			if at.has(k) {
				r.add(at.path(k), "set, but wire is %q: the registry options apply to wire = %q", a.Wire, AvroConfluent)
			}
		}
	}
	return a
}
