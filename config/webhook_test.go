package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWebhookSettings(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	c, err := Parse([]byte(minimal+`
[sinks.hook]
type = "webhook"
sources = ["main"]
format = "cloudevents"
url = "https://h.example/in"
secret = "${SECRET}"
mode = "batch"
max_batch = 100
max_in_flight = 4
retries = 0
retry_backoff = "1s"
retry_max_backoff = "1m"
dead_letter = "poison"

[sinks.hook.tls]
ca = "`+cert+`"
cert = "`+cert+`"
key = "`+key+`"
server_name = "h.example"
insecure_skip_verify = true

[sinks.poison]
type = "file"
path = "`+filepath.Join(dir, "dead")+`"
`), env("SECRET", "s3"))
	if err != nil {
		t.Fatal(err)
	}
	hook := c.Sink("hook")
	w := hook.Settings.(*WebhookSink)
	want := WebhookSink{
		URL: "https://h.example/in", Timeout: DefaultWebhookTimeout, Secret: "s3", Mode: WebhookBatch,
		MaxBatch: 100, MaxInFlight: 4, Retries: 0, MinBackoff: time.Second, MaxBackoff: time.Minute,
		TLS: &TLS{CA: cert, Cert: cert, Key: key, ServerName: "h.example", InsecureSkipVerify: true},
	}
	if !reflect.DeepEqual(*w, want) {
		t.Fatalf("got  %+v\nwant %+v", *w, want)
	}
	if hook.DeadLetter != "poison" || len(c.Sink("poison").Sources) != 0 {
		t.Fatalf("dead letter %q, its sources %v", hook.DeadLetter, c.Sink("poison").Sources)
	}

	// Defaults.
	c, err = Parse([]byte(minimal+`
[sinks.hook]
type = "webhook"
sources = ["main"]
url = "http://h.example/in"
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	w = c.Sink("hook").Settings.(*WebhookSink)
	want = WebhookSink{
		URL: "http://h.example/in", Timeout: DefaultWebhookTimeout, Mode: WebhookBatch, MaxBatch: DefaultWebhookBatch,
		MaxInFlight: 1, Retries: DefaultWebhookRetries, MinBackoff: DefaultWebhookBackoff, MaxBackoff: DefaultWebhookMaxWait,
	}
	if !reflect.DeepEqual(*w, want) {
		t.Fatalf("defaults: got  %+v\nwant %+v", *w, want)
	}
}

// Every bad webhook or dead-letter setting is named, with what to do.
func TestWebhookProblems(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	hook := func(body string) string {
		return minimal + "\n[sinks.hook]\ntype = \"webhook\"\nsources = [\"main\"]\nurl = \"https://h.example/\"\n" + body + "\n"
	}
	tests := []struct{ name, toml, want string }{
		{"empty secret", hook(`secret = "${SECRET:-}"`), `sinks.hook.secret: empty`},
		{"mode", hook(`mode = "stream"`), `sinks.hook.mode: unknown mode "stream" (have: batch, single, binary)`},
		{"avro batched", hook(`format = "avro"`), `sinks.hook.format: avro is binary and cannot be batched in a JSON array: set mode = "single", or use another format`},
		{"max_batch zero", hook(`max_batch = 0`), `sinks.hook.max_batch: must be at least 1`},
		{"max_batch single", hook("mode = \"single\"\nmax_batch = 5"), `sinks.hook.max_batch: has no effect with mode = "single": remove it`},
		{"max_in_flight type", hook(`max_in_flight = "4"`), `sinks.hook.max_in_flight: expected an integer, got string`},
		{"retries", hook(`retries = -1`), `sinks.hook.retries: must not be negative (0: no retries)`},
		{"backoff", hook(`retry_backoff = "0s"`), `sinks.hook.retry_backoff: must be positive`},
		{"backoff bounds", hook("retry_backoff = \"10s\"\nretry_max_backoff = \"1s\""), `sinks.hook.retry_max_backoff: 1s is less than retry_backoff (10s)`},
		{"tls on http", minimal + "\n[sinks.hook]\ntype = \"webhook\"\nsources = [\"main\"]\nurl = \"http://h/\"\n[sinks.hook.tls]\ninsecure_skip_verify = true\n",
			`sinks.hook.tls: set, but url is http://: use https://, or remove the tls settings`},
		{"ca file missing", hook("[sinks.hook.tls]\nca = \"" + filepath.Join(dir, "nope.pem") + "\""),
			`sinks.hook.tls.ca: reading CA file: open ` + filepath.Join(dir, "nope.pem") + `: no such file or directory`},
		{"ca file not PEM", hook("[sinks.hook.tls]\nca = \"" + notPEM + "\""), `sinks.hook.tls.ca: reading CA file ` + notPEM + `: no PEM certificate in it`},
		{"cert without key", hook("[sinks.hook.tls]\ncert = \"" + cert + "\""), `sinks.hook.tls.key: missing: a client certificate needs its key`},
		{"key without cert", hook("[sinks.hook.tls]\nkey = \"" + key + "\""), `sinks.hook.tls.cert: missing: a client key needs its certificate`},
		{"key is not a key", hook("[sinks.hook.tls]\ncert = \"" + cert + "\"\nkey = \"" + cert + "\""),
			`sinks.hook.tls.cert: loading client certificate and key: tls: found a certificate rather than a key in the PEM for the private key`},
		{"tls typo", hook("[sinks.hook.tls]\nca_file = \"x\""), `sinks.hook.tls.ca_file: unknown key (known here: ca, cert, insecure_skip_verify, key, server_name)`},
		{"dead letter unknown", hook(`dead_letter = "poisn"`) + "[sinks.poison]\ntype = \"stdout\"\n",
			"sinks.hook.dead_letter: unknown sink \"poisn\" (did you mean poison?)\nsinks.poison.sources: missing: name the sources this sink reads, e.g. sources = [\"main\"]"},
		{"dead letter empty", hook(`dead_letter = ""`), `sinks.hook.dead_letter: empty: name the sink that receives this sink's poison records, or leave it out`},
		{"dead letter itself", hook(`dead_letter = "hook"`), `sinks.hook.dead_letter: names this sink itself: name another sink, e.g. a file sink without sources`},
		{"dead letter with sources", hook(`dead_letter = "out"`), `sinks.hook.dead_letter: sink "out" reads sources: a dead-letter sink gets only poison records, so remove its sources`},
		{"dead letter chain", hook(`dead_letter = "a"`) + "[sinks.a]\ntype = \"stdout\"\ndead_letter = \"b\"\n[sinks.b]\ntype = \"stdout\"\n",
			"sinks.hook.dead_letter: sink \"a\" has a dead_letter of its own: a dead-letter sink must be the end of the line"},
		{"dead letter format", hook(`dead_letter = "a"`) + "[sinks.a]\ntype = \"stdout\"\nformat = \"debezium\"\n",
			"sinks.a.format: dead-letter sink of sinks.hook: it writes JSON envelopes, so remove format"},
		{"dead letter filters", hook(`dead_letter = "a"`) + "[sinks.a]\ntype = \"stdout\"\n[sinks.a.tables]\ninclude = [\"x\"]\n",
			"sinks.a: dead-letter sink of sinks.hook: it takes every poison record whole, so remove its tables and columns (filter in sinks.hook)"},
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

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "h.example"}, DNSNames: []string{"h.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(cert+key, `"\`) {
		t.Skip("temporary folder name cannot go in a TOML string as it is")
	}
	return cert, key
}
