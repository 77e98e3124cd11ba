package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/ratelimit"
)

// Operator endpoints of the rate limiter: list and lift blocks, reset a
// key's counts. Until the operator console's session covers /ops, they
// take the bearer token OPS_TOKEN (requireOpsToken); without one
// configured they refuse everyone.

// requireOpsToken admits requests carrying "Authorization: Bearer
// <OPS_TOKEN>".
func (s *Server) requireOpsToken(c *gin.Context) {
	if s.cfg.OpsToken == "" {
		renderError(c, portal.Errorf(portal.EFORBIDDEN, "operator endpoints are disabled: OPS_TOKEN is not set"))
		return
	}
	scheme, token, ok := strings.Cut(c.GetHeader("Authorization"), " ")
	got, want := sha256.Sum256([]byte(strings.TrimSpace(token))), sha256.Sum256([]byte(s.cfg.OpsToken))
	if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		c.Header("WWW-Authenticate", `Bearer realm="rentalportal-ops"`)
		renderError(c, portal.Errorf(portal.EUNAUTHORIZED, "operator token required"))
		return
	}
	c.Next()
}

// requireLimiter answers 503 when rate limiting is off (RATE_LIMIT_ENABLED=false).
func (s *Server) requireLimiter(c *gin.Context) {
	if s.deps.Limiter == nil {
		renderError(c, errUnavailable("rate limiting is disabled"))
		return
	}
	c.Next()
}

// limiterKey reads the :key parameter: ip:ADDRESS (an IPv6 address counts
// by its /64, as the limiter does), user:ID, or account:EMAIL-or-HASH.
func limiterKey(c *gin.Context) (string, error) {
	key := c.Param("key")
	kind, rest, _ := strings.Cut(key, ":")
	if rest == "" || len(key) > 256 {
		return "", portal.Errorf(portal.EINVALID, "key must be ip:ADDRESS, user:ID or account:EMAIL")
	}
	switch kind {
	case "ip":
		if strings.Contains(rest, "/") {
			return key, nil // already a /64
		}
		return ratelimit.IPSubject(rest), nil
	case "user":
		return key, nil
	case "account":
		if strings.Contains(rest, "@") {
			return ratelimit.AccountSubject(rest), nil
		}
		return key, nil
	}
	return "", portal.Errorf(portal.EINVALID, "key must be ip:ADDRESS, user:ID or account:EMAIL")
}

// listBlocks answers the keys blocked now, soonest to end first, paginated
// like every list (limit, cursor).
func (s *Server) listBlocks(c *gin.Context) {
	limit, offset := 20, 0
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			renderError(c, portal.Errorf(portal.EINVALID, "limit must be from 1 to 100"))
			return
		}
		limit = n
	}
	if v := c.Query("cursor"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		n, aerr := strconv.Atoi(string(b))
		if err != nil || aerr != nil || n < 0 {
			renderError(c, portal.Errorf(portal.EINVALID, "invalid cursor"))
			return
		}
		offset = n
	}
	all, err := s.deps.Limiter.Blocks(c.Request.Context())
	if err != nil {
		renderError(c, portal.WrapError(portal.EUNAVAILABLE, err, "block list unavailable"))
		return
	}
	page := all[min(offset, len(all)):]
	var next *string
	if len(page) > limit {
		page = page[:limit]
		cur := base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(offset + limit)))
		next = &cur
	}
	c.JSON(http.StatusOK, gin.H{"data": page,
		"pagination": gin.H{"limit": limit, "next_cursor": next, "has_more": next != nil}})
}

// clearBlock lifts a block: 204, or 404 when the key is not blocked.
func (s *Server) clearBlock(c *gin.Context) {
	key, err := limiterKey(c)
	if err != nil {
		renderError(c, err)
		return
	}
	ok, err := s.deps.Limiter.Unblock(c.Request.Context(), key)
	if err != nil {
		renderError(c, portal.WrapError(portal.EUNAVAILABLE, err, "block list unavailable"))
		return
	}
	if !ok {
		renderError(c, portal.Errorf(portal.ENOTFOUND, "%s is not blocked", key))
		return
	}
	loggerOf(c).InfoContext(c.Request.Context(), "operator lifted a block", "key", key, "client_ip", c.ClientIP())
	c.Status(http.StatusNoContent)
}

// limitView is one bucket of a key in showLimits.
type limitView struct {
	Policy            string `json:"policy"`
	Limit             string `json:"limit"`
	Burst             int    `json:"burst"`
	Remaining         int    `json:"remaining"`
	ResetAfterSeconds int    `json:"reset_after_seconds"`
}

// showLimits answers a key's buckets (without counting a request) and its
// block, if any.
func (s *Server) showLimits(c *gin.Context) {
	key, err := limiterKey(c)
	if err != nil {
		renderError(c, err)
		return
	}
	ctx := c.Request.Context()
	usage, err := s.deps.Limiter.Usage(ctx, key)
	if err != nil {
		renderError(c, portal.WrapError(portal.EUNAVAILABLE, err, "rate limiter unavailable"))
		return
	}
	block, err := s.deps.Limiter.Blocked(ctx, key)
	if err != nil {
		renderError(c, portal.WrapError(portal.EUNAVAILABLE, err, "block list unavailable"))
		return
	}
	views := make([]limitView, len(usage))
	for i, u := range usage {
		reset := 0
		if u.ResetAfter > 0 {
			reset = ceilSeconds(u.ResetAfter)
		}
		views[i] = limitView{Policy: u.Policy, Limit: u.Limit.String(), Burst: u.Limit.Burst, Remaining: u.Remaining, ResetAfterSeconds: reset}
	}
	c.JSON(http.StatusOK, gin.H{"key": key, "blocked": block, "limits": views})
}

// resetLimits forgets a key's counts (buckets, violations, failed logins): 204.
func (s *Server) resetLimits(c *gin.Context) {
	key, err := limiterKey(c)
	if err != nil {
		renderError(c, err)
		return
	}
	if err := s.deps.Limiter.Reset(c.Request.Context(), key); err != nil {
		renderError(c, portal.WrapError(portal.EUNAVAILABLE, err, "rate limiter unavailable"))
		return
	}
	loggerOf(c).InfoContext(c.Request.Context(), "operator reset rate limits", "key", key, "client_ip", c.ClientIP())
	c.Status(http.StatusNoContent)
}
