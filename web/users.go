package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// Operator roles. An operator may change queues and tasks (retry, archive,
// delete, pause); a viewer sees everything and changes nothing.
const (
	RoleOperator = "operator"
	RoleViewer   = "viewer"
)

// User is one operator account from configuration.
type User struct {
	Name string
	Role string
	// secret is a bcrypt hash, or (development only) a plain password.
	secret []byte
	plain  bool
}

// Plain reports whether the user's password is configured in the clear.
func (u User) Plain() bool { return u.plain }

var validUserName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// ParseUsers reads OPERATOR_USERS: comma-separated entries
// "name:role:secret", role operator or viewer, secret a bcrypt hash
// ($2a$, $2b$ or $2y$) or, only when allowPlain, a plain password (which
// may contain colons but no commas).
func ParseUsers(spec string, allowPlain bool) ([]User, error) {
	var users []User
	seen := map[string]bool{}
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, rest, ok1 := strings.Cut(entry, ":")
		role, secret, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || secret == "" {
			return nil, fmt.Errorf("entry %d: want name:role:bcrypt-hash", i+1)
		}
		if !validUserName.MatchString(name) {
			return nil, fmt.Errorf("entry %d: user name %q: use 1-64 letters, digits, . _ @ -", i+1, name)
		}
		if role != RoleOperator && role != RoleViewer {
			return nil, fmt.Errorf("entry %d (%s): role %q: want operator or viewer", i+1, name, role)
		}
		if seen[name] {
			return nil, fmt.Errorf("entry %d: user %q listed twice", i+1, name)
		}
		seen[name] = true
		u := User{Name: name, Role: role, secret: []byte(secret)}
		if isBcrypt(secret) {
			if _, err := bcrypt.Cost(u.secret); err != nil {
				return nil, fmt.Errorf("entry %d (%s): malformed bcrypt hash", i+1, name)
			}
		} else {
			if !allowPlain {
				return nil, fmt.Errorf("entry %d (%s): the password must be a bcrypt hash "+
					"(plain passwords are accepted in development only)", i+1, name)
			}
			u.plain = true
		}
		users = append(users, u)
	}
	return users, nil
}

func isBcrypt(s string) bool {
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}

// NewUser returns a user with a plain password (development defaults and
// tests).
func NewUser(name, role, password string) User {
	return User{Name: name, Role: role, secret: []byte(password), plain: !isBcrypt(password)}
}

// userSet checks credentials in about the same time whether or not the user
// exists, so that timing does not tell which names are real.
type userSet struct {
	byName map[string]User
	once   sync.Once
	dummy  []byte
}

func newUserSet(users []User) *userSet {
	s := &userSet{byName: map[string]User{}}
	for _, u := range users {
		s.byName[u.Name] = u
	}
	return s
}

func (s *userSet) get(name string) (User, bool) {
	u, ok := s.byName[name]
	return u, ok
}

// dummyHash is a hash of the cost the real users have, compared against
// when the name is unknown.
func (s *userSet) dummyHash() []byte {
	s.once.Do(func() {
		cost := bcrypt.DefaultCost
		for _, u := range s.byName {
			if !u.plain {
				if c, err := bcrypt.Cost(u.secret); err == nil {
					cost = c
					break
				}
			}
		}
		s.dummy, _ = bcrypt.GenerateFromPassword([]byte("not a password"), cost)
	})
	return s.dummy
}

// check returns the user when name and password match.
func (s *userSet) check(name, password string) (User, bool) {
	u, ok := s.byName[name]
	if !ok {
		_ = bcrypt.CompareHashAndPassword(s.dummyHash(), []byte(password))
		return User{}, false
	}
	if u.plain {
		a, b := sha256.Sum256(u.secret), sha256.Sum256([]byte(password))
		return u, subtle.ConstantTimeCompare(a[:], b[:]) == 1
	}
	return u, bcrypt.CompareHashAndPassword(u.secret, []byte(password)) == nil
}
