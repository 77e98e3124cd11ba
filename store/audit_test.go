package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

func TestAuditPagesNewestFirst(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		base := store.Now().Add(-time.Hour)
		// Five entries; two share a timestamp so the id breaks the tie.
		at := []time.Duration{0, time.Second, time.Second, 2 * time.Second, 3 * time.Second}
		var want []string
		for i, d := range at {
			e := store.AuditEntry{ID: store.NewID(), Operator: "alice", Role: "operator", Action: "run",
				Method: "POST", Path: "/monitoring/api/queues/q/archived_tasks/t:run", Queue: "q",
				TaskID: "t" + string(rune('a'+i)), StatusCode: 204, RemoteIP: "127.0.0.1", CreatedAt: base.Add(d)}
			if err := db.AddAudit(ctx, e); err != nil {
				t.Fatalf("add: %v", err)
			}
			want = append([]string{e.ID}, want...)
		}
		// Entries with the same created_at come id DESC; the IDs are
		// time-ordered, so the later insert is first.
		var got []string
		page := store.Page{Limit: 2}
		for range 4 {
			rows, next, err := db.ListAudit(ctx, page)
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			for _, r := range rows {
				got = append(got, r.ID)
			}
			if next == nil {
				break
			}
			if last := rows[len(rows)-1]; next.ID != last.ID || !next.CreatedAt.Equal(last.CreatedAt) {
				t.Fatalf("next cursor %+v, last row %s %s", next, last.ID, last.CreatedAt)
			}
			page.After = next
		}
		if len(got) != len(want) {
			t.Fatalf("paged %d entries, want %d: %v", len(got), len(want), got)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("order: got %v, want %v", got, want)
			}
		}
		rows, _, err := db.ListAudit(ctx, store.Page{Limit: 1})
		if err != nil || len(rows) != 1 {
			t.Fatalf("first: %v %v", rows, err)
		}
		r := rows[0]
		if r.Operator != "alice" || r.Queue != "q" || r.TaskID != "te" || r.StatusCode != 204 ||
			!r.CreatedAt.Equal(base.Add(3*time.Second)) || r.CreatedAt.Location() != time.UTC {
			t.Fatalf("row = %+v", r)
		}
	})
}
