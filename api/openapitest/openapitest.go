// Package openapitest holds code to the contract: it validates real HTTP
// responses against the OpenAPI document (api/openapi.yaml) with
// kin-openapi, so that a handler cannot drift from what clients were told.
//
// Use it in every integration or end-to-end test that speaks HTTP to the
// API:
//
//	v := openapitest.New(t)
//	client := v.Client(t, nil)          // every response is checked
//	resp, err := client.Do(req)
//
// or, with httptest.NewRecorder, v.ValidateRecorder(t, req, rec). A
// response fails the test when its route is not in the document, its status
// is not listed for the operation, or its body does not match the schema.
// An error status on a route the document lacks (404, 405) must still be in
// the one error shape. Paths outside the client contract (OutsideContract)
// are not checked.
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/rentalportal/portal/api"
)

func init() {
	// Pages (Swagger UI, the sign-in form) are documented as text/html.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.FileBodyDecoder)
	// date and date-time are checked by default; email is not.
	openapi3.DefineStringFormatValidator("email", openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForEmail))
}

// OutsideContract reports whether a path (or a Gin route template) is
// deliberately left out of the OpenAPI document: the landing page, the
// Prometheus endpoint (text format, possibly on its own listener), Asynqmon
// and its own API (a third-party UI), Swagger UI's assets, and blobs served
// from the local folder.
func OutsideContract(path string) bool {
	switch {
	case path == "/", path == "/metrics", path == "/monitoring":
		return true
	case strings.HasPrefix(path, "/monitoring/"), strings.HasPrefix(path, "/api/docs/"),
		strings.HasPrefix(path, "/blobs/"):
		return true
	}
	return false
}

var (
	docOnce sync.Once
	doc     *openapi3.T
	router  routers.Router
	docErr  error
)

// Document returns the contract, parsed and validated, with its servers
// cleared so that routes match on any host.
func Document(t testing.TB) *openapi3.T {
	t.Helper()
	load(t)
	return doc
}

func load(t testing.TB) {
	t.Helper()
	docOnce.Do(func() {
		l := openapi3.NewLoader()
		doc, docErr = l.LoadFromData(api.OpenAPIYAML())
		if docErr != nil {
			return
		}
		if docErr = doc.Validate(context.Background()); docErr != nil {
			return
		}
		doc.Servers = nil
		router, docErr = gorillamux.NewRouter(doc)
	})
	if docErr != nil {
		t.Fatalf("openapi.yaml: %v", docErr)
	}
}

// Validator checks responses against the contract.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
}

// New returns a validator of the embedded document.
func New(t testing.TB) *Validator {
	t.Helper()
	load(t)
	return &Validator{doc: doc, router: router}
}

// ValidateResponse fails the test unless resp, the answer to req, matches
// the document. The body stays readable for the caller.
func (v *Validator) ValidateResponse(t testing.TB, req *http.Request, resp *http.Response) {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	if err := v.Check(req, resp.StatusCode, resp.Header, body); err != nil {
		t.Errorf("contract: %v", err)
	}
}

// ValidateRecorder is ValidateResponse for an httptest.ResponseRecorder.
func (v *Validator) ValidateRecorder(t testing.TB, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	if err := v.Check(req, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		t.Errorf("contract: %v", err)
	}
}

// Client returns a client (a copy of base, or a new one) whose every
// response is validated; a mismatch fails the test, the response is still
// returned.
func (v *Validator) Client(t testing.TB, base *http.Client) *http.Client {
	t.Helper()
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	c.Transport = v.Transport(t, c.Transport)
	return c
}

// Transport wraps base (nil: http.DefaultTransport) with validation.
func (v *Validator) Transport(t testing.TB, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripper{t: t, v: v, base: base}
}

type roundTripper struct {
	t    testing.TB
	v    *Validator
	base http.RoundTripper
}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	rt.v.ValidateResponse(rt.t, req, resp)
	return resp, nil
}

// Check returns why a response does not match the document, or nil.
func (v *Validator) Check(req *http.Request, status int, header http.Header, body []byte) error {
	where := fmt.Sprintf("%s %s → %d", req.Method, req.URL.Path, status)
	if OutsideContract(req.URL.Path) {
		return nil
	}
	if status >= 400 {
		if err := oneErrorShape(header, body); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	route, params, err := v.router.FindRoute(req)
	if errors.Is(err, routers.ErrPathNotFound) || errors.Is(err, routers.ErrMethodNotAllowed) {
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			return v.errorSchema(where, header, body)
		}
		return fmt.Errorf("%s: the route is not in openapi.yaml (%v)", where, err)
	}
	if err != nil {
		return fmt.Errorf("%s: %v", where, err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("%s: %v\nbody: %.2000s", where, err, body)
	}
	return nil
}

// errorSchema validates an error body of a route the document does not
// have against components/schemas/Error.
func (v *Validator) errorSchema(where string, header http.Header, body []byte) error {
	mt, _, _ := mime.ParseMediaType(header.Get("Content-Type"))
	if mt != "application/json" {
		return fmt.Errorf("%s: error content type %q, want application/json", where, header.Get("Content-Type"))
	}
	var value any
	if err := json.Unmarshal(body, &value); err != nil {
		return fmt.Errorf("%s: error body is not JSON: %v", where, err)
	}
	if err := v.doc.Components.Schemas["Error"].Value.VisitJSON(value, openapi3.VisitAsResponse(), openapi3.MultiErrors()); err != nil {
		return fmt.Errorf("%s: not the error shape: %v\nbody: %s", where, err, body)
	}
	return nil
}

// oneErrorShape checks what the schema cannot: a JSON error's request_id is
// the X-Request-ID of the response.
func oneErrorShape(header http.Header, body []byte) error {
	mt, _, _ := mime.ParseMediaType(header.Get("Content-Type"))
	if mt != "application/json" {
		return nil // an HTML page (the sign-in form) answers its own way
	}
	var b struct {
		Error struct {
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return fmt.Errorf("error body is not JSON: %v", err)
	}
	if id := header.Get("X-Request-ID"); b.Error.RequestID == "" || b.Error.RequestID != id {
		return fmt.Errorf("error.request_id %q is not the X-Request-ID header %q", b.Error.RequestID, id)
	}
	return nil
}
