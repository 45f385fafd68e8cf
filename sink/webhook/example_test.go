package webhook_test

import (
	"context"
	"crypto/hmac"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/pgfeed/pgfeed/sink/sinktest"
	"github.com/pgfeed/pgfeed/sink/webhook"
)

// A receiver checks the signature of each request before it trusts the
// body, and dedupes on the Idempotency-Key (or on each event's commit_lsn
// and seq).
func Example() {
	secret := []byte("shared secret")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		want := webhook.Sign(secret, r.Header.Get(webhook.HeaderTimestamp), body)
		if !hmac.Equal([]byte(r.Header.Get(webhook.HeaderSignature)), []byte(want)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		fmt.Println(r.Header.Get("Content-Type"), r.Header.Get(webhook.HeaderIdempotencyKey))
	}))
	defer srv.Close()

	s, err := webhook.New(webhook.Options{URL: srv.URL, Secret: secret, MaxBatch: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	if err := s.Write(context.Background(), sinktest.Records(0, 3)); err != nil {
		fmt.Println(err)
	}
	// Output:
	// application/json 1/0:1..1/100:1
	// application/json 1/200:1
}
