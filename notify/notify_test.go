package notify_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rentalportal/portal/event"
	"github.com/rentalportal/portal/notify"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func ptr[T any](v T) *T { return &v }

// golden cases: every event type, for every role it concerns, with the
// variants that change the wording (who cancelled, refund or not, dispute
// won or lost, zero-decimal currency, a listing's time zone).
func goldenCases() map[string]struct {
	ev event.Event
	to notify.Recipient
} {
	at := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	payBy := at.Add(30 * time.Minute)
	booking := func(typ event.Type, mod func(*event.Data)) event.Event {
		d := event.Data{RenterID: "u-renter", OwnerID: "u-owner", BookingID: "b-0001", ListingID: "l-0001",
			ListingTitle: "Canal boat <Amsterdam> & co", TimeZone: "Europe/Amsterdam", StartDate: "2026-03-10",
			EndDate: "2026-03-13", Amount: 45000, Currency: "EUR"}
		if mod != nil {
			mod(&d)
		}
		return event.Event{ID: "e-0001", Type: typ, SubjectType: event.SubjectBooking, SubjectID: "b-0001", Data: d, OccurredAt: at}
	}
	renter := notify.Recipient{Role: event.Renter, Name: "Ana"}
	owner := notify.Recipient{Role: event.Owner, Name: "Olu"}
	ops := notify.Recipient{Role: event.Operators}
	type c = struct {
		ev event.Event
		to notify.Recipient
	}
	out := map[string]c{
		"booking.created.renter":               {booking(event.BookingCreated, func(d *event.Data) { d.PayBy = &payBy }), renter},
		"booking.created.owner":                {booking(event.BookingCreated, func(d *event.Data) { d.PayBy = &payBy }), owner},
		"booking.created.renter_jpy_utc":       {booking(event.BookingCreated, func(d *event.Data) { d.PayBy, d.Currency, d.Amount, d.TimeZone = &payBy, "JPY", 36000, "" }), renter},
		"booking.confirmed.renter":             {booking(event.BookingConfirmed, nil), renter},
		"booking.confirmed.owner":              {booking(event.BookingConfirmed, nil), owner},
		"booking.cancelled.renter_by_renter":   {booking(event.BookingCancelled, func(d *event.Data) { d.CancelledBy, d.RefundPending = "renter", true }), renter},
		"booking.cancelled.owner_by_renter":    {booking(event.BookingCancelled, func(d *event.Data) { d.CancelledBy, d.RefundPending = "renter", true }), owner},
		"booking.cancelled.renter_by_owner":    {booking(event.BookingCancelled, func(d *event.Data) { d.CancelledBy = "owner" }), renter},
		"booking.cancelled.owner_by_system":    {booking(event.BookingCancelled, nil), owner},
		"booking.expired.renter":               {booking(event.BookingExpired, func(d *event.Data) { d.PayBy = &payBy }), renter},
		"booking.expired.owner":                {booking(event.BookingExpired, func(d *event.Data) { d.PayBy = &payBy }), owner},
		"booking.refunded.renter":              {booking(event.BookingRefunded, nil), renter},
		"booking.refunded.owner":               {booking(event.BookingRefunded, nil), owner},
		"booking.disputed.owner":               {booking(event.BookingDisputed, nil), owner},
		"booking.disputed.operators":           {booking(event.BookingDisputed, nil), ops},
		"booking.dispute_closed.owner_won":     {booking(event.BookingDisputeClosed, func(d *event.Data) { d.Outcome = event.DisputeWon }), owner},
		"booking.dispute_closed.owner_lost":    {booking(event.BookingDisputeClosed, func(d *event.Data) { d.Outcome = event.DisputeLost }), owner},
		"booking.dispute_closed.operators":     {booking(event.BookingDisputeClosed, func(d *event.Data) { d.Outcome = event.DisputeLost }), ops},
		"payment.failed.renter":                {booking(event.PaymentFailed, func(d *event.Data) { d.PayBy, d.Reason = &payBy, "card_declined" }), renter},
		"payment.failed.renter_after_expiry":   {booking(event.PaymentFailed, func(d *event.Data) { d.Reason = "do_not_honor" }), renter},
		"upload.ready.owner":                   {event.Event{ID: "e-0002", Type: event.UploadReady, SubjectType: event.SubjectUpload, SubjectID: "up-1", OccurredAt: at, Data: event.Data{OwnerID: "u-owner", UploadID: "up-1", UploadKind: "image"}}, owner},
		"upload.failed.owner":                  {event.Event{ID: "e-0003", Type: event.UploadFailed, SubjectType: event.SubjectUpload, SubjectID: "up-2", OccurredAt: at, Data: event.Data{OwnerID: "u-owner", UploadID: "up-2", UploadKind: "image", Reason: "the file is not an image we can read"}}, owner},
		"payout.failed.owner":                  {event.Event{ID: "e-0004", Type: event.PayoutFailed, SubjectType: event.SubjectPayout, SubjectID: "po_1", OccurredAt: at, Data: event.Data{OwnerID: "u-owner", PayoutID: "po_1", StripeAccountID: "acct_1", Amount: 123456, Currency: "USD", Reason: "account_closed"}}, owner},
		"payout.failed.operators":              {event.Event{ID: "e-0004", Type: event.PayoutFailed, SubjectType: event.SubjectPayout, SubjectID: "po_1", OccurredAt: at, Data: event.Data{OwnerID: "u-owner", PayoutID: "po_1", StripeAccountID: "acct_1", Amount: 123456, Currency: "USD", Reason: "account_closed"}}, ops},
		"account.restricted.owner":             {event.Event{ID: "e-0005", Type: event.AccountRestricted, SubjectType: event.SubjectAccount, SubjectID: "u-owner", OccurredAt: at, Data: event.Data{OwnerID: "u-owner", StripeAccountID: "acct_1", ChargesEnabled: ptr(true), PayoutsEnabled: ptr(false)}}, owner},
		"account.restricted.operators":         {event.Event{ID: "e-0005", Type: event.AccountRestricted, SubjectType: event.SubjectAccount, SubjectID: "u-owner", OccurredAt: at, Data: event.Data{OwnerID: "u-owner", StripeAccountID: "acct_1", ChargesEnabled: ptr(false), PayoutsEnabled: ptr(false)}}, ops},
		"booking.confirmed.renter_no_name_kwd": {booking(event.BookingConfirmed, func(d *event.Data) { d.Currency, d.Amount = "KWD", 1500 }), notify.Recipient{Role: event.Renter}},
	}
	return out
}

