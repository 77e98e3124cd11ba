package web

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// operator is an authenticated console user.
type operator struct {
	Name string
	Role string
}

// Identity is an authenticated operator or viewer.
type Identity struct {
	Name string
	// Role is RoleOperator or RoleViewer.
	Role string
}

// Authenticate checks a request the way the console does (session cookie,
// or Basic credentials behind the guessing brake), for operator endpoints
// served elsewhere, e.g. by the API. On failure it has answered (401, 429
// or 503 in the one error shape) and returns false; the caller checks the
// role it needs.
func (c *Console) Authenticate(w http.ResponseWriter, r *http.Request) (Identity, bool) {
	op, ok := c.authenticate(w, r, false)
	return Identity(op), ok
}

// authenticate returns the caller from a valid session cookie or Basic
// credentials. Otherwise it answers itself: a browser asking for a page is
// sent to the login form; anything else gets 401 in the one error shape (or
// 429/503 from the guessing brake).
func (c *Console) authenticate(w http.ResponseWriter, r *http.Request, browser bool) (operator, bool) {
	if op, ok := c.fromSession(r); ok {
		return op, true
	}
	if name, pass, ok := r.BasicAuth(); ok {
		u, ok := c.checkPassword(w, r, name, pass, false)
		if !ok {
			return operator{}, false
		}
		return operator{Name: u.Name, Role: u.Role}, true
	}
	if browser && strings.Contains(r.Header.Get("Accept"), "text/html") {
		http.Redirect(w, r, LoginPath+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return operator{}, false
	}
	challenge(w, r)
	writeError(w, http.StatusUnauthorized, codeUnauthorized, "operator login required: "+LoginPath)
	return operator{}, false
}

// challenge names the ways to authenticate. Browsers (they send
// Sec-Fetch-Site) are not offered Basic, which would pop up a password
// dialog over the dashboard when a session ends; scripts are.
func challenge(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Sec-Fetch-Site") != "" {
		w.Header().Set("WWW-Authenticate", `Cookie realm="rentalportal operators", form="`+LoginPath+`"`)
		return
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="rentalportal operators", charset="UTF-8"`)
}

// fromSession returns the operator of a valid session cookie, with the role
// configuration gives that user now.
func (c *Console) fromSession(r *http.Request) (operator, bool) {
	ck, err := r.Cookie(SessionCookie)
	if err != nil {
		return operator{}, false
	}
	p, ok := c.sessions.verify(ck.Value)
	if !ok {
		return operator{}, false
	}
	u, ok := c.users.get(p.User)
	if !ok || c.sessions.generation(u) != p.Gen {
		return operator{}, false
	}
	return operator{Name: u.Name, Role: u.Role}, true
}

// checkPassword verifies credentials behind the per-address brake. On
// failure it has answered: 429 over the budget, 503 when the brake's Redis
// is down, 401 for wrong credentials (as a form page when form is set).
func (c *Console) checkPassword(w http.ResponseWriter, r *http.Request, name, pass string, form bool) (User, bool) {
	ctx := r.Context()
	ip := c.proxies.clientIP(r)
	wait, err := c.brake.blocked(ctx, ip)
	if err != nil {
		c.log.ErrorContext(ctx, "operator login refused: brake unavailable", "err", err)
		setRetryAfter(w, 5*time.Second)
		c.refuse(w, r, form, http.StatusServiceUnavailable, codeUnavailable, "login unavailable, try again shortly")
		return User{}, false
	}
	if wait > 0 {
		c.log.WarnContext(ctx, "operator login refused: too many failures", "remote_ip", ip)
		setRetryAfter(w, wait)
		c.refuse(w, r, form, http.StatusTooManyRequests, codeRateLimited, "too many failed logins from your address, try again later")
		return User{}, false
	}
	u, ok := c.users.check(name, pass)
	if !ok {
		if err := c.brake.fail(ctx, ip); err != nil {
			c.log.ErrorContext(ctx, "operator login: cannot count the failure", "err", err)
		}
		known := "unknown"
		if _, exists := c.users.get(name); exists {
			known = name // never log an unknown name: it may be a password typed in the wrong box
		}
		c.log.WarnContext(ctx, "operator login failed", "user", known, "remote_ip", ip)
		if !form {
			challenge(w, r)
		}
		c.refuse(w, r, form, http.StatusUnauthorized, codeUnauthorized, "wrong user name or password")
		return User{}, false
	}
	return u, true
}

func (c *Console) refuse(w http.ResponseWriter, r *http.Request, form bool, status int, code, msg string) {
	if form {
		c.renderLogin(w, r, status, msg)
		return
	}
	writeError(w, status, code, msg)
}

// maxLoginBody bounds a login request.
const maxLoginBody = 16 << 10

// login serves POST /ops/login: a form (username, password, next) answered
// with a redirect, or JSON ({"username","password"}) answered with the
// operator. Either way the session cookie is set.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	asJSON := mt == "application/json"
	form := !asJSON
	if !c.sameOrigin(r) {
		c.refuse(w, r, form, http.StatusForbidden, codeForbidden, "cross-site login refused")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	var name, pass, next string
	if asJSON {
		var body struct {
			Username string `json:"username"`
			Password string `json:"password"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil && err != io.EOF {
			writeError(w, http.StatusBadRequest, codeInvalid, "malformed JSON body")
			return
		}
		name, pass = body.Username, body.Password
	} else {
		if err := r.ParseForm(); err != nil {
			c.renderLogin(w, r, http.StatusBadRequest, "malformed form")
			return
		}
		name, pass, next = r.PostForm.Get("username"), r.PostForm.Get("password"), r.PostForm.Get("next")
	}
	if name == "" || pass == "" {
		if asJSON {
			var details []fieldError
			if name == "" {
				details = append(details, fieldError{Field: "username", Message: "is required"})
			}
			if pass == "" {
				details = append(details, fieldError{Field: "password", Message: "is required"})
			}
			writeError(w, http.StatusBadRequest, "validation_failed", "user name and password are required", details...)
			return
		}
		c.renderLogin(w, r, http.StatusBadRequest, "user name and password are required")
		return
	}
	u, ok := c.checkPassword(w, r, name, pass, form)
	if !ok {
		return
	}
	value, exp := c.sessions.issue(u)
	http.SetCookie(w, sessionCookie(value, exp, c.proxies.https(r)))
	op := operator{Name: u.Name, Role: u.Role}
	if asJSON {
		c.audit(r, op, auditTarget{Action: "login"}, http.StatusOK)
		writeJSON(w, http.StatusOK, map[string]any{"operator": u.Name, "role": u.Role,
			"read_only": u.Role != RoleOperator, "expires_at": exp.UTC().Format(time.RFC3339)})
		return
	}
	c.audit(r, op, auditTarget{Action: "login"}, http.StatusSeeOther)
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

// logout serves POST /ops/logout: the cookie is cleared.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	if !c.sameOrigin(r) {
		writeError(w, http.StatusForbidden, codeForbidden, "cross-site logout refused")
		return
	}
	status := http.StatusSeeOther
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		status = http.StatusNoContent
	}
	if op, ok := c.fromSession(r); ok {
		c.audit(r, op, auditTarget{Action: "logout"}, status)
	}
	http.SetCookie(w, sessionCookie("", time.Time{}, c.proxies.https(r)))
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	http.Redirect(w, r, LoginPath, status)
}

// safeNext keeps a post-login redirect on this site: a path, never a URL
// or a scheme-relative //host.
func safeNext(next string) string {
	const fallback = RootPath + "/"
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, `\`) {
		return fallback
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return fallback
	}
	return next
}
