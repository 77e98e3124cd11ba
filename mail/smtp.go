package mail

import (
	"context"
	"errors"
	"fmt"
	netmail "net/mail"
	"net/url"
	"strconv"
	"strings"
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

// SMTP sends messages to an SMTP server, one connection per message.
type SMTP struct {
	settings Settings
	from     *netmail.Address
	opts     []gomail.Option
}

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
// data it counts as sent, whatever fails after (RSET, QUIT). Errors: a
// *RejectedError for a permanent refusal; any other error is temporary.
// Error texts carry no address and no content.
func (m *SMTP) Send(ctx context.Context, msg Message) error {
	gm, err := compose(m.from, msg)
	if err != nil {
		return err
	}
	c, err := gomail.NewClient(m.settings.Host, m.opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	err = c.DialAndSendWithContext(ctx, gm)
	if gm.IsDelivered() {
		return nil
	}
	if err == nil {
		return errors.New("smtp: the server did not confirm the message")
	}
	return classify(err)
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
