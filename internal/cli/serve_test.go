package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// startServe runs the pgfeed binary's serve command and waits until it listens.
func startServe(t *testing.T, env []string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitFor(t, "pgfeed serve to listen", func() bool {
		if cmd.ProcessState != nil {
			t.Fatalf("pgfeed serve exited: %s", stderr.String())
		}
		return strings.Contains(stderr.String(), "listening on")
	})
	return cmd, stderr
}

func stopServe(t *testing.T, cmd *exec.Cmd, stderr *syncBuffer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pgfeed serve after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("pgfeed serve did not stop on SIGTERM\n%s", stderr.String())
	}
}

// TestServeCommand: pgfeed serve --dsn --listen, with no config file,
// serves pgdeltastream's flow, and stops cleanly on SIGTERM, confirming
// the client's ack.
func TestServeCommand(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "servecmd")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE test_table (id serial PRIMARY KEY, name text)`, `INSERT INTO test_table (name) VALUES ('abc')`)
	addr := freeAddr(t)
	cmd, stderr := startServe(t, nil, "--dsn", dsn, "--listen", addr)

	resp, err := http.Get("http://" + addr + "/v1/init") // the README's curl
	if err != nil {
		t.Fatal(err)
	}
	var ir struct{ SlotName string }
	_ = json.NewDecoder(resp.Body).Decode(&ir)
	resp.Body.Close()
	if resp.StatusCode != 200 || ir.SlotName == "" {
		t.Fatalf("init: %d %+v", resp.StatusCode, ir)
	}
	resp, err = http.Post("http://"+addr+"/v1/snapshot/data", "application/json",
		strings.NewReader(fmt.Sprintf(`{"slotName":%q,"table":"test_table","offset":0,"limit":5,"order_by":{"column":"id","order":"ASC"}}`, ir.SlotName)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != `[{"id":1,"name":"abc"}]` {
		t.Fatalf("snapshot: %d %s", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/lr/stream?slotName="+ir.SlotName, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	pgtest.Exec(t, db, `INSERT INTO test_table (name) VALUES ('newval1')`)
	_, frame, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		NextLSN string           `json:"nextlsn"`
		Change  []map[string]any `json:"change"`
	}
	if err := json.Unmarshal(frame, &f); err != nil || len(f.Change) != 1 || f.Change[0]["kind"] != "insert" {
		t.Fatalf("frame %s: %v", frame, err)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"lsn":"`+f.NextLSN+`"}`)); err != nil {
		t.Fatal(err)
	}
	// The ack reaches the server before the close, which it reads in order.
	ws.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the client's session to end", func() bool {
		var active bool
		_ = db.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, ir.SlotName).Scan(&active)
		return !active
	})
	stopServe(t, cmd, stderr)
	var confirmed string
	if err := db.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, ir.SlotName).Scan(&confirmed); err != nil {
		t.Fatal(err)
	}
	if lsnValue(t, confirmed) < lsnValue(t, f.NextLSN) {
		t.Fatalf("slot confirmed at %s after the ack of %s", confirmed, f.NextLSN)
	}
}

func lsnValue(t *testing.T, s string) uint64 {
	t.Helper()
	var hi, lo uint64
	if _, err := fmt.Sscanf(s, "%X/%X", &hi, &lo); err != nil {
		t.Fatalf("position %q: %v", s, err)
	}
	return hi<<32 | lo
}

