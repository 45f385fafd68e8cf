package nats

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/internal/brokertest"
	"github.com/pgfeed/pgfeed/sink/sinktest"
)

// writeFile writes body to name in a temporary folder and returns its path.
func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Each way to authenticate, against a nats-server that asks for it:
// with the right credentials the sink publishes to JetStream; with wrong
// ones Open fails with one line that says authentication failed.
func TestAuthMethods(t *testing.T) {
	userSrv := brokertest.StartNATS(t, "--user", "pgfeed", "--pass", "secret")
	tokenSrv := brokertest.StartNATS(t, "--auth", "s3cret")
	nkey := brokertest.StartNATSNKey(t)
	operator := brokertest.StartNATSOperator(t)
	for _, tc := range []struct {
		name         string
		srv          *brokertest.Server
		right, wrong func(*Options)
	}{
		{"user and password", userSrv,
			func(o *Options) { o.User, o.Password = "pgfeed", "secret" },
			func(o *Options) { o.User, o.Password = "pgfeed", "wrong" }},
		{"token", tokenSrv, func(o *Options) { o.Token = "s3cret" }, func(o *Options) { o.Token = "wrong" }},
		{"nkey", nkey.Server, func(o *Options) { o.NKeySeedFile = nkey.File }, func(o *Options) { o.NKeySeedFile = nkey.WrongFile }},
		{"creds", operator.Server, func(o *Options) { o.CredsFile = operator.File }, func(o *Options) { o.CredsFile = operator.WrongFile }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, tc.srv.URL(), tc.right)
			// Write returns once JetStream acked every message.
			if err := s.Write(context.Background(), sinktest.Records(0, 3)); err != nil {
				t.Fatal(err)
			}
			s.Close()
			for _, bad := range []func(*Options){tc.wrong, func(*Options) {}} {
				opts := Options{URL: tc.srv.URL(), Stream: testStream, Subjects: []string{sinktest.Topic}}
				bad(&opts)
				s, err := Open(context.Background(), opts)
				if err == nil {
					s.Close()
					t.Fatal("Open succeeded with wrong or no credentials")
				}
				if !strings.Contains(err.Error(), "authentication failed") || strings.Contains(err.Error(), "\n") {
					t.Fatalf("Open: %v; want one line saying authentication failed", err)
				}
			}
		})
	}
	t.Run("nkey file without a seed", func(t *testing.T) {
		_, err := Open(context.Background(), Options{URL: nkey.URL(), NKeySeedFile: writeFile(t, "bad.nk", "not a seed\n")})
		if err == nil || !strings.Contains(err.Error(), "NKey seed file") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("Open: %v; want one line naming the NKey seed file", err)
		}
	})
}
