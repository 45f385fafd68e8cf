package encode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

// TopicEncoder is implemented by formats whose bytes depend on where the
// record goes, such as the Confluent wire format, whose schema id is that
// of the record's subject, named after its topic. Pipelines call it, with
// the topic routing chose, instead of Encoder.Encode and
// KeyEncoder.EncodeKey.
//
// The encoder, not the sink, resolves the ids because it is the one that
// knows the schemas: a sink would need the schema of every record passed
// along beside its bytes, and every broker sink (Kafka, NATS, Redis) would
// then repeat the registry's bookkeeping. The topic is the only thing the
// encoder lacks, so that is what this interface adds.
type TopicEncoder interface {
	EncodeTopic(dst []byte, topic string, e *event.Event) ([]byte, error)
	EncodeKeyTopic(dst []byte, topic string, e *event.Event) ([]byte, bool, error)
}

// SchemaRegistry is what the Confluent wire format needs of a schema
// registry (encode/schemaregistry has the client of Confluent's REST API).
type SchemaRegistry interface {
	// SchemaID returns the id of schema in subject, registering it as the
	// subject's next version when the subject does not hold it yet. A
	// schema the registry refuses (incompatible with the subject's
	// versions, invalid) is a *SchemaRefusedError.
	SchemaID(ctx context.Context, subject, schema string) (int, error)
}

// SchemaRefusedError is a registry's refusal of a schema: retrying will
// not help until the subject's compatibility or the table changes.
type SchemaRefusedError struct {
	Subject string
	Reason  string
}

func (e *SchemaRefusedError) Error() string {
	return fmt.Sprintf("schema registry refuses the schema of subject %q: %s", e.Subject, e.Reason)
}

// RegistryUnavailableError is a failure to reach the registry, or any
// answer of it but a refusal. It says nothing of the event, so the
// pipeline retries the batch instead of setting the event aside as poison.
type RegistryUnavailableError struct {
	Subject string
	Err     error
}

func (e *RegistryUnavailableError) Error() string {
	return fmt.Sprintf("asking the schema registry for subject %q: %v", e.Subject, e.Err)
}

func (e *RegistryUnavailableError) Unwrap() error { return e.Err }

// Subject name strategies of Confluent's serializers.
const (
	// SubjectTopicName is TopicNameStrategy, Confluent's default:
	// "<topic>-key" and "<topic>-value".
	SubjectTopicName = "topic"
	// SubjectRecordName is RecordNameStrategy: the record's full name,
	// e.g. "pgfeed.public.users.Envelope", so one topic can hold records
	// of several schemas.
	SubjectRecordName = "record"
)

// RegistryTimeout bounds one round trip to the schema registry.
const RegistryTimeout = 30 * time.Second

// Confluent writes Avro in the Confluent wire format: a zero byte, the
// 4-byte big-endian id of the writer's schema in a schema registry, then
// the binary datum. Schemas and datums are those of Avro (see its doc);
// keys are Avro too, the record Key of the table's key columns. Schema
// events write nothing: the registry is how readers learn schemas.
//
// Each schema is registered once per subject when first met: the ids are
// cached, so the registry sees one request per schema and subject, never
// one per record.
type Confluent struct {
	avro     *Avro
	reg      SchemaRegistry
	byRecord bool

	mu      sync.Mutex
	ids     map[confluentKey]uint32
	refused map[confluentKey]refusal
}

// refusal is a registry's refusal, remembered for RefusalTTL so that a
// table whose new schema the registry refuses costs one round trip per
// RefusalTTL, not one per record, while an operator who changes the
// subject's compatibility is heard without a restart.
type refusal struct {
	err *SchemaRefusedError
	at  time.Time
}

// RefusalTTL is how long a refused schema is not asked for again.
const RefusalTTL = time.Minute

// confluentKey identifies a schema in a subject without hashing its text
// on every record: the relation (the table's shape) or fixed schema, and
// the topic that names the subject.
type confluentKey struct {
	topic string
	rel   *avroRelation // nil for the fixed schemas
	kind  uint8
}

const (
	kindValue uint8 = iota
	kindKey
	kindMessage
	kindTransaction
)

// NewConfluent returns a Confluent wire format encoder that registers its
// schemas in reg under subjects named by strategy (SubjectTopicName, also
// for "", or SubjectRecordName). It uses Options.ServerName as Avro does.
func NewConfluent(opts Options, reg SchemaRegistry, strategy string) (*Confluent, error) {
	if reg == nil {
		return nil, errors.New("the confluent wire format needs a schema registry")
	}
	switch strategy {
	case "", SubjectTopicName, SubjectRecordName:
	default:
		return nil, fmt.Errorf("unknown subject name strategy %q: use %q or %q", strategy, SubjectTopicName, SubjectRecordName)
	}
	a, err := NewAvro(opts)
	if err != nil {
		return nil, err
	}
	return &Confluent{avro: a, reg: reg, byRecord: strategy == SubjectRecordName, ids: make(map[confluentKey]uint32), refused: make(map[confluentKey]refusal)}, nil
}

// Encode fails: the subject of a record, and so its schema id, depends on
// its topic. Pipelines call EncodeTopic.
func (c *Confluent) Encode(dst []byte, e *event.Event) ([]byte, error) {
	return dst, errors.New("encoding avro in the confluent wire format needs the record's topic (EncodeTopic)")
}