// TestServeTLSAndToken: with --tls-cert/--tls-key and a token from the
// environment, the API is HTTPS and WSS, and refuses requests without the
// token; with a token it may listen beyond loopback.
func TestServeTLSAndToken(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "servetls")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY)`)
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	addr := freeAddr(t)
	const token = "a-token-from-the-environment-0123"
	cmd, stderr := startServe(t, []string{"SERVE_TEST_TOKEN=" + token}, "--dsn", dsn, "--listen", addr,
		"--token", "${SERVE_TEST_TOKEN}", "--tls-cert", certFile, "--tls-key", keyFile)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	post := func(tok string) (int, string) {
		req, _ := http.NewRequest("POST", "https://"+addr+"/v1/init", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(""); code != 401 || !strings.Contains(body, "missing bearer token") {
		t.Fatalf("without a token: %d %s", code, body)
	}
	if code, body := post("wrong-token-0123456789"); code != 401 || !strings.Contains(body, "invalid bearer token") {
		t.Fatalf("with a wrong token: %d %s", code, body)
	}
	code, body := post(token)
	if code != 200 {
		t.Fatalf("with the token: %d %s", code, body)
	}
	var ir struct{ SlotName string }
	_ = json.Unmarshal([]byte(body), &ir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://"+addr+"/v1/lr/stream?slotName="+ir.SlotName, &websocket.DialOptions{
		HTTPClient: client, HTTPHeader: http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	pgtest.Exec(t, db, `INSERT INTO t VALUES (7)`)
	if _, frame, err := ws.Read(ctx); err != nil || !strings.Contains(string(frame), `"columnvalues":[7]`) {
		t.Fatalf("frame over wss: %s %v", frame, err)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	stopServe(t, cmd, stderr)
}

// TestServeConfigFile: --config's [serve] section sets the flags, a token
// from ${ENV} included, and the command line wins over the file.
func TestServeConfigFile(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "serveconfig")
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "pgfeed.toml")
	text := fmt.Sprintf("[serve]\nlisten = %q\ntoken = [\"${SERVE_CFG_TOKEN};tables=public.*\"]\nmax-rows = 7\nmax-unacked-bytes = \"1MiB\"\ndsn = %q\n", "127.0.0.1:1", dsn)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "token-from-the-config-file-0123"
	cmd, stderr := startServe(t, []string{"SERVE_CFG_TOKEN=" + token}, "--config", cfg, "--listen", addr)
	post := func(tok, body string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/snapshot/data", strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("", "{}"); code != 401 {
		t.Fatalf("without the token: %d %s", code, body)
	}
	if code, body := post(token, `{"slotName":"pgfeed_v1_x","table":"t","limit":8}`); code != 400 || !strings.Contains(body, "above 7") {
		t.Fatalf("max-rows from the file: %d %s", code, body)
	}
	stopServe(t, cmd, stderr)
}

// TestServeBadFlags: each mistake is one line naming the flag.
func TestServeBadFlags(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "serve.toml")
	if err := os.WriteFile(cfg, []byte("[serve]\nlisten = \"0.0.0.0:0\"\nmax_rows = 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args      []string
		fragments []string
	}{
		{[]string{"--listen", "0.0.0.0:12312"}, []string{"--listen 0.0.0.0:12312 is not a loopback address", "--token"}},
		{[]string{"--listen", ":12312"}, []string{"not a loopback address"}},
		{[]string{"--token", "short"}, []string{"at least 16"}},
		{[]string{"--token", "${SERVE_TEST_UNSET_VAR}"}, []string{"--token 1", "SERVE_TEST_UNSET_VAR is not set"}},
		{[]string{"--token", "0123456789abcdef0123;tables="}, []string{"names no table"}},
		{[]string{"--tls-cert", "x.pem"}, []string{"--tls-cert and --tls-key go together"}},
		{[]string{"--tls-cert", "x.pem", "--tls-key", "y.pem"}, []string{"--tls-cert/--tls-key"}},
		{[]string{"--max-frame", "lots"}, []string{"--max-frame"}},
		{[]string{"--max-rows", "0"}, []string{"--max-rows 0"}},
		{[]string{"--max-unacked-bytes", "lots"}, []string{"--max-unacked-bytes", "give a size"}},
		{[]string{"--snapshot-hold", "-1s"}, []string{"--snapshot-hold"}},
		{[]string{"--slot-prefix", "Bad-Prefix"}, []string{"slot prefix"}},
		{[]string{"--config", cfg}, []string{"[serve] max_rows: unknown setting"}},
		{[]string{"--config", filepath.Join(dir, "missing.toml")}, []string{"--config"}},
	} {
		code, _, stderr := runCLI(t, append([]string{"serve", "--dsn", "host=127.0.0.1 port=1"}, c.args...)...)
		expectOneLineError(t, code, stderr, c.fragments...)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgfeed test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
