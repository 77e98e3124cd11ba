package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	// Aliased: the worker's Stripe tests declare a helper named event.
	domainevent "github.com/rentalportal/portal/event"
	"github.com/rentalportal/portal/mail"
	"github.com/rentalportal/portal/notify"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// Mailer sends one rendered email. Errors: a permanent refusal satisfies
// mail.IsPermanent; any other error is temporary.
type Mailer interface {
	Send(ctx context.Context, m mail.Message) error
}

// deliveryLease is how long a delivery claimed by an attempt is left to it
// before another attempt may take it over (the attempt's worker died
// mid-send): longer than a notify:email attempt can run.
const deliveryLease = 2 * time.Minute

// notifyEvent delivers one domain event to each of its addressees
// (event.Addressees): in-app notifications first — they need nothing but
// the database —, then emails. Every delivery is idempotent on its own, so
// a retried task redoes only those that did not happen. A delivery that
// failed for now (the mail server is down) makes the task fail and be
// retried with the notify backoff; one that can never succeed (no
// template, no mailer) is logged and, if nothing is left to retry, archives
// the task for an operator to see.
func (w *Worker) notifyEvent(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.NotifyEvent](t)
	if err != nil {
		return err
	}
	ev, err := store.GetEvent(ctx, w.deps.DB, p.EventID)
	if err != nil {
		return err
	}
	addrs := ev.Addressees()
	users, err := w.recipients(ctx, addrs)
	if err != nil {
		return err
	}
	var again, never []error
	outcome := func(a domainevent.Addressee, err error) {
		switch {
		case err == nil:
		case errors.Is(err, asynq.SkipRetry):
			w.log.ErrorContext(ctx, "notification cannot be delivered", "event_id", ev.ID, "event_type", ev.Type,
				"channel", a.Channel, "recipient_id", a.RecipientID, "err", err)
			// Its text only: the SkipRetry in it must not stop the retry
			// of the others.
			never = append(never, fmt.Errorf("%s to %s: %s", a.Channel, a.RecipientID, err))
		default:
			again = append(again, fmt.Errorf("%s to %s: %w", a.Channel, a.RecipientID, err))
		}
	}
	// The in-app notifications, in one statement.
	var notes []*store.Notification
	for _, a := range addrs {
		if a.Channel != domainevent.InApp {
			continue
		}
		n, err := w.inAppNote(ctx, ev, a.Role, a.RecipientID, users)
		if n != nil {
			notes = append(notes, n)
		}
		outcome(a, err)
	}
	if _, err := store.AddNotifications(ctx, w.deps.DB, notes); err != nil {
		again = append(again, fmt.Errorf("in-app notifications: %w", err))
	}
	for _, a := range addrs {
		if a.Channel == domainevent.Email {
			outcome(a, w.email(ctx, ev, a.Role, a.RecipientID, users))
		}
	}
	if len(again) > 0 {
		return errors.Join(append(again, never...)...)
	}
	if len(never) > 0 {
		return fmt.Errorf("%w: %w", errors.Join(never...), asynq.SkipRetry)
	}
	return nil
}

// recipients reads the users among an event's addressees, in one query.
func (w *Worker) recipients(ctx context.Context, addrs []domainevent.Addressee) (map[string]*store.User, error) {
	var ids []string
	for _, a := range addrs {
		if a.Role != domainevent.Operators && !slices.Contains(ids, a.RecipientID) {
			ids = append(ids, a.RecipientID)
		}
	}
	return store.UsersByIDs(ctx, w.deps.DB, ids)
}

// notifyInApp handles notify:inapp, one delivery of the tasks notify:event
// replaced.
func (w *Worker) notifyInApp(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.Notify](t)
	if err != nil {
		return err
	}
	ev, role, users, err := w.notifyRecipient(ctx, p)
	if err != nil {
		return err
	}
	n, err := w.inAppNote(ctx, ev, role, p.RecipientID, users)
	if err != nil || n == nil {
		return err
	}
	_, err = store.AddNotification(ctx, w.deps.DB, n)
	return err
}

// notifyEmail handles notify:email, one delivery of the tasks notify:event
// replaced.
func (w *Worker) notifyEmail(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.Notify](t)
	if err != nil {
		return err
	}
	ev, role, users, err := w.notifyRecipient(ctx, p)
	if err != nil {
		return err
	}
	return w.email(ctx, ev, role, p.RecipientID, users)
}

