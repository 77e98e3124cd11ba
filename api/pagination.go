package api

import (
	"context"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/store"
)

// The one pagination scheme of the API (store.DefaultPageLimit,
// store.MaxPageLimit, store.Cursor): query `limit` (1..100, default 20) and
// `cursor` (opaque, from the previous page's next_cursor); lists are
// ordered newest first (created_at DESC, id DESC) and continue strictly
// after the cursor, so rows inserted meanwhile never shift a page.

// Pagination is the "pagination" object of every list response.
type Pagination struct {
	Limit      int     `json:"limit"`
	NextCursor *string `json:"next_cursor"`
	HasMore    bool    `json:"has_more"`
}

// ListResponse is the body of every list endpoint.
type ListResponse[T any] struct {
	Data       []T        `json:"data"`
	Pagination Pagination `json:"pagination"`
}

// parsePage reads limit and cursor from the query; a malformed value is 400
// invalid naming the parameter.
func parsePage(c *gin.Context) (store.Page, error) {
	p := store.Page{Limit: store.DefaultPageLimit}
	if s := c.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxPageLimit {
			return p, invalidParam("limit", "must be an integer from 1 to 100")
		}
		p.Limit = n
	}
	if s := c.Query("cursor"); s != "" {
		cur, err := store.ParseCursor(s)
		if err != nil {
			return p, invalidParam("cursor", "is not a cursor this API returned")
		}
		p.After = &cur
	}
	return p, nil
}

// newList builds a list response from a page of items and the store's next
// cursor.
func newList[T any](items []T, p store.Page, next *store.Cursor) ListResponse[T] {
	if items == nil {
		items = []T{}
	}
	r := ListResponse[T]{Data: items, Pagination: Pagination{Limit: p.Limit, HasMore: next != nil}}
	if next != nil {
		s := next.Encode()
		r.Pagination.NextCursor = &s
	}
	return r
}

// pageViews builds the views of a page of rows, loading what the views need
// besides the rows (photos, histories) in one query for the whole page.
func pageViews[R, X, V any](ctx context.Context, q store.Queryer, rows []R, id func(*R) string,
	load func(context.Context, store.Queryer, ...string) (map[string]X, error), view func(*R, X) V) ([]V, error) {
	ids := make([]string, len(rows))
	for i := range rows {
		ids[i] = id(&rows[i])
	}
	related, err := load(ctx, q, ids...)
	if err != nil {
		return nil, err
	}
	out := make([]V, len(rows))
	for i := range rows {
		out[i] = view(&rows[i], related[ids[i]])
	}
	return out, nil
}

// invalidParam is 400 invalid for one query or path parameter.
func invalidParam(name, msg string) error {
	return &portal.Error{Code: portal.EINVALID, Message: "query parameter " + name + " " + msg,
		Details: []portal.FieldError{{Field: name, Message: msg}}}
}
