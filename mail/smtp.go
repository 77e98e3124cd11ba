package mail

import (
	"context"
	"errors"
	"fmt"
	netmail "net/mail"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// TLS modes of an smtp:// URL.
const (
	StartTLSRequired      = "required"      // STARTTLS or fail
	StartTLSOpportunistic = "opportunistic" // STARTTLS when the server offers it
	StartTLSNone          = "none"          // plain text (local test servers)
)

// Settings is a parsed SMTP_URL.
type Settings struct {
	Host string
	Port int
	// ImplicitTLS is smtps:// (TLS from the first byte, port 465).
	ImplicitTLS bool
	// StartTLS is the STARTTLS mode of smtp:// (ignored with ImplicitTLS).
	StartTLS string
	Username string
	Password string
	// Auth is the SASL mechanism ("" → the strongest the server offers,
	// never PLAIN or LOGIN without TLS).
	Auth    string
	Timeout time.Duration
}

// ParseURL reads an SMTP URL:
//
//	smtp://user:pass@host:587?starttls=required   STARTTLS, required
//	smtps://user:pass@host:465                    implicit TLS
//	smtp://localhost:1025?starttls=none           plain (a local test server)
//
// starttls is required, opportunistic (default) or none; auth forces a
// mechanism (plain, login, cram-md5, scram-sha-1, scram-sha-256, xoauth2);
// timeout bounds connecting and each command (default 15s). User and
// password are URL-encoded. Errors never quote the password.
func ParseURL(raw string) (Settings, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Settings{}, errors.New("SMTP URL does not parse")
	}
	s := Settings{Host: u.Hostname(), StartTLS: StartTLSOpportunistic, Timeout: gomail.DefaultTimeout}
	switch u.Scheme {
	case "smtp":
		s.Port = gomail.DefaultPortTLS
	case "smtps":
		s.ImplicitTLS, s.Port = true, gomail.DefaultPortSSL
	default:
		return Settings{}, fmt.Errorf("SMTP URL scheme must be smtp or smtps, not %q", u.Scheme)
	}
	if s.Host == "" {
		return Settings{}, errors.New("SMTP URL has no host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Settings{}, fmt.Errorf("SMTP URL port %q is not a port", p)
		}
		s.Port = n
	}
	if u.User != nil {
		s.Username = u.User.Username()
		s.Password, _ = u.User.Password()
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "starttls", "auth", "timeout":
		default:
			return Settings{}, fmt.Errorf("SMTP URL parameter %q is unknown (starttls, auth, timeout)", k)
		}
	}
	if v := q.Get("starttls"); v != "" {
		switch v {
		case StartTLSRequired, StartTLSOpportunistic, StartTLSNone:
			s.StartTLS = v
		default:
			return Settings{}, fmt.Errorf("SMTP URL starttls=%q: want required, opportunistic or none", v)
		}
	}
	if v := q.Get("auth"); v != "" {
		if _, ok := authTypes[strings.ToLower(v)]; !ok {
			return Settings{}, fmt.Errorf("SMTP URL auth=%q is not a supported mechanism", v)
		}
		s.Auth = strings.ToLower(v)
	}
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return Settings{}, fmt.Errorf("SMTP URL timeout=%q is not a duration", v)
		}
		s.Timeout = d
	}
	return s, nil
}

var authTypes = map[string]gomail.SMTPAuthType{
	"plain":         gomail.SMTPAuthPlain,
	"login":         gomail.SMTPAuthLogin,
	"cram-md5":      gomail.SMTPAuthCramMD5,
	"scram-sha-1":   gomail.SMTPAuthSCRAMSHA1,
	"scram-sha-256": gomail.SMTPAuthSCRAMSHA256,
	"xoauth2":       gomail.SMTPAuthXOAUTH2,
}

// Secure reports whether credentials travel encrypted (implicit TLS or
// required STARTTLS), or there are none.
func (s Settings) Secure() bool {
	return s.Username == "" || s.ImplicitTLS || s.StartTLS == StartTLSRequired
}

// String describes the server for a banner or a log: no credentials.
func (s Settings) String() string {
	mode := "STARTTLS " + s.StartTLS
	if s.ImplicitTLS {
		mode = "implicit TLS"
	}
	return fmt.Sprintf("%s:%d (%s)", s.Host, s.Port, mode)
}

// SMTP sends messages to an SMTP server. It keeps the connections it has
// used open, a few of them and for a while, and sends the next messages
// over them: one message then costs the server NOOP, MAIL, RCPT, DATA and
// RSET, not also a TCP (and TLS) handshake, EHLO and QUIT. A kept
// connection the server has dropped fails the NOOP check before anything
// is sent, and the message goes over a new one.
type SMTP struct {
	settings Settings
	from     *netmail.Address
	opts     []gomail.Option

	mu   sync.Mutex
	idle []*smtpConn // most recently used last
}

// smtpConn is one connection to the server.
type smtpConn struct {
	c    *gomail.Client
	used time.Time // when its last message went
	sent int
}

// Connection keeping: at most smtpMaxIdle kept open, each reused only
// within smtpIdleFor of its last message (well inside the usual server
// idle timeouts of one to five minutes) and for smtpMaxPerConn messages.
const (
	smtpMaxIdle    = 8
	smtpIdleFor    = 30 * time.Second
	smtpMaxPerConn = 100
)

