package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/store"
)

// triggerOptions describe the test event stripe-trigger sends.
type triggerOptions struct {
	Event          string
	BookingID      string
	Amount         int64
	RefundAmount   int64
	Currency       string
	IntentID       string
	ChargeID       string
	ObjectID       string
	Status         string
	Account        string
	Customer       string
	Plan           string
	ChargesEnabled bool
	PayoutsEnabled bool
	Livemode       bool
	Created        time.Time
}

// triggerObjects builds data.object for each event type stripe-trigger knows.
var triggerObjects = map[string]func(o triggerOptions) map[string]any{
	"payment_intent.succeeded":        func(o triggerOptions) map[string]any { return intentObject(o, "succeeded") },
	"payment_intent.payment_failed":   func(o triggerOptions) map[string]any { return intentObject(o, "requires_payment_method") },
	"payment_intent.canceled":         func(o triggerOptions) map[string]any { return intentObject(o, "canceled") },
	"payment_intent.processing":       func(o triggerOptions) map[string]any { return intentObject(o, "processing") },
	"charge.succeeded":                func(o triggerOptions) map[string]any { return chargeObject(o, "succeeded") },
	"charge.failed":                   func(o triggerOptions) map[string]any { return chargeObject(o, "failed") },
	"charge.refunded":                 func(o triggerOptions) map[string]any { return chargeObject(o, "succeeded") },
	"charge.dispute.created":          func(o triggerOptions) map[string]any { return disputeObject(o, "needs_response") },
	"charge.dispute.updated":          func(o triggerOptions) map[string]any { return disputeObject(o, "under_review") },
	"charge.dispute.closed":           func(o triggerOptions) map[string]any { return disputeObject(o, "lost") },
	"charge.dispute.funds_withdrawn":  func(o triggerOptions) map[string]any { return disputeObject(o, "needs_response") },
	"charge.dispute.funds_reinstated": func(o triggerOptions) map[string]any { return disputeObject(o, "won") },
	"payout.paid":                     func(o triggerOptions) map[string]any { return payoutObject(o, "paid") },
	"payout.failed":                   func(o triggerOptions) map[string]any { return payoutObject(o, "failed") },
	"payout.canceled":                 func(o triggerOptions) map[string]any { return payoutObject(o, "canceled") },
	"transfer.created":                func(o triggerOptions) map[string]any { return transferObject(o, false) },
	"transfer.reversed":               func(o triggerOptions) map[string]any { return transferObject(o, true) },
	"account.updated": func(o triggerOptions) map[string]any {
		return map[string]any{"id": o.Account, "object": "account", "charges_enabled": o.ChargesEnabled,
			"payouts_enabled": o.PayoutsEnabled}
	},
	"customer.subscription.created": func(o triggerOptions) map[string]any { return subscriptionObject(o, "active") },
	"customer.subscription.updated": func(o triggerOptions) map[string]any { return subscriptionObject(o, "active") },
	"customer.subscription.deleted": func(o triggerOptions) map[string]any { return subscriptionObject(o, "canceled") },
}

func pick(override, def string) string {
	if override != "" {
		return override
	}
	return def
}

func intentObject(o triggerOptions, status string) map[string]any {
	obj := map[string]any{"id": o.IntentID, "object": "payment_intent", "status": pick(o.Status, status),
		"amount": o.Amount, "currency": o.Currency, "metadata": map[string]string{"booking_id": o.BookingID},
		"client_secret": o.IntentID + "_secret_trigger", "livemode": o.Livemode, "created": o.Created.Unix()}
	switch status {
	case "succeeded":
		obj["amount_received"] = o.Amount
		obj["latest_charge"] = o.ChargeID
	case "requires_payment_method":
		obj["last_payment_error"] = map[string]string{"code": "card_declined", "message": "Your card was declined."}
	}
	return obj
}

func chargeObject(o triggerOptions, status string) map[string]any {
	obj := map[string]any{"id": o.ChargeID, "object": "charge", "status": pick(o.Status, status), "amount": o.Amount,
		"currency": o.Currency, "payment_intent": o.IntentID, "paid": status == "succeeded", "captured": status == "succeeded",
		"metadata": map[string]string{"booking_id": o.BookingID}, "livemode": o.Livemode, "created": o.Created.Unix()}
	if o.Event == "charge.refunded" {
		amt := o.RefundAmount
		if amt <= 0 || amt > o.Amount {
			amt = o.Amount
		}
		obj["amount_refunded"] = amt
		obj["refunded"] = amt == o.Amount
		obj["refunds"] = map[string]any{"object": "list", "data": []map[string]any{{
			"id": "re_trigger_" + idPart(o.BookingID) + fmt.Sprint(amt), "object": "refund", "amount": amt,
			"currency": o.Currency, "status": "succeeded", "charge": o.ChargeID, "payment_intent": o.IntentID}}}
	}
	return obj
}