// notifyRecipient loads a notify task's event, the recipient's role in it
// and the recipient (absent from users when gone, or an operator).
func (w *Worker) notifyRecipient(ctx context.Context, p tasks.Notify) (*domainevent.Event, domainevent.Role, map[string]*store.User, error) {
	ev, err := store.GetEvent(ctx, w.deps.DB, p.EventID)
	if err != nil {
		return nil, "", nil, err
	}
	role, ok := ev.Data.RoleOf(p.RecipientID)
	if !ok {
		return nil, "", nil, fmt.Errorf("recipient %s is not concerned by event %s: %w", p.RecipientID, ev.ID, asynq.SkipRetry)
	}
	users, err := w.recipients(ctx, []domainevent.Addressee{{Delivery: domainevent.Delivery{Role: role}, RecipientID: p.RecipientID}})
	return ev, role, users, err
}

// inAppNote renders one user's in-app notification of an event, to write;
// nil when the user is gone. The notification is unique per (event,
// user): writing it again inserts nothing.
func (w *Worker) inAppNote(ctx context.Context, ev *domainevent.Event, role domainevent.Role, userID string,
	users map[string]*store.User) (*store.Notification, error) {
	if role == domainevent.Operators || w.deps.Notify == nil {
		return nil, fmt.Errorf("no in-app notification to %s of event %s: %w", role, ev.ID, asynq.SkipRetry)
	}
	u := users[userID]
	if u == nil {
		w.log.InfoContext(ctx, "notification skipped: the user is gone", "event_id", ev.ID, "user_id", userID)
		return nil, nil
	}
	c, err := w.deps.Notify.Summary(*ev, notify.Recipient{Role: role, Name: u.Name})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	return &store.Notification{UserID: u.ID, EventID: ev.ID, Type: string(ev.Type), Title: c.Subject, Body: c.Summary,
		CreatedAt: ev.OccurredAt}, nil
}

// email emails an event to one recipient — a user (from users; absent when
// gone), or each operator address — exactly once per (event, recipient):
// see deliverEmail.
func (w *Worker) email(ctx context.Context, ev *domainevent.Event, role domainevent.Role, rcptID string, users map[string]*store.User) error {
	if w.deps.Mailer == nil || w.deps.Notify == nil {
		return fmt.Errorf("no mailer configured: %w", asynq.SkipRetry)
	}
	if role == domainevent.Operators {
		// Each address on its own: one that can never be reached must not
		// stop the retry of one that failed for now.
		var again, never []error
		for _, addr := range w.cfg.OperatorEmails {
			err := w.deliverEmail(ctx, ev, domainevent.OperatorRecipient(addr), addr, notify.Recipient{Role: role})
			switch {
			case err == nil:
			case errors.Is(err, asynq.SkipRetry):
				never = append(never, err)
			default:
				again = append(again, err)
			}
		}
		if len(w.cfg.OperatorEmails) == 0 {
			w.log.DebugContext(ctx, "no OPERATOR_NOTIFY_EMAILS: operator email not sent", "event_id", ev.ID, "event_type", ev.Type)
		}
		if len(again) > 0 {
			for _, err := range never {
				w.log.ErrorContext(ctx, "operator email cannot be delivered", "event_id", ev.ID, "err", err)
			}
			return errors.Join(again...)
		}
		return errors.Join(never...)
	}
	u := users[rcptID]
	if u == nil {
		w.log.InfoContext(ctx, "email skipped: the user is gone", "event_id", ev.ID, "user_id", rcptID)
		return nil
	}
	return w.deliverEmail(ctx, ev, u.ID, u.Email, notify.Recipient{Role: role, Name: u.Name})
}

