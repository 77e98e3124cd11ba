package mail_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rentalportal/portal/internal/smtptest"
	"github.com/rentalportal/portal/mail"
)

func sender(t *testing.T, rawURL string) *mail.SMTP {
	t.Helper()
	s, err := mail.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.NewSMTP(s, "Rental Portal <no-reply@portal.example>")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var msg = mail.Message{To: "ana@example.com", Subject: "Booking confirmed: Boat\r\nBcc: evil@example.com",
	Text: "Hello Ana,\n\nYour booking is confirmed: EUR 150.00 — thank you.\n", HTML: "<p>Hello Ana, &lt;b&gt;</p>", ID: "notify.abc123"}

// TestSMTPSendsOverARealConversation: the message arrives with both parts,
// the deterministic Message-ID, the automatic-message headers, and a
// subject that cannot inject headers.
func TestSMTPSendsOverARealConversation(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	if err := sender(t, srv.URL()).Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	got := srv.Wait(1, 5*time.Second)[0]
	if len(got.To) != 1 || got.To[0] != "ana@example.com" || got.From != "no-reply@portal.example" {
		t.Fatalf("envelope from %q to %v", got.From, got.To)
	}
	if got.Subject != "Booking confirmed: Boat Bcc: evil@example.com" {
		t.Fatalf("subject %q", got.Subject)
	}
	if got.MessageID != "<notify.abc123@portal.example>" {
		t.Fatalf("Message-ID %q", got.MessageID)
	}
	if got.Text != msg.Text || got.HTML != msg.HTML {
		t.Fatalf("parts: text %q html %q", got.Text, got.HTML)
	}
	raw := string(got.Raw)
	for _, h := range []string{"Auto-Submitted: auto-generated", "X-Auto-Response-Suppress: All"} {
		if !strings.Contains(raw, h) {
			t.Errorf("missing header %q", h)
		}
	}
	if strings.Contains(strings.ToLower(raw), "\nbcc:") {
		t.Fatal("the subject injected a Bcc header")
	}
}

// TestSMTPKeepsItsConnections: messages sent one after another go over
// one connection; concurrent ones over a few, kept for the next. A kept
// connection the server dropped (a restart) is noticed before anything is
// sent on it, and the message goes over a new one, once.
func TestSMTPKeepsItsConnections(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	m := sender(t, srv.URL())
	defer m.Close()
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := m.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	srv.Wait(5, 5*time.Second)
	if n := srv.Sessions(); n != 1 {
		t.Fatalf("5 messages in a row took %d connections, want 1", n)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Go(func() { errs <- m.Send(ctx, msg) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	srv.Wait(25, 5*time.Second)
	n := srv.Sessions()
	if n > 21 {
		t.Fatalf("%d connections for 25 messages", n)
	}
	for i := 0; i < 5; i++ {
		if err := m.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.Sessions(); got != n {
		t.Fatalf("5 more messages in a row opened %d more connections, want 0 (kept ones reused)", got-n)
	}

	srv.Stop()
	srv.Restart()
	before := len(srv.Messages())
	if err := m.Send(ctx, msg); err != nil {
		t.Fatalf("after a server restart: %v", err)
	}
	if got := len(srv.Messages()) - before; got != 1 {
		t.Fatalf("after a server restart the message arrived %d times, want once", got)
	}
}

// TestSMTPErrorsAreClassified: 5xx to a recipient is a permanent
// rejection; 4xx, a server that is down, a cut connection, bad
// credentials are temporary; no error text carries the address.
func TestSMTPErrorsAreClassified(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	m := sender(t, srv.URL())
	ctx := context.Background()

	srv.RejectRecipient(msg.To, 550)
	err := m.Send(ctx, msg)
	var rej *mail.RejectedError
	if !errors.As(err, &rej) || rej.Code != 550 || rej.Enhanced != "5.1.1" || !mail.IsPermanent(err) {
		t.Fatalf("550: %v, want a permanent rejection", err)
	}
	if strings.Contains(err.Error(), msg.To) {
		t.Fatalf("the error names the recipient: %v", err)
	}

	srv.RejectRecipient(msg.To, 450)
	if err := m.Send(ctx, msg); err == nil || mail.IsPermanent(err) || strings.Contains(err.Error(), msg.To) {
		t.Fatalf("450: %v, want a temporary error without the address", err)
	}
	srv.RejectRecipient(msg.To, 0)

	srv.OnData(func(int) error { srv.Stop(); return errors.New("crashed") })
	if err := m.Send(ctx, msg); err == nil || mail.IsPermanent(err) {
		t.Fatalf("server stopped during DATA: %v, want a temporary error", err)
	}
	if err := m.Send(ctx, msg); err == nil || mail.IsPermanent(err) {
		t.Fatalf("server down: %v, want a temporary error", err)
	}
	srv.OnData(nil)
	srv.Restart()
	if err := m.Send(ctx, msg); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("%d messages accepted, want 1", n)
	}
}

func TestSMTPAuth(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	srv.RequireAuth("portal", "s3cret/+")
	ctx := context.Background()
	base := "smtp://portal:%s@" + srv.Addr + "?starttls=none&auth=plain"
	if err := sender(t, strings.Replace(base, "%s", "wrong", 1)).Send(ctx, msg); err == nil || mail.IsPermanent(err) {
		t.Fatalf("bad password: %v, want a temporary error (a configuration fault, not the message's)", err)
	} else if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("the error quotes the password: %v", err)
	}
	if err := sender(t, strings.Replace(base, "%s", "s3cret%2F+", 1)).Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	srv.Wait(1, 5*time.Second)
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		url  string
		want string
		ok   bool
	}{
		{"smtp://localhost:1025", "localhost:1025 (STARTTLS opportunistic)", true},
		{"smtp://u:p@mail.example.com?starttls=required", "mail.example.com:587 (STARTTLS required)", true},
		{"smtps://u:p@mail.example.com", "mail.example.com:465 (implicit TLS)", true},
		{"smtp://localhost:1025?starttls=none&timeout=5s&auth=login", "localhost:1025 (STARTTLS none)", true},
		{"http://mail.example.com", "", false},
		{"smtp://", "", false},
		{"smtp://h:99999", "", false},
		{"smtp://h?starttls=maybe", "", false},
		{"smtp://h?auth=magic", "", false},
		{"smtp://h?timeout=soon", "", false},
		{"smtp://h?tls=yes", "", false},
	} {
		s, err := mail.ParseURL(c.url)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v", c.url, err)
			continue
		}
		if c.ok && s.String() != c.want {
			t.Errorf("%s: %s, want %s", c.url, s, c.want)
		}
	}
	s, _ := mail.ParseURL("smtp://u:p@h")
	if s.Secure() {
		t.Error("credentials over opportunistic STARTTLS counted as secure")
	}
	if _, err := mail.ParseURL("smtp://u:hunter2@h:bad"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error quotes the password: %v", err)
	}
}

// TestFilesWritesOneEMLPerMessage: the embedded default writes an .eml
// file per message (the same message twice is one file) and logs one line
// without the address or the body.
func TestFilesWritesOneEMLPerMessage(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "mail")
	var log strings.Builder
	f, err := mail.NewFiles(dir, "Rental Portal <no-reply@localhost>", slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := f.Send(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 || filepath.Ext(files[0]) != ".eml" {
		t.Fatalf("files = %v, want one .eml", files)
	}
	b, _ := os.ReadFile(files[0])
	if !strings.Contains(string(b), "Message-ID: <notify.abc123@localhost>") || !strings.Contains(string(b), "To: <ana@example.com>") {
		t.Fatalf("eml:\n%s", b)
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "mail written") || !strings.Contains(lines[0], files[0]) {
		t.Fatalf("log:\n%s", log.String())
	}
	if strings.Contains(log.String(), "ana@example.com") || strings.Contains(log.String(), "thank you") {
		t.Fatalf("the log holds the address or the body:\n%s", log.String())
	}
}
