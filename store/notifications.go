package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rentalportal/portal"
)

// Notification is an in-app notification: a domain event as one user reads
// it. It is unique per (event, user), which makes a repeated notify:inapp
// task a no-op.
type Notification struct {
	ID          string     `db:"id"`
	UserID      string     `db:"user_id"`
	EventID     string     `db:"event_id"`
	Type        string     `db:"type"`
	Title       string     `db:"title"`
	Body        string     `db:"body"`
	ReadAt      *time.Time `db:"read_at"`
	CreatedAt   time.Time  `db:"created_at"`
	SubjectType string     `db:"subject_type"` // of the event
	SubjectID   string     `db:"subject_id"`
}

const notificationColumns = `n.id, n.user_id, n.event_id, n.type, n.title, n.body, n.read_at, n.created_at,
	e.subject_type, e.subject_id`

// AddNotification inserts n unless the user already has the event's
// notification; created reports which. Its ID is filled in if empty, and
// its CreatedAt, if zero, with now: the worker passes the event's time, so
// a list shows events in the order they happened whatever order their
// tasks ran in.
func AddNotification(ctx context.Context, q Queryer, n *Notification) (created bool, err error) {
	added, err := AddNotifications(ctx, q, []*Notification{n})
	return added == 1, err
}

// AddNotifications is AddNotification for several notifications in one
// statement; added counts those that were not there yet.
func AddNotifications(ctx context.Context, q Queryer, ns []*Notification) (added int, err error) {
	if len(ns) == 0 {
		return 0, nil
	}
	var sb strings.Builder
	sb.WriteString(`INSERT INTO notifications (id, user_id, event_id, type, title, body, created_at) VALUES `)
	args := make([]any, 0, 7*len(ns))
	for i, n := range ns {
		if n.ID == "" {
			n.ID = NewID()
		}
		if n.CreatedAt.IsZero() {
			n.CreatedAt = Now()
		}
		n.CreatedAt = n.CreatedAt.UTC().Truncate(time.Microsecond)
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("(?, ?, ?, ?, ?, ?, ?)")
		args = append(args, n.ID, n.UserID, n.EventID, n.Type, n.Title, n.Body, n.CreatedAt)
	}
	sb.WriteString(` ON CONFLICT (event_id, user_id) DO NOTHING`)
	rows, err := Exec(ctx, q, sb.String(), args...)
	if err != nil {
		return 0, fmt.Errorf("add notifications of event %s: %w", ns[0].EventID, err)
	}
	return int(rows), nil
}

// NotificationFilter narrows ListNotifications to one user's.
type NotificationFilter struct {
	UserID     string
	UnreadOnly bool
}