func disputeObject(o triggerOptions, status string) map[string]any {
	return map[string]any{"id": pick(o.ObjectID, "dp_trigger_"+idPart(o.BookingID)), "object": "dispute",
		"status": pick(o.Status, status), "amount": o.Amount, "currency": o.Currency, "charge": o.ChargeID,
		"payment_intent": o.IntentID, "reason": "fraudulent", "livemode": o.Livemode, "created": o.Created.Unix()}
}

func payoutObject(o triggerOptions, status string) map[string]any {
	obj := map[string]any{"id": pick(o.ObjectID, "po_trigger_"+randomHex(6)), "object": "payout", "status": pick(o.Status, status),
		"amount": o.Amount, "currency": o.Currency, "arrival_date": o.Created.Add(48 * time.Hour).Unix(),
		"livemode": o.Livemode, "created": o.Created.Unix()}
	if status == "failed" {
		obj["failure_code"] = "account_closed"
	}
	return obj
}

func transferObject(o triggerOptions, reversed bool) map[string]any {
	obj := map[string]any{"id": pick(o.ObjectID, "tr_trigger_"+idPart(o.BookingID)), "object": "transfer", "amount": o.Amount,
		"currency": o.Currency, "destination": o.Account, "reversed": reversed, "amount_reversed": 0,
		"metadata": map[string]string{"booking_id": o.BookingID}, "livemode": o.Livemode, "created": o.Created.Unix()}
	if reversed {
		obj["amount_reversed"] = o.Amount
	}
	return obj
}

func subscriptionObject(o triggerOptions, status string) map[string]any {
	return map[string]any{"id": pick(o.ObjectID, "sub_trigger_"+idPart(o.Customer)), "object": "subscription",
		"status": pick(o.Status, status), "customer": o.Customer, "livemode": o.Livemode, "created": o.Created.Unix(),
		"items": map[string]any{"object": "list", "data": []map[string]any{{"price": map[string]any{"id": o.Plan}}}}}
}

var nonID = regexp.MustCompile(`[^A-Za-z0-9]`)

// idPart turns a booking ID into a Stripe-looking ID suffix.
func idPart(s string) string { return nonID.ReplaceAllString(s, "") }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// buildTriggerEvent returns a realistic event of API version 2023-10-16.
func buildTriggerEvent(o triggerOptions) ([]byte, string, error) {
	mk, ok := triggerObjects[o.Event]
	if !ok {
		return nil, "", fmt.Errorf("--event %q: one of %s", o.Event, strings.Join(triggerEventTypes(), ", "))
	}
	id := "evt_trigger_" + randomHex(12)
	ev := map[string]any{"id": id, "object": "event", "type": o.Event, "api_version": payments.APIVersion,
		"created": o.Created.Unix(), "livemode": o.Livemode, "pending_webhooks": 1,
		"request": map[string]any{"id": nil, "idempotency_key": nil}, "data": map[string]any{"object": mk(o)}}
	if strings.HasPrefix(o.Event, "payout.") && o.Account != "" {
		ev["account"] = o.Account
	}
	b, err := json.Marshal(ev)
	return b, id, err
}

