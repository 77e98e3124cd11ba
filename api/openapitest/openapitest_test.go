package openapitest_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rentalportal/portal/api/openapitest"
)

// TestTheValidatorCanFail feeds it answers that break the contract.
func TestTheValidatorCanFail(t *testing.T) {
	t.Parallel()
	v := openapitest.New(t)
	jsonHdr := func(id string) http.Header {
		h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
		if id != "" {
			h.Set("X-Request-ID", id)
		}
		return h
	}
	const errBody = `{"error":{"code":"unauthorized","message":"missing bearer token","request_id":"r1"}}`
	cases := []struct {
		name, method, path string
		status             int
		hdr                http.Header
		body, wantErr      string // wantErr "" means valid
	}{
		{"valid liveness", "GET", "/health/liveness", 200, jsonHdr(""), `{"status":"alive"}`, ""},
		{"wrong enum", "GET", "/health/liveness", 200, jsonHdr(""), `{"status":"dead"}`, "doesn't match"},
		{"extra field", "GET", "/health/liveness", 200, jsonHdr(""), `{"status":"alive","x":1}`, "doesn't match"},
		{"undocumented status", "GET", "/health/liveness", 418, jsonHdr("r1"), strings.Replace(errBody, "unauthorized", "invalid", 1), "status is not supported"},
		{"501 is not in the contract", "GET", "/api/v1/users/me", 501, jsonHdr("r1"), `{"error":{"code":"not_implemented","message":"x","request_id":"r1"}}`, "not_implemented"},
		{"valid user", "GET", "/api/v1/users/me", 200, jsonHdr(""), `{"id":"u1","email":"a@b.c","name":"A","role":"owner","created_at":"2026-01-01T00:00:00Z"}`, ""},
		{"time not RFC 3339", "GET", "/api/v1/users/me", 200, jsonHdr(""), `{"id":"u1","email":"a@b.c","name":"A","role":"owner","created_at":"yesterday"}`, "date-time"},
		{"not an email", "GET", "/api/v1/users/me", 200, jsonHdr(""), `{"id":"u1","email":"nope","name":"A","role":"owner","created_at":"2026-01-01T00:00:00Z"}`, "email"},
		{"money as a string", "GET", "/api/v1/listings/x", 200, jsonHdr(""), `{"id":"l","owner_id":"u","title":"t","description":"","price_per_day":"45.00","currency":"EUR","active":true,"photos":[],"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}`, "price_per_day"},
		{"valid 401", "GET", "/api/v1/users/me", 401, jsonHdr("r1"), errBody, ""},
		{"request id differs", "GET", "/api/v1/users/me", 401, jsonHdr("r2"), errBody, "X-Request-ID"},
		{"error not in the shape", "GET", "/api/v1/users/me", 401, jsonHdr("r1"), `{"error":"nope","request_id":"r1"}`, ""},
		{"route not documented", "GET", "/api/v1/secret", 200, jsonHdr(""), `{}`, "not in openapi.yaml"},
		{"404 of an unknown route", "GET", "/api/v1/secret", 404, jsonHdr("r1"), strings.Replace(errBody, "unauthorized", "not_found", 1), ""},
		{"404 not in the shape", "GET", "/api/v1/secret", 404, http.Header{"Content-Type": {"text/plain"}}, "404 page not found", "content type"},
		{"405 of a known path", "PUT", "/api/v1/listings", 405, jsonHdr("r1"), strings.Replace(errBody, "unauthorized", "method_not_allowed", 1), ""},
		{"html page", "GET", "/api/docs", 200, http.Header{"Content-Type": {"text/html; charset=utf-8"}}, "<!doctype html>", ""},
		{"outside the contract", "GET", "/metrics", 200, http.Header{"Content-Type": {"text/plain"}}, "x 1", ""},
		{"wrong content type", "GET", "/health/liveness", 200, http.Header{"Content-Type": {"text/plain"}}, `{"status":"alive"}`, "Content-Type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, "http://example.com"+c.path, nil)
			err := v.Check(req, c.status, c.hdr, []byte(c.body))
			switch {
			case c.name == "error not in the shape":
				if err == nil {
					t.Fatal("a malformed error body passed")
				}
			case c.wantErr == "" && err != nil:
				t.Fatalf("valid answer refused: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("err = %v, want one mentioning %q", err, c.wantErr)
			}
		})
	}
}
