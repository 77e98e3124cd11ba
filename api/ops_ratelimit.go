package api

import (
	"context"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/ratelimit"
	"github.com/rentalportal/portal/store"
)

// Operator endpoints of the rate limiter: list and lift blocks, show and
// reset a key's counts. They take operator credentials — the console's
// session cookie or Basic auth, checked by Deps.Operators — where viewers may
// read and only operators may change; every change is written to the
// operator audit log.

// OperatorAuth checks operator credentials (web.Console satisfies it
// through a small adapter).
type OperatorAuth interface {
	// AuthenticateOperator returns the caller's name and role (operator or
	// viewer). On failure it has answered the request itself (401, 429 or
	// 503 in the one error shape) and ok is false.
	AuthenticateOperator(w http.ResponseWriter, r *http.Request) (name, role string, ok bool)
}

// Operator roles.
const (
	OperatorRole = "operator"
	ViewerRole   = "viewer"
)

// requireOperator admits operators (and viewers, for reads), and audits
// every change after it ran.
func (s *Server) requireOperator(c *gin.Context) {
	if s.deps.Operators == nil {
		renderError(c, errUnavailable("operator endpoints need the operator console (OPERATOR_USERS)"))
		return
	}
	name, role, ok := s.deps.Operators.AuthenticateOperator(c.Writer, c.Request)
	if !ok {
		c.Abort()
		return
	}
	mutating := c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead
	if mutating && role != OperatorRole {
		renderError(c, portal.Errorf(portal.EFORBIDDEN, "viewers cannot change rate limits"))
		s.audit(c, name, role)
		return
	}
	c.Next()
	if mutating {
		s.audit(c, name, role)
	}
}

// audit records an operator's change (or refused attempt) with its outcome.
func (s *Server) audit(c *gin.Context, name, role string) {
	action := "reset_limits"
	if strings.Contains(c.FullPath(), "/blocks/") {
		action = "clear_block"
	}
	err := s.deps.DB.AddAudit(context.WithoutCancel(c.Request.Context()), store.AuditEntry{
		Operator: name, Role: role, Action: action, Method: c.Request.Method, Path: c.Request.URL.Path,
		TaskID: c.Param("key"), StatusCode: c.Writer.Status(), RemoteIP: c.ClientIP(),
	})
	if err != nil {
		loggerOf(c).ErrorContext(c.Request.Context(), "could not write the operator audit entry", "action", action, "err", err)
	}
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
