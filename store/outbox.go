package store

import (
	"context"
	"fmt"
	"time"
)

// OutboxMessage is one task waiting to be relayed to Redis. Its fields match
// tasks.Message, so a caller converts with store.OutboxMessage(m).
type OutboxMessage struct {
	ID        string
	Type      string
	Payload   []byte
	ProcessAt time.Time
}

// AddOutbox writes messages in the caller's transaction. A message whose ID
// is already in the outbox is the same work asked for twice and is skipped.
func AddOutbox(ctx context.Context, q Queryer, msgs ...OutboxMessage) error {
	now := Now()
	for _, m := range msgs {
		if _, err := Exec(ctx, q, insertOutboxSQL, outboxArgs(m, now)...); err != nil {
			return fmt.Errorf("add outbox %s: %w", m.ID, err)
		}
	}
	return nil
}

// insertOutboxSQL writes one outbox message (outboxArgs); insertOutboxRows
// (events.go) writes several in one statement.
const insertOutboxSQL = `INSERT INTO outbox (id, task_type, payload, process_at, created_at)
	VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`

func outboxArgs(m OutboxMessage, now time.Time) []any {
	var at *time.Time
	if !m.ProcessAt.IsZero() {
		t := m.ProcessAt.UTC().Truncate(time.Microsecond)
		at = &t
	}
	return []any{m.ID, m.Type, m.Payload, at, now}
}

type outboxRow struct {
	ID        string     `db:"id"`
	Type      string     `db:"task_type"`
	Payload   []byte     `db:"payload"`
	ProcessAt *time.Time `db:"process_at"`
}

// UnsentOutbox returns up to limit messages written before `before` and not
// yet relayed, oldest first.
func UnsentOutbox(ctx context.Context, q Queryer, before time.Time, limit int) ([]OutboxMessage, error) {
	var rows []outboxRow
	err := Select(ctx, q, &rows, `SELECT id, task_type, payload, process_at FROM outbox
		WHERE sent_at IS NULL AND created_at < ? ORDER BY created_at LIMIT ?`, before.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("list unsent outbox: %w", err)
	}
	out := make([]OutboxMessage, len(rows))
	for i, r := range rows {
		out[i] = OutboxMessage{ID: r.ID, Type: r.Type, Payload: r.Payload}
		if r.ProcessAt != nil {
			out[i].ProcessAt = *r.ProcessAt
		}
	}
	return out, nil
}

// MarkOutboxSent records that messages reached Redis; a row already marked
// keeps its first time.
//
// The rows are found by primary key alone. With "AND sent_at IS NULL" in
// the WHERE clause, PostgreSQL could answer from the partial index of
// unsent rows, and did whenever its statistics were taken while few rows
// were unsent. It then read the whole unsent backlog for each mark: 3.7 ms
// for 10 rows behind a backlog of 20,000, the backlog a Redis outage
// leaves, so the relay's drain after the outage slowed as it went.
func MarkOutboxSent(ctx context.Context, q Queryer, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	query, args, err := In(q, `UPDATE outbox SET sent_at = COALESCE(sent_at, ?) WHERE id IN (?)`, Now(), ids)
	if err != nil {
		return err
	}
	if _, err := q.ExecContext(ctx, query, args...); err != nil {
		return fmt.Errorf("mark outbox sent: %w", Translate(err))
	}
	return nil
}

// MarkOutboxFailed counts a failed relay attempt with its error.
func MarkOutboxFailed(ctx context.Context, q Queryer, id, reason string) error {
	_, err := Exec(ctx, q, `UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?`, reason, id)
	return err
}

// DeleteSentOutbox removes relayed rows older than before, chunk rows per
// statement (short transactions and WAL in small steps on a table every
// write path inserts into), and returns how many.
func DeleteSentOutbox(ctx context.Context, q Queryer, before time.Time, chunk int) (int64, error) {
	chunk = max(chunk, 1)
	var total int64
	for {
		n, err := Exec(ctx, q, `DELETE FROM outbox WHERE id IN
			(SELECT id FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ? LIMIT ?)`, before.UTC(), chunk)
		total += n
		if err != nil || n < int64(chunk) {
			return total, err
		}
	}
}
