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
	"testing"
	"time"
)

func TestNATSAndRedisSettings(t *testing.T) {
	tests := []struct {
		name string
		toml string
		ok   func(s *Sink) bool
	}{
		{"nats defaults", sink(`type = "nats"
url = "nats://h:4222"`), func(s *Sink) bool {
			n := s.Settings.(*NATSSink)
			return s.Route.Default == DefaultNATSSubject && n.JetStream && n.Stream == "" && !n.CreateStream &&
				reflect.DeepEqual(n.StreamSubjects, []string{"pgfeed.>"}) && n.DuplicateWindow == 2*time.Minute &&
				n.AckTimeout == 30*time.Second && n.Storage == "file" && n.TLS == nil
		}},
		{"nats subjects from every template", sink(`type = "nats"
url = "nats://h:4222"
subject = "cdc.{schema}.{table}"
stream = "CDC"
create_stream = true
duplicate_window = "10m"
storage = "memory"
replicas = 3
max_age = "24h"
max_bytes = "1GiB"
user = "u"
password = "p"
tls = true
[sinks.archive.route]
other = "cdc.msg.{op}"
[sinks.archive.route.tables]
"public.users" = "people.all"
"public.orders" = "cdc.orders.{op}"`), func(s *Sink) bool {
			n := s.Settings.(*NATSSink)
			return reflect.DeepEqual(n.StreamSubjects, []string{"cdc.>", "people.all"}) && n.Stream == "CDC" && n.CreateStream &&
				n.DuplicateWindow == 10*time.Minute && n.Storage == "memory" && n.Replicas == 3 && n.MaxAge == 24*time.Hour &&
				n.MaxBytes == 1<<30 && n.User == "u" && n.Password == "p" && n.TLS != nil
		}},
		{"nats core", sink(`type = "nats"
url = "nats://h:4222"
jetstream = false
token = "t"`), func(s *Sink) bool {
			n := s.Settings.(*NATSSink)
			return !n.JetStream && n.Token == "t" && n.StreamSubjects == nil
		}},
		{"nats explicit stream subjects", sink(`type = "nats"
url = "nats://h:4222"
subject = "{table}"
stream_subjects = ["*", "pgfeed.>"]`), func(s *Sink) bool {
			return reflect.DeepEqual(s.Settings.(*NATSSink).StreamSubjects, []string{"*", "pgfeed.>"})
		}},
		{"redis defaults", sink(`type = "redis"
addr = "h:6379"`), func(s *Sink) bool {
			return *s.Settings.(*RedisSink) == RedisSink{Addr: "h:6379", Mode: RedisStream, Idempotent: true, Timeout: 10 * time.Second}
		}},
		{"redis everything", sink(`type = "redis"
addr = "h:6379"
username = "u"
password = "p"
db = 2
stream = "s:{table}"
max_len = 1000
idempotent = false
timeout = "3s"
[sinks.archive.tls]
server_name = "redis.internal"
insecure_skip_verify = true`), func(s *Sink) bool {
			r := s.Settings.(*RedisSink)
			return r.Username == "u" && r.Password == "p" && r.DB == 2 && r.MaxLen == 1000 && !r.Idempotent && r.Timeout == 3*time.Second &&
				*r.TLS == TLS{ServerName: "redis.internal", InsecureSkipVerify: true} && s.Route.Default == "s:{table}"
		}},
		{"redis channel", sink(`type = "redis"
addr = "h:6379"
channel = "c"`), func(s *Sink) bool {
			r := s.Settings.(*RedisSink)
			return r.Mode == RedisChannel && !r.Idempotent
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.toml), nil)
			if err != nil {
				t.Fatal(err)
			}
			if s := c.Sink("archive"); !tt.ok(s) {
				t.Errorf("settings: %+v %+v", s.Route, s.Settings)
			}
		})
	}
}

