// Package account holds the pure rules of user accounts: how an email is
// normalized, which passwords are acceptable, and how a password is hashed
// and checked. No I/O; the API's registration and login and the admin CLI
// share it so a user made either way obeys the same rules.
package account

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// Password length bounds, in characters (runes).
const (
	MinPasswordLen = 10
	MaxPasswordLen = 128
)

// NormalizeEmail returns the form an email is stored and looked up in:
// trimmed and lowercased, so uniqueness is case-insensitive.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// PasswordProblem returns a client-safe reason why pw is not acceptable for
// an account with this email, or "" when it is: 10..128 characters, at least
// two character classes (lowercase, uppercase, digits, anything else), and
// not the email itself.
func PasswordProblem(pw, email string) string {
	n := utf8.RuneCountInString(pw)
	switch {
	case !utf8.ValidString(pw):
		return "must be valid UTF-8 text"
	case n < MinPasswordLen:
		return fmt.Sprintf("must be at least %d characters", MinPasswordLen)
	case n > MaxPasswordLen:
		return fmt.Sprintf("must be at most %d characters", MaxPasswordLen)
	case classes(pw) < 2:
		return "must mix at least two kinds of characters (lowercase, uppercase, digits, symbols)"
	case email != "" && strings.EqualFold(strings.TrimSpace(pw), strings.TrimSpace(email)):
		return "must not be your email address"
	}
	return ""
}

// classes counts the character classes present in s.
func classes(s string) int {
	var lower, upper, digit, other int
	for _, r := range s {
		switch {
		case unicode.IsLower(r):
			lower = 1
		case unicode.IsUpper(r):
			upper = 1
		case unicode.IsDigit(r):
			digit = 1
		default:
			other = 1
		}
	}
	return lower + upper + digit + other
}

// Hasher hashes and checks passwords with bcrypt at a fixed cost.
//
// bcrypt reads at most 72 bytes and x/crypto refuses longer input, while a
// password may be 128 characters (up to 512 bytes of UTF-8). So every
// password is first reduced to base64(SHA-256(password)) — 44 bytes, no NUL
// — and that is what bcrypt hashes. Every hash the platform stores is made
// this way, so there is no format to tell apart.
type Hasher struct {
	cost int

	dummyOnce sync.Once
	dummy     []byte
}

// NewHasher returns a Hasher with the given bcrypt cost (4..31; 12 is the
// production default, tests use 4).
func NewHasher(cost int) (*Hasher, error) {
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("bcrypt cost %d outside %d..%d", cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	return &Hasher{cost: cost}, nil
}

func prehash(pw string) []byte {
	sum := sha256.Sum256([]byte(pw))
	out := make([]byte, base64.StdEncoding.EncodedLen(len(sum)))
	base64.StdEncoding.Encode(out, sum[:])
	return out
}

// Hash returns the stored form of a password.
func (h *Hasher) Hash(pw string) (string, error) {
	b, err := bcrypt.GenerateFromPassword(prehash(pw), h.cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(b), nil
}

// Check reports whether pw matches the stored hash. A malformed hash is a
// mismatch.
func (h *Hasher) Check(hash, pw string) bool {
	err := bcrypt.CompareHashAndPassword([]byte(hash), prehash(pw))
	return err == nil
}

// CheckNobody spends the time a Check would, for a login whose email is
// unknown, so the answer's timing does not tell whether the email exists.
func (h *Hasher) CheckNobody(pw string) {
	h.dummyOnce.Do(func() {
		// A hash of random-looking text no one can type; only its cost matters.
		h.dummy, _ = bcrypt.GenerateFromPassword(prehash("\x00nobody\x00"), h.cost)
	})
	_ = bcrypt.CompareHashAndPassword(h.dummy, prehash(pw))
}

// NeedsRehash reports whether a stored hash was made with another cost than
// the Hasher's, so a successful login should store a fresh one.
func (h *Hasher) NeedsRehash(hash string) bool {
	c, err := bcrypt.Cost([]byte(hash))
	return err == nil && c != h.cost
}
