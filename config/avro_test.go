package config

import "testing"

// The avro table: defaults by sink type, and each bad setting named.
func TestAvroSettings(t *testing.T) {
	kafka := func(body string) string {
		return minimal + "\n[sinks.k]\ntype = \"kafka\"\nsources = [\"main\"]\nbrokers = [\"localhost:9092\"]\nformat = \"avro\"\n" + body + "\n"
	}
	cfg, err := Parse([]byte(kafka("[sinks.k.avro]\nregistry = \"https://sr.example:8081\"\nuser = \"u\"\npassword = \"p\"\nsubject_strategy = \"record\"\n[sinks.k.avro.tls]\nserver_name = \"sr\"")), nil)
	if err != nil {
		t.Fatal(err)
	}
	var a *Avro
	for _, s := range cfg.Sinks {
		if s.Name == "k" {
			a = s.Avro
		}
	}
	if a == nil || a.Wire != AvroConfluent || a.Registry != "https://sr.example:8081" || a.User != "u" || a.Password != "p" ||
		a.SubjectStrategy != "record" || a.TLS == nil || a.TLS.ServerName != "sr" {
		t.Fatalf("avro settings %+v", a)
	}
	cfg, err = Parse([]byte(minimal+"\n[sinks.n]\ntype = \"nats\"\nsources = [\"main\"]\nurl = \"nats://localhost:4222\"\nformat = \"avro\"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg.Sinks {
		if s.Name == "n" && (s.Avro == nil || s.Avro.Wire != AvroSingleObject) {
			t.Fatalf("a nats sink's avro defaults to single-object: %+v", s.Avro)
		}
	}

	tests := []struct{ name, toml, want string }{
		{"no registry", kafka(""), `sinks.k.avro.registry: missing: the confluent wire format (the default of kafka sinks) needs the schema registry's url, e.g. "http://localhost:8081"; or set wire = "single-object"`},
		{"bad url", kafka("[sinks.k.avro]\nregistry = \"sr:8081\""), `sinks.k.avro.registry: invalid URL "sr:8081" (want http:// or https://)`},
		{"wire", kafka("[sinks.k.avro]\nwire = \"confluence\""), `sinks.k.avro.wire: unknown wire format "confluence" (have: confluent, single-object)`},
		{"strategy", kafka("[sinks.k.avro]\nregistry = \"http://sr\"\nsubject_strategy = \"topicname\""), `sinks.k.avro.subject_strategy: unknown subject strategy "topicname" (have: topic, record)`},
		{"compatibility", kafka("[sinks.k.avro]\nregistry = \"http://sr\"\ncompatibility = \"backwards\""), `sinks.k.avro.compatibility: unknown compatibility "backwards" (have: BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE, keep)`},
		{"registry unused", kafka("[sinks.k.avro]\nwire = \"single-object\"\nregistry = \"http://sr\""), `sinks.k.avro.registry: set, but wire is "single-object": the registry options apply to wire = "confluent"`},
		{"typo", kafka("[sinks.k.avro]\nregistry = \"http://sr\"\nregistry_url = \"http://sr\""), `sinks.k.avro.registry_url: unknown key (known here: compatibility, password, registry, subject_strategy, tls, user, wire)`},
		{"not avro", minimal + "\n[sinks.k]\ntype = \"kafka\"\nsources = [\"main\"]\nbrokers = [\"localhost:9092\"]\n[sinks.k.avro]\nregistry = \"http://sr\"\n",
			`sinks.k.avro: set, but format is "json": the avro options apply to format = "avro"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.toml), nil)
			if err == nil {
				t.Fatalf("no error; want\n%s", tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