// EncodeTopic appends the Confluent framing and the datum of e, whose
// record goes to topic.
func (c *Confluent) EncodeTopic(dst []byte, topic string, e *event.Event) ([]byte, error) {
	if e == nil {
		return dst, errNilEvent
	}
	switch e.Op {
	case event.OpInsert, event.OpUpdate, event.OpDelete, event.OpRead, event.OpTruncate:
		if e.Rel == nil {
			return dst, errNoRelation(FormatAvro, e)
		}
		r, err := c.avro.rels.get(e.Rel)
		if err != nil {
			return dst, err
		}
		header, err := c.header(confluentKey{topic, r, kindValue}, r.schema, e.Rel)
		if err != nil {
			return dst, err
		}
		start := len(dst)
		if dst, err = appendAvroChange(dst, header[:], e, r); err != nil {
			return dst[:start], err
		}
		return dst, nil
	case event.OpMessage:
		header, err := c.header(confluentKey{topic, nil, kindMessage}, c.avro.message.schema, nil)
		if err != nil {
			return dst, err
		}
		return appendAvroMessage(dst, header[:], e), nil
	case event.OpBegin, event.OpCommit:
		header, err := c.header(confluentKey{topic, nil, kindTransaction}, c.avro.transaction.schema, nil)
		if err != nil {
			return dst, err
		}
		return appendAvroTransaction(dst, header[:], e), nil
	case event.OpSchema:
		return dst, nil // the registry carries the schemas
	}
	return dst, errUnknownOp(FormatAvro, e)
}

// EncodeKey fails for the reason Encode does.
func (c *Confluent) EncodeKey(dst []byte, e *event.Event) ([]byte, bool, error) {
	return dst, false, errors.New("encoding an avro key in the confluent wire format needs the record's topic (EncodeKeyTopic)")
}

// EncodeKeyTopic appends the key of a row event as the Key record in the
// Confluent framing, and reports whether the event has one. Events of no
// table, truncates, tables without key columns and rows whose key columns
// were not all sent (or are null) have none.
func (c *Confluent) EncodeKeyTopic(dst []byte, topic string, e *event.Event) ([]byte, bool, error) {
	if e == nil || e.Rel == nil {
		return dst, false, nil
	}
	switch e.Op {
	case event.OpInsert, event.OpUpdate, event.OpDelete, event.OpRead:
	default:
		return dst, false, nil
	}
	r, err := c.avro.rels.get(e.Rel)
	if err != nil {
		return dst, false, err
	}
	row := e.After
	if row == nil {
		row = e.Before
	}
	if r.keySchema == "" {
		return dst, false, nil
	}
	for _, i := range r.keyCols {
		if i >= len(row) || row[i].State != event.Text {
			return dst, false, nil
		}
	}
	header, err := c.header(confluentKey{topic, r, kindKey}, r.keySchema, e.Rel)
	if err != nil {
		return dst, false, err
	}
	start := len(dst)
	dst = append(dst, header[:]...)
	for _, i := range r.keyCols {
		col := &e.Rel.Columns[i]
		var ok bool
		if dst, ok = appendAvroValue(dst, row[i].Raw, col.Type, r.convs[i]); !ok {
			return dst[:start], false, fmt.Errorf("encoding %s.%s key column %q as avro: value %q is not a valid %s", e.Rel.Schema, e.Rel.Table, col.Name, row[i].Raw, typeName(col.Type))
		}
	}
	return dst, true, nil
}

// header returns the Confluent framing of the schema that k names,
// registering the schema the first time.
func (c *Confluent) header(k confluentKey, schema string, rel *event.Relation) ([5]byte, error) {
	var h [5]byte
	c.mu.Lock()
	id, ok := c.ids[k]
	no, wasRefused := c.refused[k]
	c.mu.Unlock()
	if !ok && wasRefused && time.Since(no.at) < RefusalTTL {
		return h, no.err
	}
	if !ok {
		subject := c.subject(k, rel)
		ctx, cancel := context.WithTimeout(context.Background(), RegistryTimeout)
		n, err := c.reg.SchemaID(ctx, subject, schema)
		cancel()
		if err != nil {
			if re, refused := errors.AsType[*SchemaRefusedError](err); refused {
				c.mu.Lock()
				c.refused[k] = refusal{re, time.Now()}
				c.mu.Unlock()
				return h, err
			}
			return h, &RegistryUnavailableError{Subject: subject, Err: err}
		}
		if n < 0 || int64(n) > 1<<32-1 {
			return h, &RegistryUnavailableError{Subject: subject, Err: fmt.Errorf("schema id %d does not fit the wire format's 4 bytes", n)}
		}
		id = uint32(n)
		c.mu.Lock()
		c.ids[k] = id
		delete(c.refused, k)
		c.mu.Unlock()
	}
	binary.BigEndian.PutUint32(h[1:], id) // h[0] is the magic byte 0
	return h, nil
}

func (c *Confluent) subject(k confluentKey, rel *event.Relation) string {
	if !c.byRecord {
		if k.kind == kindKey {
			return k.topic + "-key"
		}
		return k.topic + "-value"
	}
	switch k.kind {
	case kindMessage:
		return c.avro.ns + ".Message"
	case kindTransaction:
		return c.avro.ns + ".Transaction"
	}
	name := "Envelope"
	if k.kind == kindKey {
		name = "Key"
	}
	return c.avro.ns + "." + avroName(rel.Schema) + "." + avroName(rel.Table) + "." + name
}
