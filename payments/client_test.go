package payments_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/payments"
)

// stripeMock returns a client of the session's stripe-mock (request shapes
// are checked against Stripe's OpenAPI; it keeps no state).
func stripeMock(t *testing.T) *payments.Client {
	t.Helper()
	c, err := payments.New(payments.Config{SecretKey: "sk_test_123", APIBase: testkit.StripeAPIBase(t), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientAgainstStripeMock(t *testing.T) {
	t.Parallel()
	c := stripeMock(t)
	ctx := context.Background()

	in, err := c.CreateIntent(ctx, "b_123", 4200, "EUR")
	if err != nil {
		t.Fatalf("CreateIntent: %v", err)
	}
	if in.ID == "" || in.ClientSecret == "" || in.Status == "" {
		t.Fatalf("intent = %+v", in)
	}
	got, err := c.GetIntent(ctx, in.ID)
	if err != nil || got.ID == "" {
		t.Fatalf("GetIntent: %+v %v", got, err)
	}
	r, err := c.Refund(ctx, in.ID, "b_123")
	if err != nil || r.ID == "" || r.Status == "" {
		t.Fatalf("Refund: %+v %v", r, err)
	}
	list, err := c.ListRecentIntents(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || len(list) == 0 {
		t.Fatalf("ListRecentIntents: %d %v", len(list), err)
	}
	evs, err := c.ListUndeliveredEvents(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || len(evs) == 0 {
		t.Fatalf("ListUndeliveredEvents: %d %v", len(evs), err)
	}
	if _, err := payments.ParseEvent(evs[0]); err != nil {
		t.Fatalf("listed event does not parse: %v", err)
	}
}

// TestClientRequestShapes checks what the client sends: the idempotency key,
// metadata, pagination and the delivery filter.
func TestClientRequestShapes(t *testing.T) {
	t.Parallel()
	type seen struct{ path, query, idem, form string }
	reqs := make(chan seen, 16)
	page := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		reqs <- seen{r.URL.Path, r.URL.RawQuery, r.Header.Get("Idempotency-Key"), r.PostForm.Encode()}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/v1/payment_intents" && r.Method == http.MethodPost:
			w.Write([]byte(`{"id":"pi_1","object":"payment_intent","client_secret":"pi_1_secret_x","status":"requires_payment_method","amount":100,"currency":"eur","metadata":{"booking_id":"b_1"}}`))
		case r.URL.Path == "/v1/payment_intents":
			page++
			if page == 1 {
				w.Write([]byte(`{"object":"list","has_more":true,"url":"/v1/payment_intents","data":[{"id":"pi_a","object":"payment_intent","status":"succeeded"}]}`))
			} else {
				w.Write([]byte(`{"object":"list","has_more":false,"url":"/v1/payment_intents","data":[{"id":"pi_b","object":"payment_intent","status":"processing"}]}`))
			}
		case r.URL.Path == "/v1/refunds":
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":{"type":"invalid_request_error","code":"charge_already_refunded","message":"already refunded"}}`))
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"type":"api_error","message":"down"}}`))
		}
	}))
	defer srv.Close()
	c, err := payments.New(payments.Config{SecretKey: "sk_test_x", APIBase: srv.URL, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.CreateIntent(ctx, "b_1", 100, "EUR"); err != nil {
		t.Fatal(err)
	}
	r := <-reqs
	if r.idem != "booking-b_1-intent" || r.form != "amount=100&automatic_payment_methods%5Benabled%5D=true&currency=eur&metadata%5Bbooking_id%5D=b_1" {
		t.Fatalf("create intent request = %+v", r)
	}
	list, err := c.ListRecentIntents(ctx, time.Unix(1_700_000_000, 0))
	if err != nil || len(list) != 2 || list[1].ID != "pi_b" {
		t.Fatalf("list = %+v, %v", list, err)
	}
	r1, r2 := <-reqs, <-reqs
	if !strings.Contains(r1.query, "created[gte]=1700000000") || !strings.Contains(r1.query, "limit=100") {
		t.Fatalf("first page query %q", r1.query)
	}
	if r2.query == r1.query {
		t.Fatalf("second page did not paginate: %q", r2.query)
	}
	if _, err := c.Refund(ctx, "pi_1", "b_1"); !errors.Is(err, payments.ErrRejected) {
		t.Fatalf("refund error %v, want ErrRejected", err)
	}
	if r := <-reqs; r.idem != "booking-b_1-refund" {
		t.Fatalf("refund idempotency key %q", r.idem)
	}
	if _, err := c.GetIntent(ctx, "pi_down"); !errors.Is(err, payments.ErrTemporary) {
		t.Fatalf("5xx error %v, want ErrTemporary", err)
	}
	<-reqs
	if _, err := c.ListUndeliveredEvents(ctx, time.Unix(1_700_000_000, 0)); !errors.Is(err, payments.ErrTemporary) {
		t.Fatalf("events error %v", err)
	}
	if r := <-reqs; r.path != "/v1/events" || !strings.Contains(r.query, "delivery_success=false") {
		t.Fatalf("events request %+v", r)
	}
}
