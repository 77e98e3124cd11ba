// Package notify renders domain events into messages: for each event type
// one template (templates/<type>.tmpl) defines the subject, the one-line
// summary of an in-app notification, and the opening and closing
// paragraphs, with wording per recipient role; two layouts wrap them into
// the plain-text and the HTML (html/template, so every value is escaped)
// parts of an email, with the facts of the event in between. Amounts are
// rendered from minor units with their currency's decimals; booking dates
// are the listing's civil dates and times are shown in the listing's time
// zone (UTC when it has none), always with the zone stated; links start
// from the configured public base URL. No I/O.
package notify

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"net/url"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/rentalportal/portal/event"
)

//go:embed templates
var templates embed.FS

// Recipient is who a message is for: their role in the event and, for a
// user, their name for the greeting.
type Recipient struct {
	Role event.Role
	Name string
}

// Content is a rendered message.
type Content struct {
	Subject string
	// Summary is the one-line body of an in-app notification.
	Summary string
	Text    string
	HTML    string
}

// Renderer renders events; safe for concurrent use.
type Renderer struct {
	base  *url.URL
	sets  map[event.Type]templateSet
	brand string
}

type templateSet struct {
	text *texttemplate.Template
	html *htmltemplate.Template
}

// New parses the templates of every event type. baseURL is the public base
// URL links start from (PUBLIC_BASE_URL).
func New(baseURL string) (*Renderer, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("notify: base URL %q is not an absolute URL", baseURL)
	}
	r := &Renderer{base: u, sets: map[event.Type]templateSet{}, brand: "Rental Portal"}
	for _, t := range event.Types {
		file := "templates/" + string(t) + ".tmpl"
		tt, err := texttemplate.New("").Option("missingkey=error").Funcs(funcs).
			ParseFS(templates, "templates/layout.txt.tmpl", file)
		if err != nil {
			return nil, fmt.Errorf("notify: %s text templates: %w", t, err)
		}
		ht, err := htmltemplate.New("").Option("missingkey=error").Funcs(funcs).
			ParseFS(templates, "templates/layout.html.tmpl", file)
		if err != nil {
			return nil, fmt.Errorf("notify: %s html templates: %w", t, err)
		}
		for _, name := range []string{"subject", "summary", "intro", "outro"} {
			if tt.Lookup(name) == nil {
				return nil, fmt.Errorf("notify: %s defines no %q", file, name)
			}
		}
		r.sets[t] = templateSet{text: tt, html: ht}
	}
	return r, nil
}

// summary renders the one-line subject and summary of a template set.
func summary(set templateSet, v View) (Content, error) {
	var c Content
	var err error
	if c.Subject, err = execText(set.text, "subject", v); err != nil {
		return c, err
	}
	c.Subject = oneLine(c.Subject)
	if c.Summary, err = execText(set.text, "summary", v); err != nil {
		return c, err
	}
	c.Summary = oneLine(c.Summary)
	return c, nil
}

// Summary renders only the Subject and Summary of Render (an in-app
// notification needs no email body).
func (r *Renderer) Summary(ev event.Event, to Recipient) (Content, error) {
	set, ok := r.sets[ev.Type]
	if !ok {
		return Content{}, fmt.Errorf("notify: no template for event type %q", ev.Type)
	}
	return summary(set, r.view(ev, to))
}

var funcs = map[string]any{
	"deref": func(b *bool) bool { return b != nil && *b },
}

// Render renders an event for one recipient.
func (r *Renderer) Render(ev event.Event, to Recipient) (Content, error) {
	set, ok := r.sets[ev.Type]
	if !ok {
		return Content{}, fmt.Errorf("notify: no template for event type %q", ev.Type)
	}
	v := r.view(ev, to)
	c, err := summary(set, v)
	if err != nil {
		return c, err
	}
	// The text part's paragraphs are one line each: mail clients wrap them,
	// and an amount or a date is never cut in two.
	intro, err := execText(set.text, "intro", v)
	if err != nil {
		return c, err
	}
	outro, err := execText(set.text, "outro", v)
	if err != nil {
		return c, err
	}
	v.IntroText, v.OutroText = oneLine(intro), oneLine(outro)
	if c.Text, err = execText(set.text, "text", v); err != nil {
		return c, err
	}
	var b bytes.Buffer
	if err := set.html.ExecuteTemplate(&b, "html", v); err != nil {
		return c, fmt.Errorf("notify: %s html: %w", ev.Type, err)
	}
	c.HTML = b.String()
	return c, nil
}

func execText(t *texttemplate.Template, name string, v any) (string, error) {
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, name, v); err != nil {
		return "", fmt.Errorf("notify: %s: %w", name, err)
	}
	return b.String(), nil
}

// oneLine collapses whitespace: subjects and summaries are one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Fact is one labelled value of a message ("Dates", "Total").
type Fact struct {
	Label string
	Value string
}

// View is what the templates see.
type View struct {
	Brand string
	Event event.Event
	D     event.Data
	Role  event.Role
	// IsRenter, IsOwner, IsOperator: the recipient's role, for wording.
	IsRenter, IsOwner, IsOperator bool
	// Name is the recipient's name for the greeting ("" → none).
	Name string
	// Listing is the listing's title, or "your booking" when unknown.
	Listing    string
	Start, End string // "Mon 2 Mar 2026"
	Nights     int
	Amount     string // "EUR 150.00"
	PayBy      string // with its zone
	Zone       string // the listing's zone name, "UTC" by default
	Reason     string // a failure or dispute reason in words
	Kind       string // an upload's kind: image or document
	Facts      []Fact
	// IntroText and OutroText are the paragraphs of the text part.
	IntroText, OutroText string
	Link                 string
	LinkLabel            string
	// NotificationsLink lists the user's notifications.
	NotificationsLink string
}

