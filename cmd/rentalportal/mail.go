package main

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"

	"github.com/go-playground/validator/v10"

	"github.com/rentalportal/portal/mail"
	"github.com/rentalportal/portal/notify"
	"github.com/rentalportal/portal/worker"
)

// mailDir is where the embedded default writes emails as .eml files.
func mailDir(cfg *Config) string { return filepath.Join(cfg.DataDir, "mail") }

// newMailer returns the worker's mailer — SMTP when SMTP_URL is set, else
// .eml files under DATA_DIR/mail — and the renderer of its messages, whose
// links start at PUBLIC_BASE_URL (or the local API when it is unset).
func newMailer(cfg *Config, log *slog.Logger) (worker.Mailer, *notify.Renderer, error) {
	r, err := notify.New(publicBaseURL(cfg))
	if err != nil {
		return nil, nil, err
	}
	if cfg.SMTPURL == "" {
		if cfg.production() {
			log.Warn("SMTP_URL is not set: emails are written as .eml files under " + mailDir(cfg) + " and reach no one")
		}
		f, err := mail.NewFiles(mailDir(cfg), cfg.MailFrom, log)
		if err != nil {
			return nil, nil, err
		}
		return f, r, nil
	}
	s, err := mail.ParseURL(cfg.SMTPURL)
	if err != nil {
		return nil, nil, fmt.Errorf("SMTP_URL: %w", err)
	}
	m, err := mail.NewSMTP(s, cfg.MailFrom)
	if err != nil {
		return nil, nil, fmt.Errorf("SMTP_URL: %w", err)
	}
	return m, r, nil
}

// publicBaseURL is PUBLIC_BASE_URL, or the API on localhost at HTTP_ADDR's
// port when it is unset (development).
func publicBaseURL(cfg *Config) string {
	if cfg.PublicURL != "" {
		return cfg.PublicURL
	}
	_, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil || port == "" || port == "0" {
		port = "8080"
	}
	return "http://localhost:" + port
}

// mailBanner says where email goes, for the start-up banner.
func mailBanner(cfg *Config) string {
	if cfg.SMTPURL == "" {
		return fmt.Sprintf("EMBEDDED .eml files under %s (set SMTP_URL to send email)", mailDir(cfg))
	}
	s, err := mail.ParseURL(cfg.SMTPURL)
	if err != nil {
		return "SMTP (invalid SMTP_URL)"
	}
	return "SMTP " + s.String() + " from " + cfg.MailFrom
}

// registerMailRules adds the validation rules of the mail settings.
func registerMailRules(v *validator.Validate) {
	_ = v.RegisterValidation("smtpurl", func(fl validator.FieldLevel) bool {
		_, err := mail.ParseURL(fl.Field().String())
		return err == nil
	})
	_ = v.RegisterValidation("mailaddress", func(fl validator.FieldLevel) bool {
		_, err := mail.ParseAddress(fl.Field().String())
		return err == nil
	})
}

// mailRules are the checks across mail settings.
func mailRules(cfg *Config) []string {
	var msgs []string
	if cfg.NotifyRetryMax < cfg.NotifyRetryBase {
		msgs = append(msgs, "NOTIFY_RETRY_MAX: must be at least NOTIFY_RETRY_BASE")
	}
	if cfg.SMTPURL != "" && cfg.production() {
		if s, err := mail.ParseURL(cfg.SMTPURL); err == nil && !s.Secure() {
			msgs = append(msgs, "SMTP_URL: production sends credentials only over TLS: use smtps:// or ?starttls=required")
		}
	}
	return msgs
}
