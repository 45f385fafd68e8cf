package webhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/sink/sinktest"
)

// certFiles makes a certificate signed by ca (self-signed when ca is nil)
// and writes it and its key as PEM files.
func certFiles(t *testing.T, dir, name string, ca *tls.Certificate, server bool) (tls.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	} else if ca != nil {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	parent, signer := tmpl, any(key)
	if ca == nil {
		tmpl.IsCA = true
	} else {
		parent, signer = ca.Leaf, ca.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certFile, keyFile
}

// An https endpoint that requires a client certificate: the sink trusts
// the server through ca_file and presents its own certificate; without
// the CA, or without the certificate, no request is accepted.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caFile, _ := certFiles(t, dir, "ca", nil, false)
	serverCert, _, _ := certFiles(t, dir, "server", &ca, true)
	_, clientFile, clientKey := certFiles(t, dir, "client", &ca, false)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Leaf)

	var accepted atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "client" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		accepted.Add(1)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	srv.StartTLS()
	defer srv.Close()

	write := func(o TLSOptions) error {
		s, err := New(Options{URL: srv.URL, TLS: o, Retries: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return s.Write(context.Background(), sinktest.Records(0, 3))
	}
	if err := write(TLSOptions{CAFile: caFile, CertFile: clientFile, KeyFile: clientKey}); err != nil {
		t.Fatalf("Write with CA and client certificate: %v", err)
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("%d requests accepted, want 1", n)
	}
	err := write(TLSOptions{CertFile: clientFile, KeyFile: clientKey})
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); !ok {
		t.Fatalf("Write without the CA = %v; want a certificate verification error", err)
	}
	if err := write(TLSOptions{CAFile: caFile}); err == nil {
		t.Fatal("Write without a client certificate succeeded")
	}
	if err := write(TLSOptions{InsecureSkipVerify: true, CertFile: clientFile, KeyFile: clientKey}); err != nil {
		t.Fatalf("Write with insecure_skip_verify: %v", err)
	}
	if n := accepted.Load(); n != 2 {
		t.Fatalf("%d requests accepted, want 2", n)
	}
}
