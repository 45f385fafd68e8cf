package stream

import (
	"encoding/json"
	"net/http"

	"github.com/pgfeed/pgfeed/internal/wsproto"
)

// apiError is a failure to report to the client: an HTTP status (for the
// HTTP endpoints) and one line saying what is wrong and what to do.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, msg string) *apiError { return &apiError{status: status, msg: msg} }

// writeJSON writes v with status. Encoding errors cannot happen for the
// types written here.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers {"error": msg}, the one error shape of the API (HTTP
// bodies and WebSocket error frames alike).
func writeError(w http.ResponseWriter, err *apiError) {
	writeJSON(w, err.status, errorBody{Error: err.msg})
}

type errorBody = wsproto.ErrorBody
