package stream_test

import (
	"log"
	"net/http"

	"github.com/pgfeed/pgfeed/server/stream"
)

// A Server is an http.Handler: mount it on any server. pgfeed serve adds
// bounded connections, timeouts and TLS (server.NewHTTPServer).
func ExampleNew() {
	srv, err := stream.New(stream.Options{
		DSN:    "postgres://app@localhost/app",
		Tables: []string{"public.*"},
		Tokens: []stream.Token{{Secret: "a-long-random-secret-0123456789", Tables: []string{"public.orders"}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	http.Handle("/v1/", srv)
	http.Handle("/v2/", srv)
	// http.ListenAndServe("127.0.0.1:12312", nil)
}
