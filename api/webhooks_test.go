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
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/store"
)

const secret = "whsec_test_secret"

func webhookServer(t testing.TB, db *store.DB) *api.Server {
	t.Helper()
	in := store.NewInbox(db, store.InboxOptions{})
	t.Cleanup(in.Close)
	srv, err := api.NewServer(api.Config{Env: "development", WebhookMaxBytes: 4096, JWTSecret: strings.Repeat("x", 32)},
		api.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DB: db,
			Webhooks: payments.NewVerifier([]string{"whsec_previous", secret}, 300*time.Second, false), Inbox: in})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func stripeEvent(id, version string) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"object":"event","type":"payment_intent.succeeded","api_version":%q,"created":%d,
"livemode":false,"data":{"object":{"id":"pi_1","object":"payment_intent","status":"succeeded","metadata":{"booking_id":"b1"}}}}`,
		id, version, time.Now().Unix()))
}

func signed(payload []byte, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: at}).Header
}

func post(h http.Handler, payload []byte, sig string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("Stripe-Signature", sig)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func rows(t testing.TB, db *store.DB) (events, outbox int) {
	t.Helper()
	ctx := context.Background()
	if err := store.Get(ctx, db, &events, `SELECT count(*) FROM stripe_events`); err != nil {
		t.Fatal(err)
	}
	if err := store.Get(ctx, db, &outbox, `SELECT count(*) FROM outbox`); err != nil {
		t.Fatal(err)
	}
	return events, outbox
}

func TestStripeWebhookStoresOnceAndAnswersAfterCommit(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		srv := webhookServer(t, db)
		p := stripeEvent("evt_ok", payments.APIVersion)
		rec := post(srv, p, signed(p, secret, time.Now()))
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d %s", rec.Code, rec.Body)
		}
		var ack api.WebhookAck
		if err := json.Unmarshal(rec.Body.Bytes(), &ack); err != nil || !ack.Received || ack.Duplicate || ack.EventID != "evt_ok" {
			t.Fatalf("ack %s", rec.Body)
		}
		ev, err := store.GetStripeEvent(context.Background(), db, "evt_ok")
		if err != nil || ev.Payload != string(p) || ev.Type != "payment_intent.succeeded" || ev.ObjectID != "pi_1" ||
			ev.APIVersion != payments.APIVersion || ev.ProcessedAt != nil {
			t.Fatalf("stored %+v %v", ev, err)
		}
		// A duplicate delivery (signed by the previous secret, as during a
		// rotation) answers 200 and changes nothing.
		rec = post(srv, p, signed(p, "whsec_previous", time.Now()))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"duplicate":true`) {
			t.Fatalf("duplicate: %d %s", rec.Code, rec.Body)
		}
		if e, o := rows(t, db); e != 1 || o != 1 {
			t.Fatalf("rows after duplicate: events %d outbox %d", e, o)
		}
		// Another API version: stored for operators, marked, never enqueued.
		old := stripeEvent("evt_old_version", "2020-08-27")
		if rec := post(srv, old, signed(old, secret, time.Now())); rec.Code != http.StatusOK {
			t.Fatalf("other version: %d %s", rec.Code, rec.Body)
		}
		ev, err = store.GetStripeEvent(context.Background(), db, "evt_old_version")
		if err != nil || ev.Outcome != store.OutcomeUnsupportedAPIVersion || ev.ProcessedAt == nil {
			t.Fatalf("other version stored %+v %v", ev, err)
		}
		if e, o := rows(t, db); e != 2 || o != 1 {
			t.Fatalf("rows: events %d outbox %d", e, o)
		}
	})
}

