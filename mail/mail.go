// Package mail sends email: over SMTP (github.com/wneessen/go-mail),
// configured from one URL, or — the embedded default of development — as
// .eml files in a folder, one log line each. It knows nothing of events or
// templates: a Message is already rendered. Errors say whether trying again
// can help: a *RejectedError is permanent (the server refused the message
// with a 5xx reply); anything else is temporary (4xx, connection, TLS,
// authentication, timeouts) and worth retrying later.
package mail

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	netmail "net/mail"
	"regexp"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Message is one rendered email to one recipient.
type Message struct {
	To      string
	Subject string
	Text    string // the text/plain part
	HTML    string // the text/html alternative ("" → text only)
	// ID is a stable key of the message (the same message sent twice has
	// the same ID): its Message-ID is <ID@domain of the sender>, so
	// receivers can drop a copy.
	ID string
}

// RejectedError is a permanent refusal: the server answered a 5xx to the
// sender, the recipient or the content, or the message cannot be built.
// Sending it again would fail the same way.
type RejectedError struct {
	Code     int    // SMTP reply code (0 when the message itself is unusable)
	Enhanced string // RFC 3463 enhanced status code, if the server gave one
	Reason   string // what failed, without personal data
}

func (e *RejectedError) Error() string {
	if e.Code == 0 {
		return "message rejected: " + e.Reason
	}
	s := fmt.Sprintf("message rejected by the server: %d", e.Code)
	if e.Enhanced != "" {
		s += " " + e.Enhanced
	}
	return s + ": " + e.Reason
}

// IsPermanent reports whether err is a permanent refusal (*RejectedError).
func IsPermanent(err error) bool {
	var r *RejectedError
	return errors.As(err, &r)
}

// compose builds the go-mail message of m from the sender address.
func compose(from *netmail.Address, m Message) (*gomail.Msg, error) {
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	msg.FromMailAddress(from)
	if err := msg.To(m.To); err != nil {
		return nil, &RejectedError{Reason: "invalid recipient address"}
	}
	// Header injection: a subject is one line.
	msg.Subject(strings.Join(strings.Fields(m.Subject), " "))
	msg.SetDate()
	if m.ID != "" {
		msg.SetMessageIDWithValue(m.ID + "@" + domainOf(from.Address))
	} else {
		msg.SetMessageID()
	}
	// RFC 3834: an automatic message; out-of-office robots stay quiet.
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	msg.SetGenHeader(gomail.HeaderXAutoResponseSuppress, "All")
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}

// ParseAddress parses a sender such as `Rental Portal <no-reply@example.com>`.
func ParseAddress(s string) (*netmail.Address, error) {
	a, err := netmail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("invalid email address %q: %w", s, err)
	}
	return a, nil
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 && i < len(addr)-1 {
		return addr[i+1:]
	}
	return "localhost"
}

// RecipientHash is how logs name a recipient: a short digest, stable (one
// recipient's lines can be followed) but not the address.
func RecipientHash(addr string) string {
	h := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(addr))))
	return "sha256:" + hex.EncodeToString(h[:6])
}

var emailLike = regexp.MustCompile(`[^\s<>"',;:]+@[^\s<>"',;:]+`)

// redact removes anything that looks like an email address from a server's
// reply or an error text, so it can be logged and stored.
func redact(s string) string {
	s = emailLike.ReplaceAllString(s, "<redacted>")
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

// timeoutOr returns d, or def when d is zero.
func timeoutOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
