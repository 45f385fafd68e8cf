// Package server is pgfeed's HTTP admin API: liveness (/health), readiness
// and state (/status, /stats) and Prometheus metrics (/metrics), all read
// from a pipeline's Status snapshot at request time. It holds no state of
// its own, so it can be mounted on any http.Server the caller owns;
// NewHTTPServer is one that bounds its connections and timeouts.
package server