// ListNotifications returns a page of a user's notifications, newest
// first, and the cursor of the next page (nil on the last).
func ListNotifications(ctx context.Context, q Queryer, f NotificationFilter, p Page) ([]Notification, *Cursor, error) {
	where, args := `n.user_id = ?`, []any{f.UserID}
	if f.UnreadOnly {
		where += ` AND n.read_at IS NULL`
	}
	ks, ksArgs := p.keyset("n.")
	args = append(append(args, ksArgs...), p.limitArg())
	var rows []Notification
	err := Select(ctx, q, &rows, `SELECT `+notificationColumns+` FROM notifications n
		JOIN domain_events e ON e.id = n.event_id WHERE `+where+ks+` ORDER BY n.created_at DESC, n.id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("list notifications: %w", err)
	}
	rows, next := trimPage(rows, p, func(n *Notification) Cursor { return Cursor{n.CreatedAt, n.ID} })
	return rows, next, nil
}

// UnreadNotifications counts a user's unread notifications.
func UnreadNotifications(ctx context.Context, q Queryer, userID string) (int, error) {
	var n int
	if err := Get(ctx, q, &n, `SELECT count(*) FROM notifications WHERE user_id = ? AND read_at IS NULL`, userID); err != nil {
		return 0, fmt.Errorf("count unread notifications: %w", err)
	}
	return n, nil
}

// MarkNotificationRead marks one of the user's notifications read, once:
// reading it again keeps the first read_at. ENOTFOUND when the user has no
// notification with this ID (another user's is not found either).
func MarkNotificationRead(ctx context.Context, q Queryer, userID, id string) (*Notification, error) {
	if _, err := Exec(ctx, q, `UPDATE notifications SET read_at = ? WHERE id = ? AND user_id = ? AND read_at IS NULL`,
		Now(), id, userID); err != nil {
		return nil, fmt.Errorf("mark notification %s read: %w", id, err)
	}
	var n Notification
	err := Get(ctx, q, &n, `SELECT `+notificationColumns+` FROM notifications n
		JOIN domain_events e ON e.id = n.event_id WHERE n.id = ? AND n.user_id = ?`, id, userID)
	if portal.ErrorCode(err) == portal.ENOTFOUND {
		return nil, portal.WrapError(portal.ENOTFOUND, err, "notification not found")
	}
	if err != nil {
		return nil, fmt.Errorf("get notification %s: %w", id, err)
	}
	return &n, nil
}

// Delivery statuses: the idempotency record of one message to one
// recipient on one channel.
const (
	DeliverySending  = "sending"  // claimed by a worker; the message may be on its way
	DeliverySent     = "sent"     // the server accepted it: never again
	DeliveryFailed   = "failed"   // a temporary failure; the next attempt claims it again
	DeliveryRejected = "rejected" // refused for good (SMTP 5xx): never again
	DeliverySkipped  = "skipped"  // nothing to send (no such recipient any more)
)

// DeliveryKey names one delivery.
type DeliveryKey struct {
	EventID     string
	RecipientID string
	Channel     string
}

// Delivery is a deliveries row.
type Delivery struct {
	EventID     string    `db:"event_id"`
	RecipientID string    `db:"recipient_id"`
	Channel     string    `db:"channel"`
	Status      string    `db:"status"`
	Attempts    int       `db:"attempts"`
	LastError   string    `db:"last_error"`
	CreatedAt   time.Time `db:"created_at"`
	UpdatedAt   time.Time `db:"updated_at"`
}

// ClaimDelivery takes a delivery for one attempt: it creates the record
// (sending), or moves a failed one — or one left sending for longer than
// lease by a worker that died — back to sending, counting the attempt.
// claimed is false, with the record's status, when there is nothing to do
// now: sent, rejected or skipped (done for good), or sending by another
// attempt within its lease.
func ClaimDelivery(ctx context.Context, q Queryer, k DeliveryKey, lease time.Duration) (claimed bool, status string, err error) {
	now := Now()
	n, err := Exec(ctx, q, `INSERT INTO deliveries (event_id, recipient_id, channel, status, attempts, last_error, created_at, updated_at)
		VALUES (?, ?, ?, ?, 1, '', ?, ?)
		ON CONFLICT (event_id, recipient_id, channel) DO UPDATE SET status = excluded.status,
			attempts = deliveries.attempts + 1, updated_at = excluded.updated_at
		WHERE deliveries.status = ? OR (deliveries.status = ? AND deliveries.updated_at < ?)`,
		k.EventID, k.RecipientID, k.Channel, DeliverySending, now, now, DeliveryFailed, DeliverySending, now.Add(-lease))
	if err != nil {
		return false, "", fmt.Errorf("claim delivery %s/%s/%s: %w", k.EventID, k.RecipientID, k.Channel, err)
	}
	if n == 1 {
		return true, DeliverySending, nil
	}
	d, err := GetDelivery(ctx, q, k)
	if err != nil {
		return false, "", err
	}
	return false, d.Status, nil
}

// FinishDelivery records the outcome of a claimed attempt: sent, failed
// (with the error), rejected (with the reason) or skipped.
func FinishDelivery(ctx context.Context, q Queryer, k DeliveryKey, status, detail string) error {
	if len(detail) > 500 {
		detail = detail[:500]
	}
	_, err := Exec(ctx, q, `UPDATE deliveries SET status = ?, last_error = ?, updated_at = ?
		WHERE event_id = ? AND recipient_id = ? AND channel = ?`, status, detail, Now(), k.EventID, k.RecipientID, k.Channel)
	if err != nil {
		return fmt.Errorf("finish delivery %s/%s/%s: %w", k.EventID, k.RecipientID, k.Channel, err)
	}
	return nil
}

// GetDelivery returns a delivery record; ENOTFOUND if absent.
func GetDelivery(ctx context.Context, q Queryer, k DeliveryKey) (*Delivery, error) {
	var d Delivery
	err := Get(ctx, q, &d, `SELECT event_id, recipient_id, channel, status, attempts, last_error, created_at, updated_at
		FROM deliveries WHERE event_id = ? AND recipient_id = ? AND channel = ?`, k.EventID, k.RecipientID, k.Channel)
	if err != nil {
		return nil, fmt.Errorf("get delivery %s/%s/%s: %w", k.EventID, k.RecipientID, k.Channel, err)
	}
	return &d, nil
}
