package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// SessionCookie is the name of the operator session cookie.
const SessionCookie = "rp_ops"

// sessions signs and verifies operator session cookies: a JSON payload
// (user, password generation, expiry) and its HMAC-SHA256, both base64url.
// The role is not in the cookie: it is read from configuration on every
// request, so demoting a user takes effect at the next restart, and
// changing a user's password ends that user's sessions (the generation is
// derived from the configured secret).
type sessions struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

type sessionPayload struct {
	User string `json:"u"`
	Gen  string `json:"g"`
	Exp  int64  `json:"exp"`
}

func (s *sessions) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// generation ties a session to the user's configured secret.
func (s *sessions) generation(u User) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("generation", u.Name, string(u.secret))[:9])
}

// issue returns a cookie value for the user and when it expires.
func (s *sessions) issue(u User) (string, time.Time) {
	exp := s.now().Add(s.ttl)
	b, _ := json.Marshal(sessionPayload{User: u.Name, Gen: s.generation(u), Exp: exp.Unix()})
	payload := base64.RawURLEncoding.EncodeToString(b)
	sig := base64.RawURLEncoding.EncodeToString(s.mac("session", payload))
	return payload + "." + sig, exp
}

// verify returns the session's user name and generation when the cookie
// is authentic and not expired.
func (s *sessions) verify(value string) (sessionPayload, bool) {
	payload, sig, ok := strings.Cut(value, ".")
	if !ok || len(value) > 1024 {
		return sessionPayload{}, false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac("session", payload)) {
		return sessionPayload{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return sessionPayload{}, false
	}
	var p sessionPayload
	if err := json.Unmarshal(b, &p); err != nil || p.User == "" {
		return sessionPayload{}, false
	}
	if s.now().Unix() >= p.Exp {
		return sessionPayload{}, false
	}
	return p, true
}

// cookie builds the session cookie: HttpOnly, SameSite=Strict, for the
// whole site (the console lives under /, /ops and /monitoring), Secure when
// the request came over HTTPS.
func sessionCookie(value string, exp time.Time, secure bool) *http.Cookie {
	c := &http.Cookie{Name: SessionCookie, Value: value, Path: "/", HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteStrictMode}
	if value == "" {
		c.MaxAge = -1
		c.Expires = time.Unix(0, 0)
	} else {
		c.Expires = exp
		c.MaxAge = int(time.Until(exp).Seconds())
	}
	return c
}
