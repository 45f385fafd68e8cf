package stream

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// corsAllowed reports whether a browser page of origin may call the API:
// its host (with the port, if any) matches one of the patterns, as
// path.Match takes them ("app.example.com", "*.example.com",
// "localhost:3000").
func corsAllowed(origin string, patterns []string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(u.Host)); ok {
			return true
		}
	}
	return false
}

// cors answers a preflight request and adds the headers that let the
// allowed origins read answers. It reports whether the request was a
// preflight, which needs nothing more.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || !corsAllowed(origin, s.opts.Origins) {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return false
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}
