package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rentalportal/portal/account"
	"github.com/rentalportal/portal/internal/testkit"
	"github.com/rentalportal/portal/store"
)

func TestAdminCommands(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			env := map[string]string{"DATA_DIR": t.TempDir(), "BCRYPT_COST": "4", "ADMIN_PW": "Operator-pass-1"}
			if engine == "postgres" {
				env["DATABASE_URL"] = testkit.PostgresSchemaURL(t)
			}
			getenv := func(k string) string { return env[k] }
			admin := func(stdin string, args ...string) (string, error) {
				var out, errOut bytes.Buffer
				err := runAdmin(ctx, args, getenv, strings.NewReader(stdin), &out, &errOut)
				return out.String() + errOut.String(), err
			}

			// From --password-env.
			if out, err := admin("", "create", "--email", "Root@Example.com", "--name", "Root", "--password-env", "ADMIN_PW"); err != nil {
				t.Fatalf("create: %v\n%s", err, out)
			}
			// From stdin, through run() as a user would type it.
			if out, err := admin("Stdin-pass-42\n", "create", "--email", "ops@example.com", "--name", "Ops"); err != nil {
				t.Fatalf("create from stdin: %v\n%s", err, out)
			}
			refused := []struct {
				stdin string
				args  []string
				want  string
			}{
				{"", []string{"create", "--email", "root@example.com", "--name", "Again", "--password-env", "ADMIN_PW"}, "admin promote"},
				{"short\n", []string{"create", "--email", "x@example.com", "--name", "X"}, "at least 10"},
				{"", []string{"create", "--email", "x@example.com", "--name", "X"}, "no password"},
				{"", []string{"create", "--email", "x@example.com", "--name", "X", "--password-env", "UNSET"}, "empty or unset"},
				{"Good-pass-123\n", []string{"create", "--email", "not-an-email", "--name", "X"}, "valid email"},
				{"Good-pass-123\n", []string{"create", "--email", "x@example.com"}, "--name"},
				{"", []string{"promote", "--email", "nobody@example.com"}, "no user"},
				{"", []string{"demote"}, "unknown subcommand"},
				{"", []string{"create", "--password", "x"}, "flag provided but not defined"},
			}
			for _, c := range refused {
				out, err := admin(c.stdin, c.args...)
				if err == nil || !strings.Contains(err.Error()+out, c.want) {
					t.Errorf("admin %v: %v (%s), want an error mentioning %q", c.args, err, out, c.want)
				}
			}

			db, err := store.Open(ctx, env["DATABASE_URL"], filepath.Join(env["DATA_DIR"], "portal.db"), store.Options{MaxOpenConns: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			h, _ := account.NewHasher(4)
			for email, pw := range map[string]string{"root@example.com": "Operator-pass-1", "ops@example.com": "Stdin-pass-42"} {
				u, err := store.GetUserByEmail(ctx, db, email)
				if err != nil || u.Role != "admin" || !h.Check(u.PasswordHash, pw) {
					t.Fatalf("%s: %+v %v (password matches: %v)", email, u, err, err == nil && h.Check(u.PasswordHash, pw))
				}
			}

			// Promote an ordinary user.
			renter := &store.User{Email: "renter@example.com", PasswordHash: "x", Name: "R", Role: "renter"}
			if err := store.CreateUser(ctx, db, renter); err != nil {
				t.Fatal(err)
			}
			if out, err := admin("", "promote", "--email", "RENTER@example.com"); err != nil || !strings.Contains(out, "now an administrator") {
				t.Fatalf("promote: %v %s", err, out)
			}
			if u, _ := store.GetUser(ctx, db, renter.ID); u.Role != "admin" {
				t.Fatalf("role after promote = %s", u.Role)
			}
		})
	}
}

func TestConfigAccountsAndBookings(t *testing.T) {
	t.Parallel()
	get := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cfg, err := loadConfig(get(map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BcryptCost != 12 || cfg.BookingPaymentTTL.Minutes() != 30 || cfg.BookingMaxNights != 90 || cfg.BookingMaxAdvanceDays != 365 {
		t.Fatalf("defaults = %d %s %d %d", cfg.BcryptCost, cfg.BookingPaymentTTL, cfg.BookingMaxNights, cfg.BookingMaxAdvanceDays)
	}
	for _, bad := range []map[string]string{
		{"BCRYPT_COST": "3"}, {"BOOKING_PAYMENT_TTL": "0s"}, {"BOOKING_MAX_NIGHTS": "0"}, {"BOOKING_MAX_ADVANCE_DAYS": "x"},
		{"APP_ENV": "production", "BCRYPT_COST": "8", "JWT_SECRET": strings.Repeat("s", 40),
			"DATABASE_URL": "postgres://db/x", "REDIS_URL": "redis://r:6379"},
	} {
		_, err := loadConfig(get(bad))
		var name string
		for k := range bad {
			if strings.HasPrefix(k, "B") {
				name = k
			}
		}
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: %v, want an error naming %s", bad, err, name)
		}
	}
}
