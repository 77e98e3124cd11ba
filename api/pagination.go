package api

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/store"
)

// The one pagination scheme of the API: query `limit` (1..100, default 20)
// and `cursor` (opaque, from the previous page's next_cursor); lists are
// ordered newest first (created_at DESC, id DESC) and continue strictly after
// the cursor, so rows inserted meanwhile never shift a page.
const (
	defaultPageLimit = 20
	maxPageLimit     = 100
)

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
	p := store.Page{Limit: defaultPageLimit}
	if s := c.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageLimit {
			return p, invalidParam("limit", "must be an integer from 1 to 100")
		}
		p.Limit = n
	}
	if s := c.Query("cursor"); s != "" {
		cur, err := decodeCursor(s)
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
		s := encodeCursor(*next)
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

// encodeCursor is base64url("<created_at RFC 3339 UTC, µs>|<id>").
func encodeCursor(c store.Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(c.CreatedAt.UTC().Format(time.RFC3339Nano) + "|" + c.ID))
}

func decodeCursor(s string) (store.Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return store.Cursor{}, err
	}
	ts, id, ok := strings.Cut(string(b), "|")
	if !ok || id == "" {
		return store.Cursor{}, portal.Errorf(portal.EINVALID, "bad cursor")
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return store.Cursor{}, err
	}
	return store.Cursor{CreatedAt: t.UTC(), ID: id}, nil
}

// invalidParam is 400 invalid for one query or path parameter.
func invalidParam(name, msg string) error {
	return &portal.Error{Code: portal.EINVALID, Message: "query parameter " + name + " " + msg,
		Details: []portal.FieldError{{Field: name, Message: msg}}}
}
