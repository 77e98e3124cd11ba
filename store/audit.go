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

// AuditPage selects a page of the audit log, newest first. After, when set,
// is the (created_at, id) of the last entry of the previous page.
type AuditPage struct {
	Limit     int
	AfterTime time.Time
	AfterID   string
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

// ListAudit returns up to page.Limit entries, newest first (created_at DESC,
// id DESC), strictly after the page's keyset position when it has one.
func (db *DB) ListAudit(ctx context.Context, page AuditPage) ([]AuditEntry, error) {
	const cols = `SELECT id, operator, role, action, method, path, queue, task_id, status_code, remote_ip, created_at
		FROM operator_audit`
	var out []AuditEntry
	var err error
	if page.AfterID == "" {
		err = Select(ctx, db, &out, cols+` ORDER BY created_at DESC, id DESC LIMIT ?`, page.Limit)
	} else {
		at := page.AfterTime.UTC()
		err = Select(ctx, db, &out, cols+` WHERE created_at < ? OR (created_at = ? AND id < ?)
			ORDER BY created_at DESC, id DESC LIMIT ?`, at, at, page.AfterID, page.Limit)
	}
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	for i := range out {
		out[i].CreatedAt = out[i].CreatedAt.UTC()
	}
	return out, nil
}
