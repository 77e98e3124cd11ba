package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestMailConfig(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SMTPURL != "" || cfg.MailFrom != "Rental Portal <no-reply@localhost>" || cfg.NotifyRetryBase != time.Second ||
		cfg.NotifyRetryMax != 5*time.Minute || len(cfg.OperatorEmails) != 0 {
		t.Fatalf("mail defaults: %q %q %s %s %v", cfg.SMTPURL, cfg.MailFrom, cfg.NotifyRetryBase, cfg.NotifyRetryMax, cfg.OperatorEmails)
	}
	if got := mailBanner(cfg); !strings.Contains(got, "EMBEDDED .eml files under data/mail") {
		t.Fatalf("banner %q", got)
	}
	if got := publicBaseURL(cfg); got != "http://localhost:8080" {
		t.Fatalf("public base URL %q", got)
	}

	cfg, err = loadConfig(envOf(map[string]string{"SMTP_URL": "smtp://portal:mailpassword@mail.example.com:587?starttls=required",
		"MAIL_FROM": "Portal <hello@portal.example>", "OPERATOR_NOTIFY_EMAILS": " Ops@Portal.example, oncall@portal.example",
		"PUBLIC_BASE_URL": "https://portal.example"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.OperatorEmails) != 2 || cfg.OperatorEmails[0] != "ops@portal.example" {
		t.Fatalf("operators %q", cfg.OperatorEmails)
	}
	if got := mailBanner(cfg); got != "SMTP mail.example.com:587 (STARTTLS required) from Portal <hello@portal.example>" {
		t.Fatalf("banner %q", got)
	}
	if publicBaseURL(cfg) != "https://portal.example" {
		t.Fatal(publicBaseURL(cfg))
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "config", cfg)
	if strings.Contains(b.String(), "mailpassword") || !strings.Contains(b.String(), "mail.example.com") {
		t.Fatalf("SMTP_URL in the log: %s", b.String())
	}

	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"SMTP_URL": "http://mail.example.com"}, "SMTP_URL"},
		{map[string]string{"SMTP_URL": "smtp://mail.example.com?starttls=sometimes"}, "SMTP_URL"},
		{map[string]string{"MAIL_FROM": "not an address"}, "MAIL_FROM"},
		{map[string]string{"OPERATOR_NOTIFY_EMAILS": "ops@portal.example,nobody"}, "OPERATOR_NOTIFY_EMAILS"},
		{map[string]string{"NOTIFY_RETRY_BASE": "1ms"}, "NOTIFY_RETRY_BASE"},
		{map[string]string{"NOTIFY_RETRY_BASE": "30s", "NOTIFY_RETRY_MAX": "10s"}, "NOTIFY_RETRY_MAX"},
		{map[string]string{"APP_ENV": "production", "DATABASE_URL": "postgres://db/x", "REDIS_URL": "redis://r:6379",
			"JWT_SECRET": strings.Repeat("k", 40), "SMTP_URL": "smtp://u:p@mail.example.com"}, "SMTP_URL: production"},
	} {
		_, err := loadConfig(envOf(c.env))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want it to name %s", c.env, err, c.want)
		}
	}
	// Production with TLS-protected credentials, or a local relay without any, is fine.
	for _, u := range []string{"smtps://u:p@mail.example.com", "smtp://u:p@mail.example.com?starttls=required", "smtp://relay:25"} {
		if _, err := loadConfig(envOf(map[string]string{"APP_ENV": "production", "DATABASE_URL": "postgres://db/x",
			"REDIS_URL": "redis://r:6379", "JWT_SECRET": strings.Repeat("k", 40), "SMTP_URL": u})); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}
