package web

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/rentalportal/portal"
)

// Error codes of the console's JSON answers: the platform's codes, in the
// API's one error shape.
const (
	codeInvalid      = portal.EINVALID
	codeUnauthorized = portal.EUNAUTHORIZED
	codeForbidden    = portal.EFORBIDDEN
	codeNotFound     = portal.ENOTFOUND
	codeRateLimited  = portal.ERATELIMITED
	codeUnavailable  = portal.EUNAVAILABLE
	codeMethod       = "method_not_allowed"
)

// HeaderRequestID carries the request ID; inside the API server its
// middleware has set it on the response already.
const HeaderRequestID = "X-Request-ID"

type fieldError = portal.FieldError

type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Code      string       `json:"code"`
	Message   string       `json:"message"`
	Details   []fieldError `json:"details,omitempty"`
	RequestID string       `json:"request_id"`
}

// Content security policies: pages load only their own scripts and styles
// (Asynqmon's index has inline bootstraps); JSON allows nothing.
const (
	cspHTML = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; " +
		"img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
	cspJSON = "default-src 'none'; frame-ancestors 'none'"
)

func securityHeaders(w http.ResponseWriter, csp string) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	securityHeaders(w, cspJSON)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in the platform's one error shape.
func writeError(w http.ResponseWriter, status int, code, msg string, details ...fieldError) {
	writeJSON(w, status, errorBody{Error: errorObject{Code: code, Message: msg, Details: details,
		RequestID: w.Header().Get(HeaderRequestID)}})
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	secs := int((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
