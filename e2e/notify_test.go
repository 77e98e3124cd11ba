package e2e

import (
	"bytes"
	"io"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rentalportal/portal/internal/smtptest"
	"github.com/rentalportal/portal/internal/testkit"
)

type notificationList struct {
	Data []struct {
		ID, Type, Title, Body string
		SubjectID             string `json:"subject_id"`
	} `json:"data"`
	UnreadCount int `json:"unread_count"`
}

// waitNotifications polls the caller's notifications until there are n.
func waitNotifications(t *testing.T, c *Client, n int) notificationList {
	t.Helper()
	var l notificationList
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code := c.Do("GET", "/api/v1/notifications", nil, &l); code == 200 && len(l.Data) >= n {
			return l
		}
	}
	t.Fatalf("%d notifications, want %d", len(l.Data), n)
	return l
}

// TestEmbeddedMailWritesEMLFiles is `make run` with nothing configured: a
// new booking's email lands as an .eml file under DATA_DIR/mail with one
// log line (no address, no body), and the in-app notification is listed.
func TestEmbeddedMailWritesEMLFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := Start(t, "all", map[string]string{"DATA_DIR": dir, "BCRYPT_COST": "4"})
	if out := p.Output(); !strings.Contains(out, "Mail:       EMBEDDED .eml files under "+filepath.Join(dir, "mail")) {
		t.Fatalf("banner:\n%s", out)
	}
	p.WaitStatus("/health/readiness", 200, 5*time.Second)
	owner, renter, b := ListingAndBooking(t, p.Base, 3, 2)

	l := waitNotifications(t, renter, 1)
	if l.Data[0].Type != "booking.created" || l.Data[0].SubjectID != b.ID || l.UnreadCount != 1 ||
		!strings.Contains(l.Data[0].Body, "EUR 50.00") {
		t.Fatalf("renter's notifications = %+v", l)
	}
	if ol := waitNotifications(t, owner, 1); ol.Data[0].Type != "booking.created" {
		t.Fatalf("owner's notifications = %+v", ol)
	}
	var files []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && len(files) == 0; time.Sleep(50 * time.Millisecond) {
		files, _ = filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
	}
	if len(files) != 1 {
		t.Fatalf("eml files = %v, want the renter's one", files)
	}
	raw, _ := os.ReadFile(files[0])
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	body, _ := io.ReadAll(msg.Body)
	text := strings.ReplaceAll(string(body), "=\r\n", "") // quoted-printable soft line breaks
	if !strings.HasPrefix(subject, "Complete your payment: Cargo bike") || !strings.Contains(text, "EUR 50.00") {
		t.Fatalf("eml (subject %q):\n%s", subject, raw)
	}
	logs := p.Output()
	if !strings.Contains(logs, "mail written") || !strings.Contains(logs, files[0]) {
		t.Fatalf("no log line for the email:\n%s", logs)
	}
	if strings.Contains(logs, "@example.com") || strings.Contains(logs, "EUR 50.00") {
		t.Fatalf("the log holds an address or a body:\n%s", logs)
	}
}

// TestWorkerProcessSendsOverSMTP: the api and worker roles as processes on
// PostgreSQL and Redis, the worker configured with SMTP_URL: a booking that
// expires unpaid emails its renter twice (created, expired), once each.
func TestWorkerProcessSendsOverSMTP(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	env := map[string]string{"DATABASE_URL": testkit.PostgresSchemaURL(t), "REDIS_URL": testkit.RedisDB(t).URL,
		"BOOKING_PAYMENT_TTL": "2s", "BCRYPT_COST": "4", "JWT_SECRET": "e2e-secret-e2e-secret-e2e-secret-e2e",
		"SMTP_URL": srv.URL(), "MAIL_FROM": "Portal <no-reply@portal.example>", "PUBLIC_BASE_URL": "https://portal.example"}
	api := Start(t, "api", env)
	api.WaitStatus("/health/readiness", 200, 5*time.Second)
	worker := Start(t, "worker", env)
	if out := worker.Output(); !strings.Contains(out, "Mail:       SMTP "+srv.Addr) {
		t.Fatalf("worker banner:\n%s", out)
	}
	_, renter, b := ListingAndBooking(t, api.Base, 3, 2)
	WaitBooking(t, renter, b.ID, "expired", 15*time.Second)
	srv.Wait(2, 15*time.Second)
	time.Sleep(500 * time.Millisecond)
	msgs := srv.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d emails, want 2", len(msgs))
	}
	subjects := msgs[0].Subject + " | " + msgs[1].Subject
	if !strings.Contains(subjects, "Complete your payment: Cargo bike") || !strings.Contains(subjects, "Booking expired: Cargo bike") {
		t.Fatalf("subjects: %s", subjects)
	}
	for _, m := range msgs {
		if !strings.Contains(m.Text, "https://portal.example/api/v1/bookings/"+b.ID) || m.From != "no-reply@portal.example" {
			t.Fatalf("email from %s:\n%s", m.From, m.Text)
		}
	}
	if l := waitNotifications(t, renter, 2); l.Data[0].Type != "booking.expired" {
		t.Fatalf("renter's notifications = %+v", l)
	}
}