// deliverEmail sends one email under its delivery record (event,
// recipient, email), the idempotency record: claim it — a record already
// sent or rejected means done —, render, send, record the outcome.
//
//   - sent: done for good; a retried or duplicated task finds the record
//     and sends nothing.
//   - temporary failure (4xx, server down, cut connection): the record is
//     failed and the task returns the error, so asynq retries it with the
//     notify backoff (retryDelay); the next attempt claims it again.
//   - permanent refusal (5xx): the record is rejected with the reason and
//     the task succeeds: retrying cannot help, and the record says why.
//
// The one window left: a worker that dies after the server accepted the
// message and before the record says sent leaves it sending; once the
// lease runs out the retry sends it again. Both copies carry the same
// Message-ID (derived from event and recipient), so receivers that
// de-duplicate keep one. SMTP has no way to close that window.
func (w *Worker) deliverEmail(ctx context.Context, ev *domainevent.Event, rcptID, addr string, to notify.Recipient) error {
	key := store.DeliveryKey{EventID: ev.ID, RecipientID: rcptID, Channel: string(domainevent.Email)}
	claimed, status, err := store.ClaimDelivery(ctx, w.deps.DB, key, deliveryLease)
	if err != nil {
		return err
	}
	if !claimed {
		if status == store.DeliverySending {
			return fmt.Errorf("email %s to %s: another attempt is sending it", ev.ID, rcptID)
		}
		w.log.DebugContext(ctx, "email already delivered", "event_id", ev.ID, "recipient_id", rcptID, "status", status)
		return nil
	}
	// From here on the record must be finished even if the task's context
	// ends: a record left sending waits out its lease.
	finish := func(status, detail string) error {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		var err error
		for i := 0; i < 3; i++ {
			if err = store.FinishDelivery(fctx, w.deps.DB, key, status, detail); err == nil {
				return nil
			}
			time.Sleep(time.Duration(i+1) * 100 * time.Millisecond)
		}
		return err
	}
	c, err := w.deps.Notify.Render(*ev, to)
	if err != nil {
		_ = finish(store.DeliveryFailed, err.Error())
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	err = w.deps.Mailer.Send(ctx, mail.Message{To: addr, Subject: c.Subject, Text: c.Text, HTML: c.HTML,
		ID: "notify." + domainevent.MessageKey(ev.ID, rcptID)})
	switch {
	case err == nil:
		if ferr := finish(store.DeliverySent, ""); ferr != nil {
			// Sent, but not recorded: the retry after the lease may send a
			// second copy (same Message-ID).
			return fmt.Errorf("email %s sent but not recorded: %w", ev.ID, ferr)
		}
		w.log.InfoContext(ctx, "email sent", "event_id", ev.ID, "event_type", ev.Type, "recipient_id", rcptID,
			"to", mail.RecipientHash(addr))
		return nil
	case mail.IsPermanent(err):
		w.log.WarnContext(ctx, "email rejected for good", "event_id", ev.ID, "event_type", ev.Type,
			"recipient_id", rcptID, "to", mail.RecipientHash(addr), "err", err)
		return finish(store.DeliveryRejected, err.Error())
	default:
		if ferr := finish(store.DeliveryFailed, err.Error()); ferr != nil {
			w.log.WarnContext(ctx, "could not record a failed email", "event_id", ev.ID, "err", ferr)
		}
		return fmt.Errorf("email %s to %s: %w", ev.ID, rcptID, err)
	}
}

// retryDelay is the worker's asynq RetryDelayFunc. Notify tasks back off
// exponentially from NotifyRetryBase (1s, 2s, 4s, ...) up to
// NotifyRetryMax, with ±25% jitter so that a recovered SMTP server is not
// hit by every waiting message at once; everything else keeps asynq's
// default (which grows to minutes and more quickly).
func (w *Worker) retryDelay(n int, err error, t *asynq.Task) time.Duration {
	if !strings.HasPrefix(t.Type(), "notify:") {
		return asynq.DefaultRetryDelayFunc(n, err, t)
	}
	return backoff(n, w.cfg.NotifyRetryBase, w.cfg.NotifyRetryMax)
}

// backoff is base·2ⁿ with ±25% jitter, capped at max (defaults 1s and 5m).
func backoff(n int, base, max time.Duration) time.Duration {
	if base <= 0 {
		base = time.Second
	}
	if max <= 0 {
		max = 5 * time.Minute
	}
	d := max
	if n < 30 {
		if e := base << n; e > 0 && e < max {
			d = e
		}
	}
	d = time.Duration(float64(d) * (0.75 + rand.Float64()/2))
	return min(d, max)
}