func TestStripeWebhookRejections(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		srv := webhookServer(t, db)
		now := time.Now()
		good := stripeEvent("evt_r", payments.APIVersion)
		live := bytes.Replace(good, []byte(`"livemode":false`), []byte(`"livemode":true`), 1)
		big := append(bytes.Repeat([]byte(" "), 5000), good...)
		cases := []struct {
			name    string
			payload []byte
			sig     string
			status  int
		}{
			{"no signature", good, "", 400},
			{"bad signature", good, "t=" + fmt.Sprint(now.Unix()) + ",v1=" + strings.Repeat("ab", 32), 400},
			{"wrong secret", good, signed(good, "whsec_wrong", now), 400},
			{"stale timestamp", good, signed(good, secret, now.Add(-6*time.Minute)), 400},
			{"future timestamp", good, signed(good, secret, now.Add(6*time.Minute)), 400},
			{"tampered body", stripeEvent("evt_other", payments.APIVersion), signed(good, secret, now), 400},
			{"malformed json", []byte(`{"id":`), signed([]byte(`{"id":`), secret, now), 400},
			{"not an event", []byte(`{"id":"x","object":"charge"}`), signed([]byte(`{"id":"x","object":"charge"}`), secret, now), 400},
			{"livemode mismatch", live, signed(live, secret, now), 400},
			{"oversized", big, signed(big, secret, now), 413},
		}
		for _, c := range cases {
			rec := post(srv, c.payload, c.sig)
			if rec.Code != c.status {
				t.Errorf("%s: status %d, want %d (%s)", c.name, rec.Code, c.status, rec.Body)
				continue
			}
			var body api.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code == "" || body.Error.RequestID == "" {
				t.Errorf("%s: error body %s", c.name, rec.Body)
			}
		}
		if e, o := rows(t, db); e != 0 || o != 0 {
			t.Fatalf("rejected deliveries stored something: events %d outbox %d", e, o)
		}
	})
}

// TestStripeWebhookDatabaseDown: an event that cannot be committed is
// answered 503 with Retry-After, so Stripe delivers it again.
func TestStripeWebhookDatabaseDown(t *testing.T) {
	t.Parallel()
	testkit.PostgresURL(t)
	raw, err := sqlx.Open("pgx", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	srv := webhookServer(t, &store.DB{DB: raw, Engine: store.Postgres})
	p := stripeEvent("evt_down", payments.APIVersion)
	rec := post(srv, p, signed(p, secret, time.Now()))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d retry-after %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if !strings.Contains(rec.Body.String(), `"code":"unavailable"`) {
		t.Fatalf("body %s", rec.Body)
	}
}

// TestStripeWebhookNotConfigured: without a secret nothing is accepted, and
// Stripe is told to come back (503) rather than to give up.
func TestStripeWebhookNotConfigured(t *testing.T) {
	t.Parallel()
	db := testkit.SQLite(t)
	srv, err := api.NewServer(api.Config{Env: "production"}, api.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DB: db,
		Webhooks: payments.NewVerifier(nil, 0, false), Inbox: store.NewInbox(db, store.InboxOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	p := stripeEvent("evt_nc", payments.APIVersion)
	if rec := post(srv, p, signed(p, secret, time.Now())); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d", rec.Code)
	}
}

// FuzzStripeWebhook throws arbitrary bodies and headers at the handler,
// signed or not: it must answer 200, 400 or 413, never fail otherwise, and
// store an event exactly when it answers 200 for a new ID.
func FuzzStripeWebhook(f *testing.F) {
	db := testkit.SQLite(f)
	srv := webhookServer(f, db)
	f.Add(stripeEvent("evt_seed", payments.APIVersion), "", true)
	f.Add(stripeEvent("evt_seed2", "2019-01-01"), "", true)
	f.Add([]byte(`{"id":"e","object":"event","type":"t","created":1,"data":{"object":{}}}`), "", true)
	f.Add([]byte(`{"id":"e","type":"t","created":1,"data":{"object":[]}}`), "", true)
	f.Add([]byte(`{}`), "t=1,v1=00", false)
	f.Add([]byte("\x00\xff"), "t=,v1=", false)
	f.Add([]byte(`{"id":"e2","object":"event","type":"t","created":99999999999999,"data":{"object":{"id":1}}}`), "", true)
	f.Fuzz(func(t *testing.T, body []byte, header string, sign bool) {
		if sign {
			header = signed(body, secret, time.Now())
		}
		before, _ := rows(t, db)
		rec := post(srv, body, header)
		after, _ := rows(t, db)
		switch rec.Code {
		case http.StatusOK:
			if !sign {
				t.Fatalf("unsigned body accepted: %q %q", body, header)
			}
			if strings.Contains(rec.Body.String(), `"duplicate":false`) && after != before+1 {
				t.Fatalf("200 new event but %d -> %d rows", before, after)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if after != before {
				t.Fatalf("%d but a row was stored", rec.Code)
			}
		default:
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
	})
}
