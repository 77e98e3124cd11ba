// Package payments is the platform's side of Stripe: PaymentIntents, refunds,
// listings for reconciliation (stripe-go v76, pinned to API version
// 2023-10-16), and the verification of webhook signatures. It imports nothing
// of ours: callers map its errors (ErrTemporary, ErrRejected, the webhook
// errors) to their own codes.
package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// APIVersion is the Stripe API version the account and this code are pinned
// to (stripe-go v76). Events rendered in another version are not applied.
const APIVersion = stripe.APIVersion

// Errors of the client. Every error a Client method returns wraps exactly one
// of them.
var (
	// ErrTemporary: Stripe was slow, down, rate limiting, or answered 5xx;
	// the same call with the same idempotency key may succeed later.
	ErrTemporary = errors.New("stripe temporarily unavailable")
	// ErrRejected: Stripe refused the request (4xx other than 429): retrying
	// the same request will fail the same way.
	ErrRejected = errors.New("stripe rejected the request")
)

// Config configures a Client.
type Config struct {
	// SecretKey is the Stripe secret key (sk_test_..., sk_live_..., rk_...).
	SecretKey string
	// APIBase overrides Stripe's API URL (stripe-mock or a test server).
	APIBase string
	// Timeout bounds each HTTP request to Stripe.
	Timeout time.Duration
	// MaxNetworkRetries is how often stripe-go itself retries a failed
	// request (with the same idempotency key); 0 leaves retries to the task.
	MaxNetworkRetries int64
}

// Client talks to the Stripe API.
type Client struct {
	api *client.API
}

// New returns a Client. It makes no request.
func New(cfg Config) (*Client, error) {
	if cfg.SecretKey == "" {
		return nil, errors.New("payments: no Stripe secret key")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	retries := cfg.MaxNetworkRetries
	bc := &stripe.BackendConfig{
		HTTPClient:        &http.Client{Timeout: cfg.Timeout},
		MaxNetworkRetries: &retries,
		// Errors reach the caller as values; stripe-go must not print them.
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	}
	if cfg.APIBase != "" {
		u := strings.TrimRight(cfg.APIBase, "/")
		bc.URL = &u
	}
	backends := &stripe.Backends{
		API:     stripe.GetBackendWithConfig(stripe.APIBackend, bc),
		Connect: stripe.GetBackendWithConfig(stripe.ConnectBackend, bc),
		Uploads: stripe.GetBackendWithConfig(stripe.UploadsBackend, bc),
	}
	return &Client{api: client.New(cfg.SecretKey, backends)}, nil
}

// Intent is what the platform keeps of a PaymentIntent.
type Intent struct {
	ID             string
	ClientSecret   string
	Status         string
	Amount         int64
	AmountReceived int64
	Currency       string
	BookingID      string
	LatestChargeID string
	Created        time.Time
	// Raw is the PaymentIntent as JSON, for a synthetic event.
	Raw json.RawMessage
}

// IntentIdempotencyKey is the idempotency key of a booking's PaymentIntent:
// the API's attempt and the payment:intent task's retries create one intent.
func IntentIdempotencyKey(bookingID string) string { return "booking-" + bookingID + "-intent" }

// RefundIdempotencyKey is the idempotency key of a booking's refund.
func RefundIdempotencyKey(bookingID string) string { return "booking-" + bookingID + "-refund" }

// CreateIntent creates the PaymentIntent of a booking (amount in minor units)
// with metadata.booking_id and an idempotency key derived from the booking.
// Errors: ErrTemporary, ErrRejected.
func (c *Client) CreateIntent(ctx context.Context, bookingID string, amount int64, currency string) (Intent, error) {
	p := &stripe.PaymentIntentParams{
		Amount:   stripe.Int64(amount),
		Currency: stripe.String(strings.ToLower(currency)),
		AutomaticPaymentMethods: &stripe.PaymentIntentAutomaticPaymentMethodsParams{
			Enabled: stripe.Bool(true),
		},
	}
	p.Context = ctx
	p.AddMetadata("booking_id", bookingID)
	p.SetIdempotencyKey(IntentIdempotencyKey(bookingID))
	pi, err := c.api.PaymentIntents.New(p)
	if err != nil {
		return Intent{}, classify("create payment intent", err)
	}
	return intentOf(pi), nil
}

// GetIntent fetches a PaymentIntent. Errors: ErrTemporary, ErrRejected (also
// for an unknown ID).
func (c *Client) GetIntent(ctx context.Context, id string) (Intent, error) {
	p := &stripe.PaymentIntentParams{}
	p.Context = ctx
	pi, err := c.api.PaymentIntents.Get(id, p)
	if err != nil {
		return Intent{}, classify("get payment intent", err)
	}
	return intentOf(pi), nil
}

// Refund is what the platform keeps of a refund.
type Refund struct {
	ID       string
	Status   string // pending, requires_action, succeeded, failed, canceled
	Amount   int64
	Currency string
}

// Refund refunds a PaymentIntent in full, with an idempotency key derived
// from the booking so a retried task refunds once. Errors: ErrTemporary,
// ErrRejected (for example: already refunded, nothing captured).
func (c *Client) Refund(ctx context.Context, paymentIntentID, bookingID string) (Refund, error) {
	p := &stripe.RefundParams{PaymentIntent: stripe.String(paymentIntentID)}
	p.Context = ctx
	p.AddMetadata("booking_id", bookingID)
	p.SetIdempotencyKey(RefundIdempotencyKey(bookingID))
	r, err := c.api.Refunds.New(p)
	if err != nil {
		return Refund{}, classify("refund", err)
	}
	return Refund{ID: r.ID, Status: string(r.Status), Amount: r.Amount, Currency: string(r.Currency)}, nil
}

// ListRecentIntents lists the PaymentIntents created since `since`, newest
// first, following every page. Errors: ErrTemporary, ErrRejected.
func (c *Client) ListRecentIntents(ctx context.Context, since time.Time) ([]Intent, error) {
	p := &stripe.PaymentIntentListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: since.Unix()}}
	p.Context = ctx
	p.Limit = stripe.Int64(100)
	it := c.api.PaymentIntents.List(p)
	var out []Intent
	for it.Next() {
		out = append(out, intentOf(it.PaymentIntent()))
	}
	if err := it.Err(); err != nil {
		return out, classify("list payment intents", err)
	}
	return out, nil
}

