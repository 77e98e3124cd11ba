package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/rentalportal/portal/api/openapitest"
	"github.com/rentalportal/portal/internal/testkit"
)

// Client speaks JSON to a running platform, as an API client does.
type Client struct {
	t     testing.TB
	Base  string
	Token string
}

// Do sends a JSON request and decodes the JSON answer into out (if non-nil).
func (c *Client) Do(method, path string, body any, out any) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.Base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	// Every answer is held to the contract (api/openapi.yaml).
	resp, err := openapitest.New(c.t).Client(c.t, &http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// Register signs a new user up and returns a client logged in as them.
func Register(t testing.TB, base, role string) (*Client, string) {
	t.Helper()
	c := &Client{t: t, Base: base}
	var out struct {
		AccessToken string `json:"access_token"`
		User        struct {
			ID string `json:"id"`
		} `json:"user"`
	}
	email := testkit.RandomName("user") + "@example.com"
	if code := c.Do("POST", "/api/v1/auth/register", map[string]string{"email": email,
		"password": "correct-Horse-battery-9", "name": "Test " + role, "role": role}, &out); code != 201 {
		t.Fatalf("register %s: %d", role, code)
	}
	c.Token = out.AccessToken
	return c, out.User.ID
}

// Booking is the part of a booking the tests read.
type Booking struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Payment *struct {
		PaymentIntentID string `json:"payment_intent_id"`
		ClientSecret    string `json:"client_secret"`
		Status          string `json:"status"`
	} `json:"payment"`
	History []struct {
		From, To, Cause, Source string
		SourceRef               string `json:"source_ref"`
	} `json:"history"`
	TotalAmount int64 `json:"total_amount"`
}

// ListingAndBooking creates an owner's listing and a renter's booking of it.
func ListingAndBooking(t testing.TB, base string, startInDays, nights int) (owner, renter *Client, b Booking) {
	t.Helper()
	owner, _ = Register(t, base, "owner")
	renter, _ = Register(t, base, "renter")
	var l struct {
		ID string `json:"id"`
	}
	if code := owner.Do("POST", "/api/v1/listings", map[string]any{"title": "Cargo bike", "description": "A bike",
		"price_per_day": 2500, "currency": "EUR"}, &l); code != 201 {
		t.Fatalf("create listing: %d", code)
	}
	start := time.Now().UTC().AddDate(0, 0, startInDays)
	if code := renter.Do("POST", "/api/v1/bookings", map[string]any{"listing_id": l.ID,
		"start_date": start.Format("2006-01-02"), "end_date": start.AddDate(0, 0, nights).Format("2006-01-02")}, &b); code != 201 {
		t.Fatalf("create booking: %d %+v", code, b)
	}
	return owner, renter, b
}

// WaitBooking polls the booking until its status is want.
func WaitBooking(t testing.TB, c *Client, id, want string, timeout time.Duration) Booking {
	t.Helper()
	var b Booking
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if code := c.Do("GET", "/api/v1/bookings/"+id, nil, &b); code == 200 && b.Status == want {
			return b
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("booking %s is %q, not %q after %s", id, b.Status, want, timeout)
	return b
}
