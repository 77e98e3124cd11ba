package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/rentalportal/portal/event"
	"github.com/rentalportal/portal/tasks"
)

// The store writes the outbox rows a recorded event implies, so it builds
// their task messages: store imports the task contract (tasks, which
// imports nothing of ours) for this.

// RecordEvent records a domain event in the caller's transaction — the
// transaction of the change it describes — with the outbox row of its
// notify:event task when it concerns anyone (see event.Audience), and
// returns that message for the caller to publish after commit (or
// leave to the relay's poll). An event with a deterministic ID
// (event.IDFor) recorded twice is written once, and so is its outbox row
// (its ID derives from the event's), so a duplicate cause notifies no one
// twice. An event whose data names no recipient for a role skips the role.
func RecordEvent(ctx context.Context, q Queryer, ev event.Event) ([]tasks.Message, error) {
	if !ev.Type.Known() {
		return nil, fmt.Errorf("record event: unknown type %q", ev.Type)
	}
	if ev.ID == "" {
		ev.ID = NewID()
	}
	if ev.OccurredAt.IsZero() {
		ev.OccurredAt = Now()
	}
	msgs, err := NotifyMessages(ev)
	if err != nil {
		return nil, err
	}
	args, err := eventArgs(ev)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		if _, err := Exec(ctx, q, insertEventSQL, args...); err != nil {
			return nil, fmt.Errorf("record %s event: %w", ev.Type, err)
		}
		return nil, nil
	}
	outSQL, outArgs := insertOutboxRows(toOutbox(msgs), Now())
	if isPostgres(q) {
		// One round trip on PostgreSQL: the event and its outbox rows.
		if _, err := Exec(ctx, q, `WITH e AS (`+insertEventSQL+`) `+outSQL, append(args, outArgs...)...); err != nil {
			return nil, fmt.Errorf("record %s event: %w", ev.Type, err)
		}
		return msgs, nil
	}
	if _, err := Exec(ctx, q, insertEventSQL, args...); err != nil {
		return nil, fmt.Errorf("record %s event: %w", ev.Type, err)
	}
	if _, err := Exec(ctx, q, outSQL, outArgs...); err != nil {
		return nil, fmt.Errorf("record %s event: outbox: %w", ev.Type, err)
	}
	return msgs, nil
}

// isPostgres reports whether q talks to PostgreSQL (pgx): *sqlx.DB and
// *sqlx.Tx both know their driver.
func isPostgres(q Queryer) bool {
	d, ok := q.(interface{ DriverName() string })
	return ok && d.DriverName() == "pgx"
}

const insertEventSQL = `INSERT INTO domain_events (id, type, subject_type, subject_id, data, created_at)
	VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`

func eventArgs(ev event.Event) ([]any, error) {
	data, err := json.Marshal(ev.Data)
	if err != nil {
		return nil, fmt.Errorf("encode %s event data: %w", ev.Type, err)
	}
	return []any{ev.ID, string(ev.Type), ev.SubjectType, ev.SubjectID, string(data), ev.OccurredAt.UTC()}, nil
}

// insertOutboxRows is one INSERT of several outbox messages.
func insertOutboxRows(msgs []OutboxMessage, now time.Time) (string, []any) {
	var b strings.Builder
	b.WriteString(`INSERT INTO outbox (id, task_type, payload, process_at, created_at) VALUES `)
	args := make([]any, 0, 5*len(msgs))
	for i, m := range msgs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?)")
		args = append(args, outboxArgs(m, now)...)
	}
	b.WriteString(` ON CONFLICT (id) DO NOTHING`)
	return b.String(), args
}

func toOutbox(msgs []tasks.Message) []OutboxMessage {
	out := make([]OutboxMessage, len(msgs))
	for i, m := range msgs {
		out[i] = OutboxMessage(m)
	}
	return out
}

// NotifyMessages returns the notify task an event asks for: one
// notify:event (deterministic ID) when its audience names anyone, none
// otherwise. The worker fans it out to each addressee and channel.
func NotifyMessages(ev event.Event) ([]tasks.Message, error) {
	if len(ev.Addressees()) == 0 {
		return nil, nil
	}
	m, err := tasks.Encode(tasks.NotifyEvent{EventID: ev.ID})
	if err != nil {
		return nil, err
	}
	return []tasks.Message{m}, nil
}

type eventRow struct {
	ID          string    `db:"id"`
	Type        string    `db:"type"`
	SubjectType string    `db:"subject_type"`
	SubjectID   string    `db:"subject_id"`
	Data        string    `db:"data"`
	CreatedAt   time.Time `db:"created_at"`
}

// GetEvent returns a recorded domain event; ENOTFOUND if absent.
func GetEvent(ctx context.Context, q Queryer, id string) (*event.Event, error) {
	var r eventRow
	if err := Get(ctx, q, &r, `SELECT id, type, subject_type, subject_id, data, created_at FROM domain_events WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("get event %s: %w", id, err)
	}
	ev := &event.Event{ID: r.ID, Type: event.Type(r.Type), SubjectType: r.SubjectType, SubjectID: r.SubjectID,
		OccurredAt: r.CreatedAt.UTC()}
	if err := json.Unmarshal([]byte(r.Data), &ev.Data); err != nil {
		return nil, fmt.Errorf("event %s data: %w", id, err)
	}
	return ev, nil
}

// EventsOf returns the events recorded about a subject, oldest first.
func EventsOf(ctx context.Context, q Queryer, subjectType, subjectID string) ([]event.Event, error) {
	var rows []eventRow
	err := Select(ctx, q, &rows, `SELECT id, type, subject_type, subject_id, data, created_at FROM domain_events
		WHERE subject_type = ? AND subject_id = ? ORDER BY created_at, id`, subjectType, subjectID)
	if err != nil {
		return nil, fmt.Errorf("events of %s %s: %w", subjectType, subjectID, err)
	}
	out := make([]event.Event, len(rows))
	for i, r := range rows {
		out[i] = event.Event{ID: r.ID, Type: event.Type(r.Type), SubjectType: r.SubjectType, SubjectID: r.SubjectID,
			OccurredAt: r.CreatedAt.UTC()}
		if err := json.Unmarshal([]byte(r.Data), &out[i].Data); err != nil {
			return nil, fmt.Errorf("event %s data: %w", r.ID, err)
		}
	}
	return out, nil
}
