package store

import "time"

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