// NewSMTP returns a sender to the server of s, from the sender address.
func NewSMTP(s Settings, from string) (*SMTP, error) {
	addr, err := ParseAddress(from)
	if err != nil {
		return nil, err
	}
	opts := []gomail.Option{gomail.WithPort(s.Port), gomail.WithTimeout(timeoutOr(s.Timeout, gomail.DefaultTimeout))}
	switch {
	case s.ImplicitTLS:
		opts = append(opts, gomail.WithSSL())
	case s.StartTLS == StartTLSRequired:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case s.StartTLS == StartTLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	}
	if s.Username != "" {
		auth := gomail.SMTPAuthAutoDiscover
		if a, ok := authTypes[s.Auth]; ok {
			auth = a
		}
		opts = append(opts, gomail.WithSMTPAuth(auth), gomail.WithUsername(s.Username), gomail.WithPassword(s.Password))
	}
	// Fail fast on a bad option rather than on the first message.
	if _, err := gomail.NewClient(s.Host, opts...); err != nil {
		return nil, fmt.Errorf("SMTP client for %s: %w", s, err)
	}
	return &SMTP{settings: s, from: addr, opts: opts}, nil
}

// String describes the server (no credentials).
func (m *SMTP) String() string { return "SMTP " + m.settings.String() }

// Send delivers one message. Once the server has accepted the message's
// data it counts as sent, whatever fails after (RSET). Errors: a
// *RejectedError for a permanent refusal; any other error is temporary.
// Error texts carry no address and no content. ctx bounds connecting; the
// commands are bounded by the settings' timeout.
func (m *SMTP) Send(ctx context.Context, msg Message) error {
	gm, err := compose(m.from, msg)
	if err != nil {
		return err
	}
	for {
		conn, kept, err := m.conn(ctx)
		if err != nil {
			return classify(err)
		}
		err = conn.c.Send(gm)
		if gm.IsDelivered() {
			if err == nil {
				m.keep(conn)
			} else {
				go conn.close()
			}
			return nil
		}
		// Whatever went wrong, the connection's state is unknown: drop it.
		go conn.close()
		var se *gomail.SendError
		if kept && errors.As(err, &se) && se.Reason == gomail.ErrConnCheck {
			continue // dropped while kept; nothing was sent on it
		}
		if err == nil {
			return errors.New("smtp: the server did not confirm the message")
		}
		return classify(err)
	}
}

// conn returns a kept connection (kept true) or dials a new one.
func (m *SMTP) conn(ctx context.Context) (conn *smtpConn, kept bool, err error) {
	var stale []*smtpConn
	m.mu.Lock()
	for len(m.idle) > 0 && conn == nil {
		c := m.idle[len(m.idle)-1]
		m.idle = m.idle[:len(m.idle)-1]
		if time.Since(c.used) < smtpIdleFor {
			conn = c
		} else {
			stale = append(stale, c)
		}
	}
	m.mu.Unlock()
	for _, c := range stale {
		go c.close()
	}
	if conn != nil {
		return conn, true, nil
	}
	c, err := gomail.NewClient(m.settings.Host, m.opts...)
	if err != nil {
		return nil, false, fmt.Errorf("smtp client: %w", err)
	}
	if err := c.DialWithContext(ctx); err != nil {
		return nil, false, fmt.Errorf("dial failed: %w", err)
	}
	return &smtpConn{c: c}, false, nil
}

// keep puts a connection that just sent a message back for the next one,
// or closes it when enough are kept or it has sent its share.
func (m *SMTP) keep(c *smtpConn) {
	c.used = time.Now()
	c.sent++
	if c.sent < smtpMaxPerConn {
		m.mu.Lock()
		if len(m.idle) < smtpMaxIdle {
			m.idle = append(m.idle, c)
			c = nil
		}
		m.mu.Unlock()
	}
	if c != nil {
		go c.close()
	}
}

// close says QUIT and closes. The dropped connections close in the
// background: on one the server no longer answers, QUIT waits for the
// command timeout, and the message being sent must not.
func (c *smtpConn) close() { _ = c.c.Close() }

// Close closes the kept connections.
func (m *SMTP) Close() error {
	m.mu.Lock()
	idle := m.idle
	m.idle = nil
	m.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
	return nil
}

// classify turns a go-mail error into a *RejectedError (5xx to the
// envelope or the data, or an unusable message) or a temporary error.
func classify(err error) error {
	var se *gomail.SendError
	if !errors.As(err, &se) {
		// Dial, TLS, authentication, timeouts: the server or our settings,
		// not the message. Temporary.
		return fmt.Errorf("smtp: %s", redact(err.Error()))
	}
	switch se.Reason {
	case gomail.ErrGetSender, gomail.ErrGetRcpts, gomail.ErrNoUnencoded:
		return &RejectedError{Reason: se.Reason.String()}
	case gomail.ErrSMTPMailFrom, gomail.ErrSMTPRcptTo, gomail.ErrSMTPData, gomail.ErrSMTPDataClose:
		if code := se.ErrorCode(); code >= 500 && code < 600 {
			return &RejectedError{Code: code, Enhanced: se.EnhancedStatusCode(), Reason: redact(se.Error())}
		}
	}
	return fmt.Errorf("smtp (temporary, %d): %s", se.ErrorCode(), redact(se.Error()))
}
