package schemaregistry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"

	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/srtest"
)

func insert(id string) *event.Event {
	rel := &event.Relation{OID: 1, Schema: "public", Table: "users", Columns: []event.Column{
		{Name: "id", Type: event.BuiltinType(23), TypeMod: -1, Key: true},
		{Name: "name", Type: event.BuiltinType(25), TypeMod: -1},
	}}
	return &event.Event{Op: event.OpInsert, Rel: rel, Schema: "public", Table: "users", Seq: 1,
		After: event.Row{{State: event.Text, Raw: []byte(id)}, {State: event.Text, Raw: []byte("ann")}}}
}

// RecordNameStrategy names subjects after the records; the compatibility
// level asked for is set on each subject; a wrong password is an outage
// (retried), not a refusal.
func TestRecordNameStrategyAndErrors(t *testing.T) {
	reg := srtest.New(t)
	cl, err := New(Options{URL: reg.URL, Compatibility: "FULL"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := encode.NewConfluent(encode.Options{ServerName: "shop"}, cl, encode.SubjectRecordName)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"1", "2"} {
		if _, err := c.EncodeTopic(nil, "any.topic", insert(id)); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := c.EncodeKeyTopic(nil, "any.topic", insert(id)); err != nil || !ok {
			t.Fatal(ok, err)
		}
	}
	for _, s := range []string{"shop.public.users.Envelope", "shop.public.users.Key"} {
		if v := reg.Versions(s); len(v) != 1 {
			t.Errorf("versions of %s: %v", s, v)
		}
		if n := reg.Registrations(s); n != 1 {
			t.Errorf("%d registrations in %s, want 1", n, s)
		}
		if c := reg.Compatibility(s); c != "FULL" {
			t.Errorf("compatibility of %s = %q", s, c)
		}
	}

	reg.User, reg.Password = "u", "right"
	cl, _ = New(Options{URL: reg.URL, User: "u", Password: "wrong"})
	c, _ = encode.NewConfluent(encode.Options{}, cl, "")
	_, err = c.EncodeTopic(nil, "t", insert("1"))
	if _, ok := errors.AsType[*encode.RegistryUnavailableError](err); !ok {
		t.Fatalf("wrong password: %v (%T), want a RegistryUnavailableError", err, err)
	}

	// Nothing listening: an outage too.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cl, _ = New(Options{URL: "http://" + addr})
	if _, err := cl.SchemaID(context.Background(), "s", `"string"`); err == nil {
		t.Fatal("no error from a registry that is not there")
	} else if _, refused := errors.AsType[*encode.SchemaRefusedError](err); refused {
		t.Fatalf("an unreachable registry refuses: %v", err)
	}
}

// An invalid schema is a refusal with the registry's reason.
func TestRefusedSchema(t *testing.T) {
	reg := srtest.New(t)
	cl, _ := New(Options{URL: reg.URL})
	_, err := cl.SchemaID(context.Background(), "s-value", `{"type":"record","name":"r","fields":[{"name":"a","type":"nope"}]}`)
	re, ok := errors.AsType[*encode.SchemaRefusedError](err)
	if !ok || re.Subject != "s-value" || re.Reason == "" {
		t.Fatalf("got %v (%T)", err, err)
	}
	t.Log(err)
}

// An https:// registry is reached with the CAs given, and refused
// without them (an outage to retry, not a refusal).
func TestTLS(t *testing.T) {
	reg := srtest.NewTLS(t)
	pool := x509.NewCertPool()
	pool.AddCert(reg.Cert)
	cl, err := New(Options{URL: reg.URL, TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SchemaID(context.Background(), "s-value", `"string"`); err != nil {
		t.Fatal(err)
	}
	cl, _ = New(Options{URL: reg.URL})
	_, err = cl.SchemaID(context.Background(), "s-value", `"string"`)
	if _, refused := errors.AsType[*encode.SchemaRefusedError](err); err == nil || refused {
		t.Fatalf("without the CA: %v", err)
	}
}
