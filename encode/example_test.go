package encode_test

import (
	"fmt"
	"log"

	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/event"
)

func exampleEvent() *event.Event {
	rel := &event.Relation{Schema: "public", Table: "data", Identity: event.IdentityDefault, Columns: []event.Column{
		{Name: "id", Type: event.BuiltinType(23), TypeMod: -1, Key: true},
		{Name: "data", Type: event.BuiltinType(25), TypeMod: -1},
	}}
	return &event.Event{
		Op: event.OpInsert, Schema: "public", Table: "data", Rel: rel,
		LSN: 0x16B3748, CommitLSN: 0x16B37A0, XID: 732, Seq: 1,
		After: event.Row{
			{State: event.Text, Raw: []byte("2")},
			{State: event.Text, Raw: []byte("hello")},
		},
	}
}

// A pipeline picks the format by name and appends each event to its batch
// buffer; the key goes with it for sinks that partition by row.
func ExampleNew() {
	enc, err := encode.New("wal2json", encode.Options{})
	if err != nil {
		log.Fatal(err)
	}
	e := exampleEvent()
	var buf []byte
	buf, err = enc.Encode(buf, e)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\nkey %s\n", buf, encode.Key(e))
	// Output:
	// {"change":[{"kind":"insert","schema":"public","table":"data","columnnames":["id","data"],"columntypes":["integer","text"],"columnvalues":[2,"hello"]}]}
	// key {"id":2}
}

// With Avro, readers need a table's schema before its rows: the pipeline
// asks SchemaChanged and sends a schema event first when it says so.
func ExampleAvro_SchemaChanged() {
	enc, err := encode.NewAvro(encode.Options{ServerName: "shop"})
	if err != nil {
		log.Fatal(err)
	}
	send := func(b []byte) {
		if b[0] == '{' {
			fmt.Printf("schema %s...\n", b[:65])
		} else {
			fmt.Printf("row, single-object encoded: % x ...\n", b[:2])
		}
	}
	for range 2 {
		e := exampleEvent()
		if enc.SchemaChanged(e.Rel) {
			schema, err := enc.Encode(nil, &event.Event{Op: event.OpSchema, Schema: e.Schema, Table: e.Table, Rel: e.Rel, CommitLSN: e.CommitLSN})
			if err != nil {
				log.Fatal(err)
			}
			send(schema)
		}
		row, err := enc.Encode(nil, e)
		if err != nil {
			log.Fatal(err)
		}
		send(row)
	}
	// Output:
	// schema {"type":"record","name":"Envelope","namespace":"shop.public.data"...
	// row, single-object encoded: c3 01 ...
	// row, single-object encoded: c3 01 ...
}