// TestGolden renders every event type for every role it concerns and
// compares subject, summary, text and HTML with testdata/*.golden (go test
// ./notify -run TestGolden -update rewrites them).
func TestGolden(t *testing.T) {
	r, err := notify.New("https://portal.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	covered := map[event.Role]map[event.Type]bool{}
	for name, c := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			got, err := r.Render(c.ev, c.to)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(got.Text, "<no value>") || strings.Contains(got.HTML, "<no value>") {
				t.Fatalf("a value is missing:\n%s", got.Text)
			}
			if sum, err := r.Summary(c.ev, c.to); err != nil || sum.Subject != got.Subject || sum.Summary != got.Summary ||
				sum.Text != "" || sum.HTML != "" {
				t.Fatalf("Summary = %+v, %v; want Render's subject and summary alone", sum, err)
			}
			doc := "Subject: " + got.Subject + "\nSummary: " + got.Summary + "\n\n--- text ---\n" + got.Text + "\n--- html ---\n" + got.HTML
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if doc != string(want) {
				t.Errorf("%s differs from its golden file (run with -update after checking):\n%s", name, doc)
			}
		})
		if covered[c.to.Role] == nil {
			covered[c.to.Role] = map[event.Type]bool{}
		}
		covered[c.to.Role][c.ev.Type] = true
	}
	// Every (type, role) of every audience has a golden file.
	for _, typ := range event.Types {
		for _, d := range event.Audience(typ) {
			if !covered[d.Role][typ] {
				t.Errorf("no golden case for %s to %s", typ, d.Role)
			}
		}
	}
}

func TestMoney(t *testing.T) {
	for _, c := range []struct {
		minor int64
		cur   string
		want  string
	}{
		{0, "EUR", "EUR 0.00"},
		{5, "EUR", "EUR 0.05"},
		{123456, "eur", "EUR 1,234.56"},
		{100000000, "USD", "USD 1,000,000.00"},
		{-250, "GBP", "GBP -2.50"},
		{500, "JPY", "JPY 500"},
		{1234567, "KRW", "KRW 1,234,567"},
		{1500, "KWD", "KWD 1.500"},
		{7, "BHD", "BHD 0.007"},
	} {
		if got := notify.Money(c.minor, c.cur); got != c.want {
			t.Errorf("Money(%d, %s) = %q, want %q", c.minor, c.cur, got, c.want)
		}
	}
}

func TestNewRefusesRelativeBase(t *testing.T) {
	if _, err := notify.New("/relative"); err == nil {
		t.Fatal("a relative base URL was accepted")
	}
}
