package store

import (
	"encoding/base64"
	"errors"
	"strings"
	"time"
)

// The one pagination scheme of the API and the operator console: query
// `limit` (1..MaxPageLimit, default DefaultPageLimit) and `cursor`
// (opaque, from the previous page's next_cursor).
const (
	DefaultPageLimit = 20
	MaxPageLimit     = 100
)

// Cursor is a position in a list ordered newest first (created_at DESC,
// id DESC): the list continues with rows strictly after it.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// Page asks for up to Limit rows after the cursor (nil: from the start).
type Page struct {
	Limit int
	After *Cursor
}

// keyset returns the condition (starting with AND) that keeps the rows after
// p.After for a table whose columns are prefixed with alias ("" or "b."),
// and its arguments. Both engines compare row values.
func (p Page) keyset(alias string) (string, []any) {
	if p.After == nil {
		return "", nil
	}
	return ` AND (` + alias + `created_at, ` + alias + `id) < (?, ?)`, []any{p.After.CreatedAt.UTC(), p.After.ID}
}

// limitArg is the LIMIT of a page query: one row more than asked, to learn
// whether another page follows.
func (p Page) limitArg() int { return p.Limit + 1 }

// trimPage cuts the extra row a page query fetched and returns the cursor of
// the next page, or nil on the last page.
func trimPage[T any](rows []T, p Page, key func(*T) Cursor) ([]T, *Cursor) {
	if len(rows) <= p.Limit {
		return rows, nil
	}
	rows = rows[:p.Limit]
	c := key(&rows[len(rows)-1])
	return rows, &c
}

// Encode is the cursor as clients carry it:
// base64url("<created_at RFC 3339 UTC>|<id>").
func (c Cursor) Encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(c.CreatedAt.UTC().Format(time.RFC3339Nano) + "|" + c.ID))
}

// ParseCursor reads a cursor Encode made.
func ParseCursor(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, err
	}
	ts, id, ok := strings.Cut(string(b), "|")
	if !ok || id == "" {
		return Cursor{}, errors.New("bad cursor")
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return Cursor{}, err
	}
	return Cursor{CreatedAt: t.UTC(), ID: id}, nil
}