// ListUndeliveredEvents lists the events created since `since` that Stripe
// has not delivered successfully to every endpoint (delivery_success=false),
// following every page, each as the JSON a webhook would have carried.
// Errors: ErrTemporary, ErrRejected.
func (c *Client) ListUndeliveredEvents(ctx context.Context, since time.Time) ([][]byte, error) {
	p := &stripe.EventListParams{
		CreatedRange:    &stripe.RangeQueryParams{GreaterThanOrEqual: since.Unix()},
		DeliverySuccess: stripe.Bool(false),
	}
	p.Context = ctx
	p.Limit = stripe.Int64(100)
	it := c.api.Events.List(p)
	var out [][]byte
	for it.Next() {
		b, err := json.Marshal(it.Event())
		if err != nil {
			return out, fmt.Errorf("encode event: %w", err)
		}
		out = append(out, b)
	}
	if err := it.Err(); err != nil {
		return out, classify("list events", err)
	}
	return out, nil
}

func intentOf(pi *stripe.PaymentIntent) Intent {
	in := Intent{
		ID:             pi.ID,
		ClientSecret:   pi.ClientSecret,
		Status:         string(pi.Status),
		Amount:         pi.Amount,
		AmountReceived: pi.AmountReceived,
		Currency:       string(pi.Currency),
		BookingID:      pi.Metadata["booking_id"],
		Created:        time.Unix(pi.Created, 0).UTC(),
	}
	if pi.LatestCharge != nil {
		in.LatestChargeID = pi.LatestCharge.ID
	}
	if raw := pi.LastResponse; raw != nil && len(raw.RawJSON) > 0 {
		in.Raw = raw.RawJSON
	} else if b, err := json.Marshal(pi); err == nil {
		in.Raw = b
	}
	return in
}

// classify wraps a stripe-go error with ErrTemporary or ErrRejected.
func classify(op string, err error) error {
	var se *stripe.Error
	if errors.As(err, &se) {
		switch {
		case se.HTTPStatusCode == http.StatusTooManyRequests, se.HTTPStatusCode >= 500,
			se.HTTPStatusCode == 0, se.Type == stripe.ErrorTypeAPI:
			return fmt.Errorf("%s: %w: %s %s", op, ErrTemporary, se.Type, se.Msg)
		case se.HTTPStatusCode == http.StatusConflict && se.Type == stripe.ErrorTypeIdempotency:
			return fmt.Errorf("%s: %w: %s", op, ErrRejected, se.Msg)
		case se.HTTPStatusCode == http.StatusConflict:
			// A concurrent request with the same idempotency key is in flight.
			return fmt.Errorf("%s: %w: %s", op, ErrTemporary, se.Msg)
		}
		return fmt.Errorf("%s: %w: %s %s (%s)", op, ErrRejected, se.Type, se.Msg, se.Code)
	}
	// Network errors, timeouts, cancelled contexts.
	return fmt.Errorf("%s: %w: %v", op, ErrTemporary, err)
}
