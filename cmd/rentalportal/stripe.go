package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rentalportal/portal/api"
	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
	"github.com/rentalportal/portal/worker"
)

// stripeClient returns the Stripe client, or nil without STRIPE_SECRET_KEY
// (bookings then wait for payment webhooks).
func (p *platform) stripeClient() (worker.StripeAPI, error) {
	if p.cfg.StripeSecretKey == "" {
		return nil, nil
	}
	c, err := payments.New(payments.Config{SecretKey: p.cfg.StripeSecretKey, APIBase: p.cfg.StripeAPIBase,
		Timeout: p.cfg.StripeTimeout})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// webhookInbox returns the webhook verifier and the group-committing inbox,
// whose committed events are relayed to Redis right away.
func (p *platform) webhookInbox() (api.WebhookVerifier, api.EventInbox) {
	v := payments.NewVerifier(p.cfg.StripeWebhookSecret, p.cfg.WebhookTolerance, p.cfg.StripeLivemode)
	in := store.NewInbox(p.db, store.InboxOptions{
		MaxRows:  p.cfg.WebhookBatchRows,
		Window:   p.cfg.WebhookBatchWindow,
		Flushers: p.cfg.WebhookBatchFlushers,
		AfterCommit: func(ctx context.Context, msgs []store.OutboxMessage) {
			tm := make([]tasks.Message, len(msgs))
			for i, m := range msgs {
				tm[i] = tasks.Message(m)
			}
			p.relay.Publish(ctx, tm...)
		},
	})
	p.closers = append(p.closers, func() error { in.Close(); return nil })
	return v, in
}

// devWebhookSecret gives development (no STRIPE_WEBHOOK_SECRET) a webhook
// signing secret that the API and `rentalportal stripe-trigger` share
// through DATA_DIR/.stripe-webhook-secret (generated once, mode 0600), the
// way devSecrets does for the JWT secret. Production gets none: without a
// configured secret the webhook endpoint answers 503.
func devWebhookSecret(cfg *Config) error {
	if len(cfg.StripeWebhookSecret) > 0 || cfg.production() {
		return nil
	}
	path := filepath.Join(cfg.DataDir, ".stripe-webhook-secret")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		cfg.StripeWebhookSecret = []string{strings.TrimSpace(string(b))}
		return nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("DATA_DIR %s: %w", cfg.DataDir, err)
	}
	secret := "whsec_dev_" + randomSecret()
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write development webhook secret: %w", err)
	}
	cfg.StripeWebhookSecret = []string{secret}
	return nil
}