func TestNATSAndRedisProblems(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		toml string
		want string
	}{
		{"nats subjects unknown", sink(`type = "nats"
url = "nats://h:4222"
subject = "{schema}.{table}"`), `sinks.archive.stream_subjects: missing, and the subject template "{schema}.{table}" starts with a placeholder, so pgfeed cannot tell which subjects its stream needs: set stream_subjects, or start the template with a fixed token (e.g. "pgfeed.")`},
		{"nats bad stream settings", sink(`type = "nats"
url = "nats://h:4222"
stream = "a.b"
stream_subjects = ["a..b", "a.>.b", ""]
storage = "disk"
replicas = 7
duplicate_window = "0s"
create_stream = true`), `sinks.archive.stream: invalid stream name "a.b" (no spaces, ".", "*", ">", "/" or "\\")
sinks.archive.stream_subjects[0]: invalid subject filter "a..b" (tokens separated by ".", "*" for one token, ">" only last)
sinks.archive.stream_subjects[1]: invalid subject filter "a.>.b" (tokens separated by ".", "*" for one token, ">" only last)
sinks.archive.stream_subjects[2]: invalid subject filter "" (tokens separated by ".", "*" for one token, ">" only last)
sinks.archive.duplicate_window: must be positive: without a window the stream drops no redelivery
sinks.archive.storage: unknown storage "disk" (have: file, memory)
sinks.archive.replicas: must be 1 to 5`},
		{"nats create without a name", sink(`type = "nats"
url = "nats://h:4222"
create_stream = true`), `sinks.archive.stream: missing: create_stream needs the stream's name`},
		{"nats stream settings without create", sink(`type = "nats"
url = "nats://h:4222"
stream = "S"
max_age = "1h"`), `sinks.archive.max_age: applies to a stream pgfeed creates: set create_stream = true, or leave it out`},
		{"nats stream settings on core", sink(`type = "nats"
url = "nats://h:4222"
jetstream = false
stream = "S"`), `sinks.archive.stream: applies to JetStream only, and jetstream = false`},
		{"nats credentials", sink(`type = "nats"
url = "nats://h:4222"
password = "p"
token = "t"
creds = "/nonexistent/x.creds"
ack_timeout = "0s"`), `sinks.archive.password: set without user
sinks.archive.creds: conflicts with sinks.archive.token: use one way to authenticate
sinks.archive.creds: stat /nonexistent/x.creds: no such file or directory
sinks.archive.ack_timeout: must be positive`},
		{"nats nkey", sink(`type = "nats"
url = "nats://h:4222"
creds = "/nonexistent/x.creds"
nkey = "/nonexistent/x.nk"`), `sinks.archive.nkey: conflicts with sinks.archive.creds: use one way to authenticate
sinks.archive.creds: stat /nonexistent/x.creds: no such file or directory
sinks.archive.nkey: stat /nonexistent/x.nk: no such file or directory`},
		{"nats tls files", sink(`type = "nats"
url = "tls://h:4222"
[sinks.archive.tls]
ca = "` + notPEM + `"
cert = "c.pem"
verify = true`), `sinks.archive.tls.verify: unknown key (known here: ca, cert, insecure_skip_verify, key, server_name)
sinks.archive.tls.ca: reading CA file ` + notPEM + `: no PEM certificate in it
sinks.archive.tls.key: missing: a client certificate needs its key`},
		{"nats tls type", sink(`type = "nats"
url = "nats://h:4222"
tls = "yes"`), `sinks.archive.tls: expected true or a table (ca, cert, key, server_name, insecure_skip_verify), got string`},
		{"redis bad settings", sink(`type = "redis"
addr = "h"
max_len = -1
timeout = "0s"`), `sinks.archive.addr: invalid address "h" (want host:port)
sinks.archive.max_len: must not be negative
sinks.archive.timeout: must be positive`},
		{"redis stream settings on a channel", sink(`type = "redis"
addr = "h:6379"
channel = "c"
max_len = 10
idempotent = true`), `sinks.archive.max_len: applies to streams only: channels keep nothing
sinks.archive.idempotent: applies to streams only: channels keep nothing`},
		{"redis typo", sink(`type = "redis"
addr = "h:6379"
maxlen = 10`), `sinks.archive.maxlen: unknown key (did you mean max_len?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.toml), nil)
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tt.want {
				t.Errorf("got\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

// TestTLSFiles loads a CA and a client certificate written by the test.
func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgfeed test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	must(t, os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	c, err := Parse([]byte(sink(`type = "redis"
addr = "h:6379"
[sinks.archive.tls]
ca = "`+cert+`"
cert = "`+cert+`"
key = "`+keyFile+`"`)), nil)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := c.Sink("archive").Settings.(*RedisSink).TLS.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if tc.RootCAs == nil || len(tc.Certificates) != 1 {
		t.Fatalf("tls config: %+v", tc)
	}
}
