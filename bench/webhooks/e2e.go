package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
	"github.com/rentalportal/portal/worker"
)

// endToEnd measures webhook → booking confirmed: payment_intent.succeeded
// events for fresh pending bookings are POSTed at a fixed rate while a
// worker runs; the latency of each is the booking's history row (written
// in the transaction that confirms it) minus the time the POST started.
func endToEnd(ctx context.Context, db *store.DB, rc redis.UniversalClient, url, secret string, rate float64, n int, label string) error {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := rc.FlushDB(ctx).Err(); err != nil {
		return err
	}
	now := store.Now()
	owner := fmt.Sprintf("u_%s_%d", label, now.UnixNano())
	listing := "l_" + owner
	if _, err := store.Exec(ctx, db, `INSERT INTO users (id, email, password_hash, name, role, created_at, updated_at)
		VALUES (?, ?, 'x', 'Bench', 'owner', ?, ?)`, owner, owner+"@example.com", now, now); err != nil {
		return err
	}
	if _, err := store.Exec(ctx, db, `INSERT INTO listings (id, owner_id, title, price_per_day, currency, created_at, updated_at)
		VALUES (?, ?, 'Bench', 1000, 'EUR', ?, ?)`, listing, owner, now, now); err != nil {
		return err
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s_b%d", owner, i)
		day := time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 2*i)
		if _, err := store.Exec(ctx, db, `INSERT INTO bookings (id, listing_id, renter_id, owner_id, start_date, end_date, status,
			total_amount, currency, expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending_payment', 1000, 'EUR', ?, ?, ?)`,
			ids[i], listing, owner, owner, day.Format("2006-01-02"), day.AddDate(0, 0, 1).Format("2006-01-02"), now.Add(time.Hour), now, now); err != nil {
			return err
		}
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	w := worker.New(worker.Config{Concurrency: 20, TaskCheckInterval: 10 * time.Millisecond, ShutdownTimeout: 5 * time.Second},
		worker.Deps{Log: log, DB: db, Relay: nopRelay{}})
	var wwg sync.WaitGroup
	wwg.Add(1)
	go func() { defer wwg.Done(); _ = w.Run(wctx, rc) }()
	time.Sleep(500 * time.Millisecond) // the worker is up

	sent := make([]time.Time, n)
	hc := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))))
		body := []byte(fmt.Sprintf(`{"id":"evt_%s","object":"event","type":"payment_intent.succeeded","api_version":%q,"created":%d,`+
			`"livemode":false,"data":{"object":{"id":"pi_%s","object":"payment_intent","status":"succeeded","amount":1000,`+
			`"amount_received":1000,"currency":"eur","metadata":{"booking_id":%q}}}}`, ids[i], payments.APIVersion, time.Now().Unix(), ids[i], ids[i]))
		wg.Add(1)
		sent[i] = time.Now()
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
			req.Header.Set("Stripe-Signature", payments.Sign(body, secret, time.Now()))
			if resp, err := hc.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	var lat, toStore, toApply []time.Duration
	for deadline := time.Now().Add(30 * time.Second); ; {
		var rows []struct {
			ID       string    `db:"booking_id"`
			At       time.Time `db:"created_at"`
			Received time.Time `db:"received_at"`
		}
		if err := store.Select(ctx, db, &rows, `SELECT h.booking_id, h.created_at, e.received_at FROM booking_history h
			JOIN stripe_events e ON e.id = 'evt_' || h.booking_id WHERE h.booking_id LIKE ?`, owner+"_%"); err != nil {
			return err
		}
		if len(rows) == n || time.Now().After(deadline) {
			idx := map[string]int{}
			for i, id := range ids {
				idx[id] = i
			}
			for _, r := range rows {
				lat = append(lat, r.At.Sub(sent[idx[r.ID]]))
				toStore = append(toStore, r.Received.Sub(sent[idx[r.ID]]))
				toApply = append(toApply, r.At.Sub(r.Received))
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	wwg.Wait()
	if len(lat) == 0 {
		return fmt.Errorf("%s: no booking confirmed", label)
	}
	for _, l := range [][]time.Duration{lat, toStore, toApply} {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	}
	fmt.Printf("end-to-end webhook → confirmed (%s, %.1f events/s): %d/%d confirmed  p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
		label, rate, len(lat), n, ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), ms(lat[len(lat)-1]))
	fmt.Printf("  of which POST → handler: p50 %.2f ms p99 %.2f ms; handler → confirmed (store, relay, pickup, apply): p50 %.2f ms p99 %.2f ms\n",
		ms(toStore[len(toStore)/2]), ms(toStore[len(toStore)*99/100]), ms(toApply[len(toApply)/2]), ms(toApply[len(toApply)*99/100]))
	return nil
}

// nopRelay: the e2e events need no task relayed by the worker.
type nopRelay struct{}

func (nopRelay) Publish(context.Context, ...tasks.Message)                {}
func (nopRelay) Pending(context.Context, time.Duration, int) (int, error) { return 0, nil }
