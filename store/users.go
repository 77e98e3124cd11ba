package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rentalportal/portal"
)

// User is an account. PasswordHash never leaves the server.
type User struct {
	ID           string    `db:"id"`
	Email        string    `db:"email"`
	PasswordHash string    `db:"password_hash"`
	Name         string    `db:"name"`
	Role         string    `db:"role"`
	CreatedAt    time.Time `db:"created_at"`
	UpdatedAt    time.Time `db:"updated_at"`
}

const userColumns = `id, email, password_hash, name, role, created_at, updated_at`

// CreateUser inserts u, filling its ID and timestamps. The email is stored
// lowercased (the schema checks it), so uniqueness is case-insensitive.
// Errors: EDUPLICATE (email taken), EINVALID (a role the schema refuses).
func CreateUser(ctx context.Context, q Queryer, u *User) error {
	if u.ID == "" {
		u.ID = NewID()
	}
	u.Email = strings.ToLower(strings.TrimSpace(u.Email))
	now := Now()
	u.CreatedAt, u.UpdatedAt = now, now
	_, err := Exec(ctx, q, `INSERT INTO users (id, email, password_hash, name, role, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, u.ID, u.Email, u.PasswordHash, u.Name, u.Role, now, now)
	if portal.ErrorCode(err) == portal.EDUPLICATE {
		return portal.WrapError(portal.EDUPLICATE, err, "an account with this email already exists")
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

// GetUser returns a user by ID; ENOTFOUND if absent.
func GetUser(ctx context.Context, q Queryer, id string) (*User, error) {
	var u User
	if err := Get(ctx, q, &u, `SELECT `+userColumns+` FROM users WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("get user %s: %w", id, err)
	}
	return &u, nil
}

// UsersByIDs returns the users among ids that exist, by ID.
func UsersByIDs(ctx context.Context, q Queryer, ids []string) (map[string]*User, error) {
	out, err := selectByIDs(ctx, q, `SELECT `+userColumns+` FROM users WHERE id IN (?)`, ids, func(u *User) string { return u.ID })
	if err != nil {
		return nil, fmt.Errorf("users by id: %w", err)
	}
	return out, nil
}

// GetUserByEmail returns a user by email, compared case-insensitively;
// ENOTFOUND if absent.
func GetUserByEmail(ctx context.Context, q Queryer, email string) (*User, error) {
	var u User
	err := Get(ctx, q, &u, `SELECT `+userColumns+` FROM users WHERE email = ?`, strings.ToLower(strings.TrimSpace(email)))
	if err != nil {
		return nil, fmt.Errorf("get user by email: %w", err)
	}
	return &u, nil
}

// SetUserRole changes a user's role; ENOTFOUND if no user has the ID.
func SetUserRole(ctx context.Context, q Queryer, id, role string) error {
	n, err := Exec(ctx, q, `UPDATE users SET role = ?, updated_at = ? WHERE id = ?`, role, Now(), id)
	if err != nil {
		return fmt.Errorf("set role of user %s: %w", id, err)
	}
	if n == 0 {
		return portal.Errorf(portal.ENOTFOUND, "user not found")
	}
	return nil
}

// SetPasswordHash replaces a user's password hash (a rehash at a new cost).
func SetPasswordHash(ctx context.Context, q Queryer, id, hash string) error {
	if _, err := Exec(ctx, q, `UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?`, hash, Now(), id); err != nil {
		return fmt.Errorf("set password of user %s: %w", id, err)
	}
	return nil
}
