package api

import (
	"errors"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/rentalportal/portal"
)

// Roles a user can have. Admin comes only from configuration or the CLI,
// never from self-registration.
const (
	RoleRenter = "renter"
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
)

// Principal is the authenticated caller.
type Principal struct {
	UserID string
	Role   string
}

// IsAdmin reports whether the caller is an administrator.
func (p Principal) IsAdmin() bool { return p.Role == RoleAdmin }

// Tokens issues and verifies access tokens: HS256 only (the algorithm is
// pinned, so a token signed "none" or with a public key as HMAC secret is
// refused), with issuer, audience and expiry checked.
type Tokens struct {
	secret   []byte
	issuer   string
	audience string
	ttl      time.Duration
	now      func() time.Time
}

// NewTokens returns a token issuer/verifier.
func NewTokens(secret, issuer, audience string, ttl time.Duration) *Tokens {
	return &Tokens{secret: []byte(secret), issuer: issuer, audience: audience, ttl: ttl, now: time.Now}
}

type claims struct {
	Role string `json:"role"`
	jwt.RegisteredClaims
}

// Issue returns a signed access token for the user and its lifetime.
func (t *Tokens) Issue(p Principal) (string, time.Duration, error) {
	now := t.now()
	c := claims{Role: p.Role, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   p.UserID,
		Issuer:    t.issuer,
		Audience:  jwt.ClaimStrings{t.audience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)),
		ExpiresAt: jwt.NewNumericDate(now.Add(t.ttl)),
	}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.secret)
	return s, t.ttl, err
}

// Verify parses and checks a token; any fault is EUNAUTHORIZED.
func (t *Tokens) Verify(token string) (Principal, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(t.issuer),
		jwt.WithAudience(t.audience),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(t.now),
		jwt.WithLeeway(5*time.Second),
	)
	if err != nil {
		msg := "invalid access token"
		if errors.Is(err, jwt.ErrTokenExpired) {
			msg = "access token expired"
		}
		return Principal{}, portal.WrapError(portal.EUNAUTHORIZED, err, "%s", msg)
	}
	if c.Subject == "" {
		return Principal{}, portal.Errorf(portal.EUNAUTHORIZED, "invalid access token")
	}
	return Principal{UserID: c.Subject, Role: c.Role}, nil
}

const ctxPrincipal = "principal"

// requireUser authenticates the Bearer token; without a valid one the
// request ends with 401.
func (s *Server) requireUser(c *gin.Context) {
	if p, ok := c.Get(ctxVerified); ok { // this request's token, verified by rateLimit
		c.Set(ctxPrincipal, p)
		c.Set(ctxUserID, p.(Principal).UserID)
		c.Next()
		return
	}
	h := c.GetHeader("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		c.Header("WWW-Authenticate", `Bearer realm="rentalportal"`)
		renderError(c, portal.Errorf(portal.EUNAUTHORIZED, "missing bearer token"))
		return
	}
	p, err := s.tokens.Verify(strings.TrimSpace(token))
	if err != nil {
		c.Header("WWW-Authenticate", `Bearer realm="rentalportal", error="invalid_token"`)
		renderError(c, err)
		return
	}
	c.Set(ctxPrincipal, p)
	c.Set(ctxUserID, p.UserID)
	c.Next()
}

// principal returns the authenticated caller; only valid behind requireUser.
func principal(c *gin.Context) Principal {
	p, _ := c.Get(ctxPrincipal)
	pr, _ := p.(Principal)
	return pr
}
