package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rentalportal/portal/store"
)

// AuditLog keeps operator actions (*store.DB satisfies it).
type AuditLog interface {
	// AddAudit writes one entry. Errors: EUNAVAILABLE when the database is down.
	AddAudit(ctx context.Context, e store.AuditEntry) error
	// ListAudit returns a page, newest first. Errors: EUNAVAILABLE.
	ListAudit(ctx context.Context, page store.Page) ([]store.AuditEntry, *store.Cursor, error)
}

// auditTarget is what a dashboard API call acts on.
type auditTarget struct {
	Action string
	Queue  string
	TaskID string
}

// parseAction names a mutating Asynqmon API call by its path (relative to
// RootPath+"/api") and method. Asynqmon's routes put the verb after a
// colon: /queues/{q}/archived_tasks/{id}:run, /queues/{q}:pause,
// /queues/{q}/retry_tasks:archive_all; a DELETE of a task or a queue has
// none. The action is the verb (run, archive, delete, cancel, pause,
// resume, run_all, batch_run, ...; delete_queue for a whole queue).
func parseAction(method, rel string) auditTarget {
	segs := strings.Split(strings.Trim(rel, "/"), "/")
	var t auditTarget
	if len(segs) < 2 || segs[0] != "queues" {
		t.Action = strings.ToLower(method)
		return t
	}
	last := segs[len(segs)-1]
	obj, verb, hasVerb := strings.Cut(last, ":")
	segs[len(segs)-1] = obj
	t.Queue = segs[1]
	switch {
	case hasVerb:
		t.Action = verb
	case method == http.MethodDelete && len(segs) == 2:
		t.Action = "delete_queue"
	case method == http.MethodDelete:
		t.Action = "delete"
	default:
		t.Action = strings.ToLower(method)
	}
	// A single task: .../{state}_tasks/{id}[:verb] (also under groups/{g}/).
	if n := len(segs); n >= 4 && strings.HasSuffix(segs[n-2], "_tasks") {
		t.TaskID = segs[n-1]
	}
	return t
}

// maxAuditedBody bounds how much of a batch request is read for its task IDs.
const maxAuditedBody = 1 << 20

// batchTaskIDs reads the task_ids of a batch call without consuming the
// body the handler still needs.
func batchTaskIDs(r *http.Request) string {
	if r.Body == nil || r.ContentLength > maxAuditedBody {
		return ""
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxAuditedBody+1))
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), r.Body))
	if err != nil || len(b) > maxAuditedBody {
		return ""
	}
	var body struct {
		TaskIDs []string `json:"task_ids"`
	}
	if json.Unmarshal(b, &body) != nil {
		return ""
	}
	ids := strings.Join(body.TaskIDs, ",")
	if len(ids) > 2000 {
		ids = ids[:2000] + "…"
	}
	return ids
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// audit writes the entry after the action, with the status it ended with.
// The request may be gone by then; the write is not. A failed write is
// logged at error level with the whole entry, so the action is never
// silently lost.
func (c *Console) audit(r *http.Request, op operator, t auditTarget, status int) {
	e := store.AuditEntry{Operator: op.Name, Role: op.Role, Action: t.Action, Method: r.Method,
		Path: r.URL.Path, Queue: t.Queue, TaskID: t.TaskID, StatusCode: status, RemoteIP: c.proxies.clientIP(r)}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	log := c.log.With("operator", e.Operator, "role", e.Role, "action", e.Action, "queue", e.Queue,
		"task_id", e.TaskID, "status", e.StatusCode, "path", e.Path, "remote_ip", e.RemoteIP)
	if c.deps.Audit == nil {
		log.WarnContext(ctx, "operator action (no audit store configured)")
		return
	}
	if err := c.deps.Audit.AddAudit(ctx, e); err != nil {
		log.ErrorContext(ctx, "operator action NOT written to the audit log", "err", err)
		return
	}
	log.InfoContext(ctx, "operator action")
}

// pagination is the API's list pagination object (api.Pagination).
type pagination struct {
	Limit      int     `json:"limit"`
	NextCursor *string `json:"next_cursor"`
	HasMore    bool    `json:"has_more"`
}

type auditList struct {
	Data       []store.AuditEntry `json:"data"`
	Pagination pagination         `json:"pagination"`
}

// listAudit serves GET /ops/audit: the audit log, newest first, paginated.
func (c *Console) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page := store.Page{Limit: store.DefaultPageLimit}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxPageLimit {
			writeError(w, http.StatusBadRequest, codeInvalid, "limit must be an integer from 1 to 100",
				fieldError{Field: "limit", Message: "must be an integer from 1 to 100"})
			return
		}
		page.Limit = n
	}
	if s := q.Get("cursor"); s != "" {
		cur, err := store.ParseCursor(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, codeInvalid, "malformed cursor",
				fieldError{Field: "cursor", Message: "not a cursor from a previous page"})
			return
		}
		page.After = &cur
	}
	if c.deps.Audit == nil {
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "no audit store configured")
		return
	}
	rows, next, err := c.deps.Audit.ListAudit(r.Context(), page)
	if err != nil {
		c.log.ErrorContext(r.Context(), "list audit entries", "err", err)
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "audit log unavailable")
		return
	}
	out := auditList{Data: rows, Pagination: pagination{Limit: page.Limit, HasMore: next != nil}}
	if next != nil {
		s := next.Encode()
		out.Pagination.NextCursor = &s
	}
	if out.Data == nil {
		out.Data = []store.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, out)
}