func triggerEventTypes() []string {
	var out []string
	for t := range triggerObjects {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// runStripeTrigger sends a signed test event to a running API, like
// `stripe trigger` but offline. It signs with the first
// STRIPE_WEBHOOK_SECRET, or in development without one with the secret the
// API derives from DATA_DIR; it reads the booking's amount, currency and
// PaymentIntent from the database when it can.
func runStripeTrigger(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("stripe-trigger", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o triggerOptions
	var url string
	var quiet bool
	fs.StringVar(&o.Event, "event", "payment_intent.succeeded", "event type: "+strings.Join(triggerEventTypes(), ", "))
	fs.StringVar(&o.BookingID, "booking", "", "booking ID (metadata.booking_id)")
	fs.StringVar(&url, "url", "", "webhook URL (default http://localhost<HTTP_ADDR>/webhooks/stripe)")
	fs.Int64Var(&o.Amount, "amount", 0, "amount in minor units (default: the booking's, else 1000)")
	fs.Int64Var(&o.RefundAmount, "refund-amount", 0, "charge.refunded: amount refunded (default: all of it)")
	fs.StringVar(&o.Currency, "currency", "", "currency (default: the booking's, else eur)")
	fs.StringVar(&o.IntentID, "intent", "", "PaymentIntent ID (default: the booking's, else pi_trigger_<booking>)")
	fs.StringVar(&o.ChargeID, "charge", "", "charge ID (default: the booking's, else ch_trigger_<booking>)")
	fs.StringVar(&o.ObjectID, "object-id", "", "ID of the dispute, payout, transfer or subscription")
	fs.StringVar(&o.Status, "status", "", "override the object's status (e.g. won for charge.dispute.closed)")
	fs.StringVar(&o.Account, "account", "acct_trigger", "Connect account (payout, transfer, account.updated)")
	fs.StringVar(&o.Customer, "customer", "cus_trigger", "customer (subscriptions)")
	fs.StringVar(&o.Plan, "plan", "price_pro_monthly", "price ID (subscriptions)")
	fs.BoolVar(&o.ChargesEnabled, "charges-enabled", true, "account.updated: charges_enabled")
	fs.BoolVar(&o.PayoutsEnabled, "payouts-enabled", true, "account.updated: payouts_enabled")
	fs.BoolVar(&quiet, "quiet", false, "print only the HTTP status")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.BookingID == "" && (strings.HasPrefix(o.Event, "payment_intent.") || strings.HasPrefix(o.Event, "charge.")) {
		return fmt.Errorf("stripe-trigger: --booking is required for %s", o.Event)
	}
	if err := devWebhookSecret(cfg); err != nil {
		return err
	}
	if len(cfg.StripeWebhookSecret) == 0 {
		return fmt.Errorf("stripe-trigger: STRIPE_WEBHOOK_SECRET is not set")
	}
	if o.BookingID != "" {
		fillFromBooking(ctx, cfg, &o, stderr)
	}
	if o.Amount <= 0 {
		o.Amount = 1000
	}
	o.Currency = strings.ToLower(pick(o.Currency, "eur"))
	o.IntentID = pick(o.IntentID, "pi_trigger_"+idPart(o.BookingID))
	o.ChargeID = pick(o.ChargeID, "ch_trigger_"+idPart(o.BookingID))
	o.Livemode = cfg.StripeLivemode
	o.Created = time.Now()
	payload, id, err := buildTriggerEvent(o)
	if err != nil {
		return err
	}
	if url == "" {
		url = webhookURL(cfg.HTTPAddr)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "rentalportal-stripe-trigger")
	req.Header.Set("Stripe-Signature", payments.Sign(payload, cfg.StripeWebhookSecret[0], time.Now()))
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("stripe-trigger: POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if quiet {
		fmt.Fprintln(stdout, resp.StatusCode)
	} else {
		fmt.Fprintf(stdout, "sent %s %s (booking %q, intent %s, amount %d %s) to %s\n%s\n%s\n",
			o.Event, id, o.BookingID, o.IntentID, o.Amount, o.Currency, url, resp.Status, strings.TrimSpace(string(body)))
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("stripe-trigger: the API answered %s", resp.Status)
	}
	return nil
}

// fillFromBooking takes amount, currency, PaymentIntent and charge from the
// database when it is reachable and holds the booking; flags win.
func fillFromBooking(ctx context.Context, cfg *Config, o *triggerOptions, stderr io.Writer) {
	sqlitePath := filepath.Join(cfg.DataDir, "portal.db")
	if cfg.DatabaseURL == "" {
		if _, err := os.Stat(sqlitePath); err != nil {
			return
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	db, err := store.Open(ctx, cfg.DatabaseURL, sqlitePath, store.Options{MaxOpenConns: 1})
	if err != nil {
		fmt.Fprintf(stderr, "stripe-trigger: database unreachable, using flags: %v\n", err)
		return
	}
	defer db.Close()
	b, err := store.GetBooking(ctx, db, o.BookingID)
	if err != nil {
		fmt.Fprintf(stderr, "stripe-trigger: booking %s not in the database, using flags\n", o.BookingID)
		return
	}
	if o.Amount == 0 {
		o.Amount = b.TotalAmount
	}
	o.Currency = pick(o.Currency, b.Currency)
	if p, err := store.GetPaymentByBooking(ctx, db, b.ID); err == nil {
		if p.PaymentIntentID != nil {
			o.IntentID = pick(o.IntentID, *p.PaymentIntentID)
		}
		if p.ChargeID != nil {
			o.ChargeID = pick(o.ChargeID, *p.ChargeID)
		}
	}
}

// webhookURL is the local webhook URL of an API listening on addr.
func webhookURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://localhost:8080/webhooks/stripe"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/webhooks/stripe"
}
