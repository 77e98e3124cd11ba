package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// WebhookVerifier checks a Stripe delivery (payments.Verifier).
type WebhookVerifier interface {
	// Verify returns the verified event or an error wrapping one of the
	// payments.Err* verification errors.
	Verify(payload []byte, sigHeader string, now time.Time) (payments.Event, error)
	// Configured reports whether any webhook secret is set.
	Configured() bool
}

// EventInbox stores verified events durably (store.Inbox).
type EventInbox interface {
	// Add returns once the entry is committed; inserted is false for a
	// duplicate. Errors: EUNAVAILABLE.
	Add(ctx context.Context, e store.InboxEntry) (inserted bool, err error)
}

// webhookStoreTimeout bounds how long a delivery waits for its commit
// before it is answered 503 (Stripe then retries).
const webhookStoreTimeout = 5 * time.Second

// WebhookAck is the body of a 200 answer to Stripe.
type WebhookAck struct {
	Received  bool   `json:"received"`
	EventID   string `json:"event_id"`
	Duplicate bool   `json:"duplicate"`
}

// stripeWebhook is the webhook inbox (POST /webhooks/stripe). It verifies
// the delivery, stores the raw event and its stripe:event outbox row in one
// transaction (group-committed with concurrent deliveries), and answers 200
// only after the commit; it processes nothing. Answers: 200 stored or
// duplicate (nothing changed); 400 bad or missing signature, timestamp
// outside the tolerance either way, wrong livemode, malformed event (nothing
// stored); 413 body over the limit (nothing stored); 503 with Retry-After
// when the event could not be committed, so Stripe retries.
func (s *Server) stripeWebhook(c *gin.Context) {
	if s.deps.Webhooks == nil || !s.deps.Webhooks.Configured() || s.deps.Inbox == nil {
		// Stripe retries for days: an operator can still fix the
		// configuration without losing events.
		renderError(c, WithRetryAfter(errUnavailable("Stripe webhooks are not configured (STRIPE_WEBHOOK_SECRET)"), time.Minute))
		return
	}
	limit := s.cfg.WebhookMaxBytes
	if limit <= 0 {
		limit = 256 << 10
	}
	if c.Request.ContentLength > limit {
		renderError(c, portal.Errorf(portal.ETOOLARGE, "webhook body over %d bytes", limit))
		return
	}
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			renderError(c, portal.Errorf(portal.ETOOLARGE, "webhook body over %d bytes", limit))
			return
		}
		renderError(c, portal.WrapError(portal.EINVALID, err, "could not read the body"))
		return
	}
	if int64(len(body)) > limit {
		renderError(c, portal.Errorf(portal.ETOOLARGE, "webhook body over %d bytes", limit))
		return
	}
	ev, err := s.deps.Webhooks.Verify(body, c.GetHeader("Stripe-Signature"), time.Now())
	if err != nil {
		if errors.Is(err, payments.ErrNoSignature) || errors.Is(err, payments.ErrBadSignature) ||
			errors.Is(err, payments.ErrTimestampTooOld) || errors.Is(err, payments.ErrTimestampInFuture) {
			// Someone is posting to the webhook without the secret (or
			// replaying old deliveries): a security event, not just a 400.
			s.deps.Security.SignatureFailure(c.Request.Context(), c.ClientIP())
		}
		renderError(c, portal.WrapError(portal.EINVALID, err, "%s", webhookRefusal(err)))
		return
	}
	msg, err := tasks.Encode(tasks.StripeEvent{EventID: ev.ID})
	if err != nil {
		renderError(c, err)
		return
	}
	row := store.StripeEvent{
		ID: ev.ID, Type: ev.Type, APIVersion: ev.APIVersion, Livemode: ev.Livemode, ObjectID: ev.ObjectID,
		EventCreated: ev.Created, Payload: string(body), Source: store.EventSourceWebhook, ReceivedAt: store.Now(),
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), webhookStoreTimeout)
	defer cancel()
	inserted, err := s.deps.Inbox.Add(ctx, store.NewInboxEntry(row, payments.APIVersion, store.OutboxMessage(msg)))
	if err != nil {
		if portal.ErrorCode(err) != portal.EUNAVAILABLE {
			err = portal.WrapError(portal.EUNAVAILABLE, err, "the event could not be stored")
		}
		renderError(c, WithRetryAfter(err, 5*time.Second))
		return
	}
	loggerOf(c).DebugContext(c.Request.Context(), "stripe event received", "event_id", ev.ID, "event_type", ev.Type,
		"duplicate", !inserted, "api_version", ev.APIVersion)
	c.JSON(http.StatusOK, WebhookAck{Received: true, EventID: ev.ID, Duplicate: !inserted})
}

// webhookRefusal is the client-safe reason of a verification failure.
func webhookRefusal(err error) string {
	for _, e := range []error{payments.ErrNoSignature, payments.ErrBadSignature, payments.ErrTimestampTooOld,
		payments.ErrTimestampInFuture, payments.ErrLivemodeMismatch, payments.ErrMalformedEvent} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "invalid webhook"
}
