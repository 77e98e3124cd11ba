package store

import (
	"context"
	"fmt"
	"time"
)

// AuditEntry is one operator action in the dashboard: who did what to which
// queue or task, how it ended, and when.
type AuditEntry struct {
	ID         string    `db:"id" json:"id"`
	Operator   string    `db:"operator" json:"operator"`
	Role       string    `db:"role" json:"role"`
	Action     string    `db:"action" json:"action"`
	Method     string    `db:"method" json:"method"`
	Path       string    `db:"path" json:"path"`
	Queue      string    `db:"queue" json:"queue"`
	TaskID     string    `db:"task_id" json:"task_id"`
	StatusCode int       `db:"status_code" json:"status_code"`
	RemoteIP   string    `db:"remote_ip" json:"remote_ip"`
	CreatedAt  time.Time `db:"created_at" json:"created_at"`
}

// AddAudit writes one audit entry; ID and CreatedAt are filled in when empty.
func (db *DB) AddAudit(ctx context.Context, e AuditEntry) error {
	if e.ID == "" {
		e.ID = NewID()
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = Now()
	}
	_, err := Exec(ctx, db, `INSERT INTO operator_audit (id, operator, role, action, method, path, queue, task_id,
		status_code, remote_ip, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, e.Operator, e.Role, e.Action, e.Method, e.Path, e.Queue, e.TaskID, e.StatusCode, e.RemoteIP,
		e.CreatedAt.UTC())
	if err != nil {
		return fmt.Errorf("add audit entry: %w", err)
	}
	return nil
}

// ListAudit returns a page of entries, newest first (created_at DESC, id
// DESC), and the cursor of the next page (nil on the last).
func (db *DB) ListAudit(ctx context.Context, p Page) ([]AuditEntry, *Cursor, error) {
	ks, args := p.keyset("")
	var out []AuditEntry
	err := Select(ctx, db, &out, `SELECT id, operator, role, action, method, path, queue, task_id, status_code, remote_ip, created_at
		FROM operator_audit WHERE TRUE`+ks+` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, p.limitArg())...)
	if err != nil {
		return nil, nil, fmt.Errorf("list audit entries: %w", err)
	}
	for i := range out {
		out[i].CreatedAt = out[i].CreatedAt.UTC()
	}
	out, next := trimPage(out, p, func(e *AuditEntry) Cursor { return Cursor{e.CreatedAt, e.ID} })
	return out, next, nil
}
