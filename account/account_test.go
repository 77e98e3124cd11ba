package account

import (
	"strings"
	"testing"
)

func TestPasswordProblem(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, pw, email string
		ok              bool
	}{
		{"good", "correct horse 7", "a@example.com", true},
		{"two classes: lower and digit", "abcdefghi1", "", true},
		{"non-ASCII letters count", "Ünïcödé-pässwörd", "", true},
		{"too short", "Ab1!Ab1!a", "", false},
		{"exactly 10", "Ab1!Ab1!ab", "", true},
		{"too long", strings.Repeat("aB", 65), "", false},
		{"exactly 128", strings.Repeat("aB", 64), "", true},
		{"one class: lower", "abcdefghijkl", "", false},
		{"one class: digits", "123456789012", "", false},
		{"one class: symbols", "!!!!!!!!!!!!", "", false},
		{"the email", "Someone1@Example.com", "someone1@example.com", false},
		{"invalid utf-8", "abcdefghij\xff1", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := PasswordProblem(c.pw, c.email)
			if (got == "") != c.ok {
				t.Fatalf("PasswordProblem(%q) = %q, want ok=%v", c.pw, got, c.ok)
			}
		})
	}
}

func TestHasher(t *testing.T) {
	t.Parallel()
	h, err := NewHasher(4)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é", 100) + "X1" // 202 bytes: over bcrypt's 72
	hash, err := h.Hash(long)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Check(hash, long) {
		t.Fatal("the password does not match its own hash")
	}
	// bcrypt alone would ignore everything past byte 72; the pre-hash must not.
	if h.Check(hash, strings.Repeat("é", 100)+"X2") {
		t.Fatal("a password differing after byte 72 matched")
	}
	if h.Check("not a hash", long) {
		t.Fatal("a malformed hash matched")
	}
	h.CheckNobody("anything") // must not panic
	h5, _ := NewHasher(5)
	if !h5.NeedsRehash(hash) || h.NeedsRehash(hash) {
		t.Fatal("NeedsRehash does not follow the cost")
	}
	if _, err := NewHasher(3); err == nil {
		t.Fatal("cost 3 accepted")
	}
}

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	if got := NormalizeEmail("  Alice@Example.COM "); got != "alice@example.com" {
		t.Fatalf("NormalizeEmail = %q", got)
	}
}
