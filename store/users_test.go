package store_test

import (
	"context"
	"testing"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

func TestUsers(t *testing.T) {
	t.Parallel()
	testkit.Engines(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		u := &store.User{Email: "  Ada@Example.COM ", PasswordHash: "h", Name: "Ada", Role: "renter"}
		if err := store.CreateUser(ctx, db, u); err != nil {
			t.Fatal(err)
		}
		if u.Email != "ada@example.com" || u.ID == "" {
			t.Fatalf("created %+v: want a lowercased email and an ID", u)
		}
		// Uniqueness is case-insensitive.
		dup := &store.User{Email: "ADA@example.com", PasswordHash: "h", Name: "Other", Role: "owner"}
		if err := store.CreateUser(ctx, db, dup); portal.ErrorCode(err) != portal.EDUPLICATE {
			t.Fatalf("duplicate email: %v, want duplicate", err)
		}
		got, err := store.GetUserByEmail(ctx, db, "ADA@EXAMPLE.com")
		if err != nil || got.ID != u.ID || got.Role != "renter" || got.PasswordHash != "h" {
			t.Fatalf("by email: %+v %v", got, err)
		}
		if _, err := store.GetUserByEmail(ctx, db, "nobody@example.com"); portal.ErrorCode(err) != portal.ENOTFOUND {
			t.Fatalf("unknown email: %v", err)
		}
		if err := store.SetUserRole(ctx, db, u.ID, "admin"); err != nil {
			t.Fatal(err)
		}
		if err := store.SetUserRole(ctx, db, "missing", "admin"); portal.ErrorCode(err) != portal.ENOTFOUND {
			t.Fatalf("promote unknown: %v", err)
		}
		if err := store.SetUserRole(ctx, db, u.ID, "superuser"); portal.ErrorCode(err) != portal.EINVALID {
			t.Fatalf("unknown role: %v, want the schema to refuse it", err)
		}
		got, err = store.GetUser(ctx, db, u.ID)
		if err != nil || got.Role != "admin" {
			t.Fatalf("after promote: %+v %v", got, err)
		}
	})
}