func (r *Renderer) view(ev event.Event, to Recipient) View {
	d := ev.Data
	loc := location(d.TimeZone)
	v := View{Brand: r.brand, Event: ev, D: d, Role: to.Role, Name: to.Name,
		IsRenter: to.Role == event.Renter, IsOwner: to.Role == event.Owner, IsOperator: to.Role == event.Operators,
		Listing: d.ListingTitle, Start: civilDate(d.StartDate), End: civilDate(d.EndDate),
		Nights: nights(d.StartDate, d.EndDate), Zone: loc.String(), Kind: d.UploadKind,
		NotificationsLink: r.link("/api/v1/notifications")}
	if v.Listing == "" {
		v.Listing = "your booking"
	}
	if v.Kind == "" {
		v.Kind = "file"
	}
	if d.Currency != "" {
		v.Amount = Money(d.Amount, d.Currency)
	}
	if d.PayBy != nil {
		v.PayBy = instant(*d.PayBy, loc)
	}
	v.Reason = reasonText(ev.Type, d.Reason)
	switch ev.SubjectType {
	case event.SubjectBooking:
		v.Link, v.LinkLabel = r.link("/api/v1/bookings/"+url.PathEscape(ev.SubjectID)), "View the booking"
	case event.SubjectUpload:
		v.Link, v.LinkLabel = r.link("/api/v1/upload/"+url.PathEscape(ev.SubjectID)), "View the upload"
	default:
		v.Link, v.LinkLabel = v.NotificationsLink, "See your notifications"
	}
	v.Facts = facts(ev, v, loc)
	return v
}

// link is an absolute URL of a path under the public base URL. The paths
// are the API's resources: there is no web front end yet; when there is,
// this is the one place to point links at it.
func (r *Renderer) link(path string) string { return r.base.String() + path }

// facts lists what the message states besides its paragraphs, in a fixed
// order: what the event has. Operators also get the identifiers they look
// things up by.
func facts(ev event.Event, v View, loc *time.Location) []Fact {
	d := ev.Data
	var f []Fact
	add := func(label, value string) {
		if value != "" {
			f = append(f, Fact{label, value})
		}
	}
	add("Listing", d.ListingTitle)
	if d.StartDate != "" && d.EndDate != "" {
		n := "nights"
		if v.Nights == 1 {
			n = "night"
		}
		add("Check-in", v.Start)
		add("Check-out", v.End)
		add("Length", fmt.Sprintf("%d %s (dates at the listing, %s time)", v.Nights, n, v.Zone))
	}
	switch {
	case ev.Type == event.PayoutFailed:
		add("Payout", v.Amount)
	case ev.Type == event.BookingRefunded, ev.Type == event.BookingDisputeClosed && d.Outcome == event.DisputeLost:
		add("Refunded", v.Amount)
	case d.Currency != "":
		add("Total", v.Amount)
	}
	if ev.Type == event.BookingCreated || ev.Type == event.PaymentFailed {
		add("Pay by", v.PayBy)
	}
	if ev.Type == event.BookingExpired {
		add("Payment was due", v.PayBy)
	}
	if d.Outcome != "" {
		add("Outcome", d.Outcome)
	}
	if d.ChargesEnabled != nil {
		add("Charges", enabled(*d.ChargesEnabled))
	}
	if d.PayoutsEnabled != nil {
		add("Payouts", enabled(*d.PayoutsEnabled))
	}
	if d.ArrivalDate != nil {
		add("Expected arrival", instant(*d.ArrivalDate, loc))
	}
	add("Reason", v.Reason)
	add("Booking reference", d.BookingID)
	if v.IsOperator {
		add("Event", string(ev.Type)+" "+ev.ID)
		add("Owner", d.OwnerID)
		add("Renter", d.RenterID)
		add("Payout ID", d.PayoutID)
		add("Stripe account", d.StripeAccountID)
		add("Reason code", d.Reason)
	}
	add("Occurred", instant(ev.OccurredAt, loc))
	return f
}

func enabled(b bool) string {
	if b {
		return "enabled"
	}
	return "disabled"
}

// reasonTexts put machine reasons (Stripe's codes) into words.
var reasonTexts = map[string]string{
	"card_declined":           "the card was declined",
	"insufficient_funds":      "insufficient funds",
	"expired_card":            "the card has expired",
	"incorrect_cvc":           "the security code was incorrect",
	"incorrect_number":        "the card number was incorrect",
	"processing_error":        "the card could not be processed",
	"authentication_required": "the bank asked for authentication that was not completed",
	"account_closed":          "the bank account is closed",
	"no_account":              "the bank account does not exist",
	"invalid_account_number":  "the bank account number is invalid",
	"account_frozen":          "the bank account is frozen",
	"bank_account_restricted": "the bank account does not accept this payout",
	"could_not_process":       "the bank could not process the payout",
	"debit_not_authorized":    "the bank refused the transfer",
	"fraudulent":              "the cardholder says they did not authorize the payment",
	"product_not_received":    "the cardholder says the rental was not provided",
	"duplicate":               "the cardholder says they were charged twice",
	"subscription_canceled":   "the cardholder says they cancelled",
	"general":                 "unspecified by the bank",
}

// reasonText puts a reason in words: a known code, or an upload's
// failure reason as written (already meant for people), or the code itself.
func reasonText(t event.Type, reason string) string {
	if s, ok := reasonTexts[reason]; ok {
		return s
	}
	if t == event.UploadFailed {
		return reason
	}
	return strings.ReplaceAll(reason, "_", " ")
}
