package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestStripeTriggerConfirmsABooking runs the real program on its embedded
// defaults (no Stripe key, no webhook secret): stripe-trigger signs with the
// development secret the API derived from the same DATA_DIR, the API stores
// the event, the worker confirms the booking.
func TestStripeTriggerConfirmsABooking(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := map[string]string{"DATA_DIR": dir, "HTTP_ADDR": addr, "LOG_LEVEL": "error", "SCHEDULER_ENABLED": "false"}
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"all"}, getenv, out, &syncBuffer{}) }()
	var base string
	re := regexp.MustCompile(`API:\s+(http://\S+)/api/v1`)
	for deadline := time.Now().Add(20 * time.Second); base == ""; {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("the API did not start: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	db, err := store.Open(ctx, "", filepath.Join(dir, "portal.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := store.Now()
	id := testkit.RandomName("b")
	for _, q := range []string{
		`INSERT INTO users (id, email, password_hash, name, role, created_at, updated_at) VALUES ('u1', 'u1@example.com', 'x', 'U', 'owner', ?, ?)`,
		`INSERT INTO listings (id, owner_id, title, price_per_day, currency, created_at, updated_at) VALUES ('l1', 'u1', 'Bike', 2500, 'EUR', ?, ?)`,
	} {
		if _, err := store.Exec(ctx, db, q, now, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Exec(ctx, db, `INSERT INTO bookings (id, listing_id, renter_id, owner_id, start_date, end_date, status,
		total_amount, currency, expires_at, created_at, updated_at) VALUES (?, 'l1', 'u1', 'u1', '2031-05-01', '2031-05-03',
		'pending_payment', 5000, 'EUR', ?, ?, ?)`, id, now.Add(time.Hour), now, now); err != nil {
		t.Fatal(err)
	}

	var tout syncBuffer
	if err := run(ctx, []string{"stripe-trigger", "--event", "payment_intent.succeeded", "--booking", id,
		"--url", base + "/webhooks/stripe"}, getenv, &tout, &tout); err != nil {
		t.Fatalf("stripe-trigger: %v\n%s", err, tout.String())
	}
	if s := tout.String(); !strings.Contains(s, "200 OK") || !strings.Contains(s, "amount 5000 eur") {
		t.Fatalf("trigger output: %s", s)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		b, err := store.GetBooking(ctx, db, id)
		if err != nil {
			t.Fatal(err)
		}
		if b.Status == booking.Confirmed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("booking still %s", b.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	hs, err := store.BookingHistory(ctx, db, id)
	if err != nil || len(hs) != 1 || hs[0].Source != store.SourceStripe || !strings.HasPrefix(hs[0].SourceRef, "evt_trigger_") {
		t.Fatalf("history %+v %v", hs, err)
	}
	// A wrong secret is refused by the same API.
	env["STRIPE_WEBHOOK_SECRET"] = "whsec_someone_else"
	if err := run(ctx, []string{"stripe-trigger", "--booking", id, "--url", base + "/webhooks/stripe", "--quiet"},
		getenv, &tout, &tout); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("wrong secret: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop")
	}
}
