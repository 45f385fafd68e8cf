package route_test

import (
	"fmt"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/route"
)

func ExampleRouter_Apply() {
	r, err := route.New(route.Options{
		Exclude: []string{"*.audit_*"},
		Mask:    []string{"public.users.email"},
		Default: "cdc.{schema}.{table}",
	})
	if err != nil {
		panic(err)
	}
	users := &event.Relation{Schema: "public", Table: "users", Columns: []event.Column{
		{Name: "id", Type: event.BuiltinType(23), Key: true},
		{Name: "email", Type: event.BuiltinType(25)},
	}}
	in := &event.Event{Op: event.OpInsert, Schema: "public", Table: "users", Rel: users, After: event.Row{
		{State: event.Text, Raw: []byte("1")},
		{State: event.Text, Raw: []byte("ann@example.com")},
	}}
	rec, ok := r.Apply(in)
	fmt.Println(ok, rec.Topic, string(rec.Key))
	fmt.Println(string(rec.Event.AppendJSON(nil)))
	fmt.Println(string(in.After[1].Raw)) // the event other sinks see is untouched

	_, ok = r.Apply(&event.Event{Op: event.OpInsert, Schema: "public", Table: "audit_log", Rel: &event.Relation{Schema: "public", Table: "audit_log"}})
	fmt.Println(ok)
	// Output:
	// true cdc.public.users {"id":1}
	// {"op":"insert","schema":"public","table":"users","lsn":"0/0","commit_lsn":"0/0","xid":0,"key":{"id":1},"before":null,"after":{"id":1,"email":"***"}}
	// ann@example.com
	// false
}
