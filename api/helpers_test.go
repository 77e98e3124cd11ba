package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/api/openapitest"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/relay"
	"github.com/rentalportal/portal/store"
)

// testAPI is the real API (Gin, JWT, validation, store, outbox relay to a
// real Redis) behind a real HTTP server.
type testAPI struct {
	t         testing.TB
	db        *store.DB
	url       string
	client    *http.Client
	inspector *asynq.Inspector
	relay     *relay.Relay
}

type option func(*api.Config, *api.Deps)

func newTestAPI(t testing.TB, db *store.DB, opts ...option) *testAPI {
	t.Helper()
	r := testkit.RedisDB(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rl := relay.New(db, asynq.NewClientFromRedisClient(r.Client), log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rl.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	cfg := api.Config{Env: "development", Role: "api", MaxBodyBytes: 64 << 10, DataDir: t.TempDir(),
		JWTSecret: testkit.RandomName("secret-") + "0123456789abcdef0123456789", JWTIssuer: "rentalportal",
		JWTAudience: "rentalportal-api", JWTTTL: 15 * time.Minute, BcryptCost: 4,
		Components: map[string]string{"database": string(db.Engine)}}
	deps := api.Deps{Log: log, DB: db, Relay: rl}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	srv, err := api.NewServer(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	ins := asynq.NewInspectorFromRedisClient(r.Client)
	return &testAPI{t: t, db: db, url: hs.URL, inspector: ins, relay: rl,
		client: openapitest.New(t).Client(t, &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}})}
}

// response is an HTTP answer with its body.
type response struct {
	Status int
	Body   []byte
	Header http.Header
}

// decode unmarshals the body into v.
func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// errorBody returns the body's error object.
func (r response) errorBody(t testing.TB) api.ErrorObject {
	t.Helper()
	var e api.ErrorBody
	r.decode(t, &e)
	return e.Error
}

// do sends a request; body may be nil, a string (sent as is), an
// io.Reader (sent chunked) or a value (sent as JSON); token may be "".
func (a *testAPI) do(method, path, token string, body any) response {
	a.t.Helper()
	return a.doType(method, path, token, "application/json", body)
}

func (a *testAPI) doType(method, path, token, contentType string, body any) response {
	a.t.Helper()
	r, err := a.try(method, path, token, contentType, body)
	if err != nil {
		a.t.Fatal(err)
	}
	return r
}

// try is doType that returns transport errors instead of failing the test,
// for goroutines (which must not call t.Fatal).
func (a *testAPI) try(method, path, token, contentType string, body any) (response, error) {
	return a.tryWith(method, path, token, http.Header{"Content-Type": {contentType}}, body)
}

// tryWith is try with request headers of the caller's (Content-Type, sent
// only with a body, among them).
func (a *testAPI) tryWith(method, path, token string, hdr http.Header, body any) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case io.Reader: // sent chunked: no Content-Length
		rd = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	if err != nil {
		return response{}, err
	}
	for k, v := range hdr {
		if k != "Content-Type" || rd != nil {
			req.Header[k] = v
		}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := a.client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return response{Status: res.StatusCode, Body: b, Header: res.Header}, nil
}

// expect fails the test unless r has the status.
func expect(t testing.TB, r response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
}

// account is a registered user with a token.
type account struct {
	ID, Email, Password, Token, Role string
}

// signup registers a user of the role through the API; an admin is
// registered as a renter and promoted in the store, as the CLI does.
func (a *testAPI) signup(role string) account {
	a.t.Helper()
	acc := account{Email: testkit.RandomName("user") + "@Example.com", Password: "Secret-pass-123", Role: role}
	regRole := role
	if role == api.RoleAdmin {
		regRole = api.RoleRenter
	}
	r := a.do("POST", "/api/v1/auth/register", "", map[string]string{
		"email": acc.Email, "password": acc.Password, "name": "Test " + role, "role": regRole})
	expect(a.t, r, http.StatusCreated)
	var tok api.TokenResponse
	r.decode(a.t, &tok)
	acc.ID, acc.Token = tok.User.ID, tok.AccessToken
	if role == api.RoleAdmin {
		if err := store.SetUserRole(context.Background(), a.db, acc.ID, api.RoleAdmin); err != nil {
			a.t.Fatal(err)
		}
		acc.Token = a.login(acc.Email, acc.Password)
	}
	return acc
}

func (a *testAPI) login(email, password string) string {
	a.t.Helper()
	r := a.do("POST", "/api/v1/auth/login", "", map[string]string{"email": email, "password": password})
	expect(a.t, r, http.StatusOK)
	var tok api.TokenResponse
	r.decode(a.t, &tok)
	return tok.AccessToken
}

// listing creates a listing of the owner through the API.
func (a *testAPI) listing(owner account, price int64) api.ListingView {
	a.t.Helper()
	r := a.do("POST", "/api/v1/listings", owner.Token, map[string]any{
		"title": "Mountain bike", "description": "21 gears", "price_per_day": price, "currency": "EUR"})
	expect(a.t, r, http.StatusCreated)
	var l api.ListingView
	r.decode(a.t, &l)
	return l
}

// day is today (UTC) moved by n days.
func day(n int) booking.Date { return booking.DateOf(time.Now(), time.UTC).AddDays(n) }

func bookingBody(listingID string, start, end booking.Date) map[string]string {
	return map[string]string{"listing_id": listingID, "start_date": start.String(), "end_date": end.String()}
}

// book creates a booking through the API and returns it.
func (a *testAPI) book(renter account, listingID string, start, end booking.Date) api.BookingView {
	a.t.Helper()
	r := a.do("POST", "/api/v1/bookings", renter.Token, bookingBody(listingID, start, end))
	expect(a.t, r, http.StatusCreated)
	var b api.BookingView
	r.decode(a.t, &b)
	return b
}

// count runs a count query.
func (a *testAPI) count(query string, args ...any) int {
	a.t.Helper()
	var n int
	if err := store.Get(context.Background(), a.db, &n, query, args...); err != nil {
		a.t.Fatal(err)
	}
	return n
}

// task returns the task with this ID in a queue, or nil.
func (a *testAPI) task(queue, id string) *asynq.TaskInfo {
	a.t.Helper()
	ti, err := a.inspector.GetTaskInfo(queue, id)
	if err != nil {
		return nil
	}
	return ti
}
