package srtest

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hamba/avro/v2"
)

// Registry is a running test registry.
type Registry struct {
	URL string
	// User and Password, when User is set before the first request,
	// are the basic auth every request must carry.
	User, Password string
	// Cert is the server's certificate, on https:// (NewTLS).
	Cert *x509.Certificate

	mu       sync.Mutex
	schemas  []string            // by id-1
	subjects map[string][]int    // subject → ids of its versions, oldest first
	compat   map[string]string   // subject → level
	posts    map[string]int      // subject → registrations asked for
	reqs     int                 // every request
	byText   map[string]int      // schema text → id, shared by subjects as in Confluent's
	parsed   map[int]avro.Schema // for compatibility checks
}

// New starts a registry on http://, closed when the test ends.
func New(t testing.TB) *Registry { return start(t, false) }

// NewTLS starts a registry on https://, with a certificate of its own
// (Cert) for 127.0.0.1.
func NewTLS(t testing.TB) *Registry { return start(t, true) }

func start(t testing.TB, useTLS bool) *Registry {
	r := &Registry{subjects: map[string][]int{}, compat: map[string]string{}, posts: map[string]int{}, byText: map[string]int{}, parsed: map[int]avro.Schema{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /subjects/{subject}/versions", r.register)
	mux.HandleFunc("GET /schemas/ids/{id}", r.byID)
	mux.HandleFunc("PUT /config/{subject}", r.setConfig)
	mux.HandleFunc("GET /config/{subject}", r.getConfig)
	mux.HandleFunc("GET /subjects/{subject}/versions", r.versions)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.reqs++
		user, pass := r.User, r.Password
		r.mu.Unlock()
		if user != "" {
			if u, p, ok := req.BasicAuth(); !ok || u != user || p != pass {
				fail(w, http.StatusUnauthorized, 40101, "Unauthorized")
				return
			}
		}
		mux.ServeHTTP(w, req)
	}))
	if useTLS {
		srv.StartTLS()
		r.Cert = srv.Certificate()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func fail(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error_code": code, "message": msg})
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	_ = json.NewEncoder(w).Encode(v)
}

func (r *Registry) register(w http.ResponseWriter, req *http.Request) {
	subject := req.PathValue("subject")
	var body struct {
		Schema     string `json:"schema"`
		SchemaType string `json:"schemaType"`
	}
	if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
		fail(w, http.StatusUnprocessableEntity, 42201, "Invalid schema: "+err.Error())
		return
	}
	if body.SchemaType != "" && body.SchemaType != "AVRO" {
		fail(w, http.StatusUnprocessableEntity, 42201, "unsupported schema type "+body.SchemaType)
		return
	}
	s, err := avro.ParseWithCache(body.Schema, "", &avro.SchemaCache{})
	if err != nil {
		fail(w, http.StatusUnprocessableEntity, 42201, "Invalid schema: "+err.Error())
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.posts[subject]++
	id, known := r.byText[body.Schema]
	for _, v := range r.subjects[subject] {
		if known && v == id {
			reply(w, map[string]int{"id": id})
			return
		}
	}
	if vs := r.subjects[subject]; len(vs) > 0 && strings.HasPrefix(r.compatOf(subject), "BACKWARD") {
		// BACKWARD: the new schema reads what the latest wrote.
		latest := r.parsed[vs[len(vs)-1]]
		if err := avro.NewSchemaCompatibility().Compatible(s, latest); err != nil {
			fail(w, http.StatusConflict, 409, fmt.Sprintf("Schema being registered is incompatible with an earlier schema for subject %q: %v", subject, err))
			return
		}
	}
	if !known {
		r.schemas = append(r.schemas, body.Schema)
		id = len(r.schemas)
		r.byText[body.Schema] = id
		r.parsed[id] = s
	}
	r.subjects[subject] = append(r.subjects[subject], id)
	reply(w, map[string]int{"id": id})
}

func (r *Registry) compatOf(subject string) string {
	if c, ok := r.compat[subject]; ok {
		return c
	}
	return "BACKWARD" // Confluent's global default
}

func (r *Registry) byID(w http.ResponseWriter, req *http.Request) {
	id, err := strconv.Atoi(req.PathValue("id"))
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || id < 1 || id > len(r.schemas) {
		fail(w, http.StatusNotFound, 40403, "Schema not found")
		return
	}
	reply(w, map[string]string{"schema": r.schemas[id-1]})
}

func (r *Registry) setConfig(w http.ResponseWriter, req *http.Request) {
	var body struct {
		Compatibility string `json:"compatibility"`
	}
	if err := json.NewDecoder(req.Body).Decode(&body); err != nil || body.Compatibility == "" {
		fail(w, http.StatusUnprocessableEntity, 42203, "Invalid compatibility level")
		return
	}
	r.mu.Lock()
	r.compat[req.PathValue("subject")] = body.Compatibility
	r.mu.Unlock()
	reply(w, body)
}

func (r *Registry) getConfig(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	c, ok := r.compat[req.PathValue("subject")]
	r.mu.Unlock()
	if !ok {
		fail(w, http.StatusNotFound, 40408, "Subject does not have subject-level compatibility configured")
		return
	}
	reply(w, map[string]string{"compatibilityLevel": c})
}

func (r *Registry) versions(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	vs, ok := r.subjects[req.PathValue("subject")]
	if !ok {
		fail(w, http.StatusNotFound, 40401, "Subject not found")
		return
	}
	out := make([]int, len(vs))
	for i := range vs {
		out[i] = i + 1
	}
	reply(w, out)
}

// Schema returns the text of schema id, "" when there is none.
func (r *Registry) Schema(id int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id < 1 || id > len(r.schemas) {
		return ""
	}
	return r.schemas[id-1]
}

// Versions returns the ids of subject's versions, oldest first.
func (r *Registry) Versions(subject string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.subjects[subject]...)
}

// Compatibility returns subject's level as last set, "" when never set.
func (r *Registry) Compatibility(subject string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.compat[subject]
}

// Registrations returns how many times a schema was posted to subject.
func (r *Registry) Registrations(subject string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posts[subject]
}

// SetCompatibility sets subject's level, as an operator would.
func (r *Registry) SetCompatibility(subject, level string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.compat[subject] = level
}
