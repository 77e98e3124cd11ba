package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal"
	"github.com/rentalportal/portal/booking"
	"github.com/rentalportal/portal/payments"
	"github.com/rentalportal/portal/store"
	"github.com/rentalportal/portal/tasks"
)

// BookingView is a booking as the API shows it.
type BookingView struct {
	ID          string         `json:"id"`
	ListingID   string         `json:"listing_id"`
	RenterID    string         `json:"renter_id"`
	OwnerID     string         `json:"owner_id"`
	Status      booking.Status `json:"status"`
	StartDate   booking.Date   `json:"start_date"`
	EndDate     booking.Date   `json:"end_date"`
	TotalAmount int64          `json:"total_amount"`
	Currency    string         `json:"currency"`
	ExpiresAt   time.Time      `json:"expires_at"`
	Payment     *PaymentView   `json:"payment"`
	History     []HistoryView  `json:"history"`
	CreatedAt   time.Time      `json:"created_at"`
	UpdatedAt   time.Time      `json:"updated_at"`
}

// PaymentView is the booking's PaymentIntent, for the client to confirm
// (null until the intent exists).
type PaymentView struct {
	PaymentIntentID string `json:"payment_intent_id"`
	ClientSecret    string `json:"client_secret,omitempty"`
	Status          string `json:"status"`
}

// HistoryView is one transition of a booking; from is null on the first.
type HistoryView struct {
	From      *string   `json:"from"`
	To        string    `json:"to"`
	Cause     string    `json:"cause"`
	Source    string    `json:"source"`
	SourceRef string    `json:"source_ref"`
	At        time.Time `json:"at"`
}

// paymentView shows a booking's payment to one caller: null until its
// PaymentIntent exists; the client secret only to the renter, who pays.
func paymentView(p *store.Payment, b *store.Booking, caller string) *PaymentView {
	if p == nil || p.PaymentIntentID == nil {
		return nil
	}
	v := &PaymentView{PaymentIntentID: *p.PaymentIntentID, Status: p.Status}
	if p.ClientSecret != nil && caller == b.RenterID {
		v.ClientSecret = *p.ClientSecret
	}
	return v
}

func bookingView(b *store.Booking, history []store.HistoryEntry, payment *PaymentView) BookingView {
	v := BookingView{ID: b.ID, ListingID: b.ListingID, RenterID: b.RenterID, OwnerID: b.OwnerID, Status: b.Status,
		StartDate: b.StartDate, EndDate: b.EndDate, TotalAmount: b.TotalAmount, Currency: b.Currency,
		ExpiresAt: b.ExpiresAt.UTC(), Payment: payment, History: make([]HistoryView, 0, len(history)),
		CreatedAt: b.CreatedAt.UTC(), UpdatedAt: b.UpdatedAt.UTC()}
	for _, h := range history {
		hv := HistoryView{To: h.ToStatus, Cause: h.Cause, Source: h.Source, SourceRef: h.SourceRef, At: h.CreatedAt.UTC()}
		if h.FromStatus != "" {
			from := h.FromStatus
			hv.From = &from
		}
		v.History = append(v.History, hv)
	}
	return v
}

type createBookingRequest struct {
	ListingID string `json:"listing_id" binding:"required,max=64"`
	StartDate string `json:"start_date" binding:"required,datetime=2006-01-02"`
	EndDate   string `json:"end_date" binding:"required,datetime=2006-01-02"`
}

// createBooking books a listing's dates: 201 with the booking, pending
// payment until it expires. In one transaction it reads the listing, prices
// the stay, writes the booking, its first history row and the outbox row of
// its booking:expire task; after the commit the task is published (or left
// to the sweeper). Overlapping dates are 409 booking_overlap; booking one's
// own or an inactive listing is 422 unprocessable. With an Idempotency-Key
// a retry gets the booking its first attempt made (replayBooking).
func (s *Server) createBooking(c *gin.Context) {
	var req createBookingRequest
	if err := bindJSON(c, &req); err != nil {
		renderError(c, err)
		return
	}
	key, err := idempotencyKey(c)
	if err != nil {
		renderError(c, err)
		return
	}
	p := principal(c)
	id := store.NewID()
	if key != "" {
		id = store.KeyedBookingID(p.UserID, key)
		// Before the date rules: a retry the next day still finds it.
		if s.replayBooking(c, id, req) {
			return
		}
	}
	start, end, err := s.bookingDates(req, booking.DateOf(time.Now(), time.UTC))
	if err != nil {
		renderError(c, err)
		return
	}
	ctx := c.Request.Context()
	expiresAt := store.Now().Add(s.cfg.BookingPaymentTTL)
	// asynq schedules by whole seconds and would run the task up to a second
	// before the deadline: round up.
	expire, err := tasks.EncodeAt(tasks.BookingExpire{BookingID: id}, expiresAt.Truncate(time.Second).Add(time.Second))
	if err != nil {
		renderError(c, err)
		return
	}
	msgs := []tasks.Message{expire}
	if s.deps.Payments != nil {
		// The fallback of the inline PaymentIntent below, written with the
		// booking so that no crash can leave a booking without one: it runs
		// after the inline attempt has had its chance, and finds nothing to
		// do when that attempt succeeded.
		intent, err := tasks.EncodeAt(tasks.PaymentIntent{BookingID: id}, time.Now().Add(s.cfg.StripeTimeout+paymentFallbackDelay))
		if err != nil {
			renderError(c, err)
			return
		}
		msgs = append(msgs, intent)
	}
	outbox := make([]store.OutboxMessage, len(msgs))
	for i, m := range msgs {
		outbox[i] = store.OutboxMessage(m)
	}
	b, history, err := s.bookings.Create(ctx, store.NewBooking{
		ID: id, ListingID: req.ListingID, RenterID: p.UserID, Start: start, End: end, ExpiresAt: expiresAt,
		Source: store.Source{Kind: store.SourceAPI, Ref: requestID(c), ActorID: p.UserID},
		Outbox: outbox,
	})
	if err != nil {
		// A retry that raced its first attempt finds it now, whatever its
		// own attempt ran into (the overlap with it, its taken ID, a
		// listing changed since).
		if key == "" || !s.replayBooking(c, id, req) {
			renderError(c, err)
		}
		return
	}
	s.publish(ctx, b.Outbox...) // msgs and the booking.created notify task
	// Committed. The payment step may fail or time out without undoing the
	// booking: the payment:intent task is its fallback.
	payment := s.startPayment(ctx, b)
	c.Header("Location", "/api/v1/bookings/"+b.ID)
	c.JSON(http.StatusCreated, bookingView(b, history, payment))
}

// headerIdempotencyKey makes POST /bookings safe to retry (Stripe's
// convention): requests of one caller with the same key make at most one
// booking, and each is answered with it.
const headerIdempotencyKey = "Idempotency-Key"

// idempotencyKey returns the request's Idempotency-Key ("" if it has none):
// one header of 1 to 255 visible ASCII characters.
func idempotencyKey(c *gin.Context) (string, error) {
	v := c.Request.Header.Values(headerIdempotencyKey)
	if len(v) == 0 {
		return "", nil
	}
	if len(v) > 1 || v[0] == "" || len(v[0]) > 255 || strings.ContainsFunc(v[0], func(r rune) bool { return r < '!' || r > '~' }) {
		return "", &portal.Error{Code: portal.EVALIDATION, Message: "the request has invalid fields",
			Details: []portal.FieldError{{Field: headerIdempotencyKey, Message: "must be one header of 1 to 255 visible ASCII characters"}}}
	}
	return v[0], nil
}

// replayBooking answers a POST /bookings whose Idempotency-Key names a
// booking that exists (id is store.KeyedBookingID): 201 with the booking as
// it is now, marked Idempotent-Replayed, if the request asks for its
// listing and dates, or 422 if the key was used for another request. It
// reports whether it answered: with no booking of that ID the request goes
// on (or its creation's error stands).
func (s *Server) replayBooking(c *gin.Context, id string, req createBookingRequest) bool {
	b, err := store.GetBooking(c.Request.Context(), s.deps.DB, id)
	switch {
	case portal.ErrorCode(err) == portal.ENOTFOUND:
		return false
	case err != nil:
		renderError(c, err)
		return true
	case b.RenterID != principal(c).UserID: // the ID is the renter's own: cannot happen
		return false
	case b.ListingID != req.ListingID || b.StartDate.String() != req.StartDate || b.EndDate.String() != req.EndDate:
		renderError(c, portal.Errorf(portal.EUNPROCESSABLE,
			"this %s was used for another booking request (%s, %s to %s)", headerIdempotencyKey, b.ListingID, b.StartDate, b.EndDate))
		return true
	}
	c.Header("Idempotent-Replayed", "true")
	c.Header("Location", "/api/v1/bookings/"+b.ID)
	s.respondBooking(c, b, http.StatusCreated)
	return true
}

// paymentFallbackDelay is how long after the inline attempt's timeout the
// payment:intent task runs.
const paymentFallbackDelay = 2 * time.Second

// startPayment creates the booking's PaymentIntent with Stripe: the one
// outbound call the API makes in a request, bounded by STRIPE_TIMEOUT and
// idempotent per booking (the worker's fallback uses the same key, so both
// get the same PaymentIntent). On failure the booking answers with a null
// payment; the fallback task creates it and the next GET shows it. Without a
// Stripe key bookings wait for a payment webhook (stripe-trigger).
func (s *Server) startPayment(ctx context.Context, b *store.Booking) *PaymentView {
	if s.deps.Payments == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.StripeTimeout)
	defer cancel()
	pay, err := store.EnsurePayment(ctx, s.deps.DB, b, "")
	if err == nil {
		var in payments.Intent
		if in, err = s.deps.Payments.CreateIntent(ctx, b.ID, b.TotalAmount, b.Currency); err == nil {
			if err = store.SetPaymentIntent(ctx, s.deps.DB, pay.ID, in.ID, in.ClientSecret); err == nil {
				pay.PaymentIntentID, pay.ClientSecret = &in.ID, &in.ClientSecret
				return paymentView(pay, b, b.RenterID)
			}
		}
	}
	s.deps.Log.WarnContext(ctx, "payment intent not created in the request; the payment:intent task will",
		"booking_id", b.ID, "err", err)
	return nil
}

// publishTimeout bounds the relay's enqueue in a request: a slow or
// unreachable Redis must not hold the answer, and the outbox row makes
// giving up safe (the sweeper relays it).
const publishTimeout = 2 * time.Second

// publish hands committed outbox messages to the relay. A client that hangs
// up must not cancel it, and a failure is left to the sweeper.
func (s *Server) publish(ctx context.Context, msgs ...tasks.Message) {
	if s.deps.Relay == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	s.deps.Relay.Publish(ctx, msgs...)
}

// bookingDates applies the date rules: the stay starts today (UTC) or later
// and at most BookingMaxAdvanceDays ahead, ends after it starts, and lasts at
// most BookingMaxNights nights (end_date is exclusive: the morning of
// departure).
func (s *Server) bookingDates(req createBookingRequest, today booking.Date) (start, end booking.Date, err error) {
	start, err1 := booking.ParseDate(req.StartDate)
	end, err2 := booking.ParseDate(req.EndDate)
	if err1 != nil || err2 != nil { // the binding rules already refused these
		return start, end, portal.Errorf(portal.EINVALID, "dates must be YYYY-MM-DD")
	}
	var d []portal.FieldError
	switch {
	case start.Before(today):
		d = append(d, portal.FieldError{Field: "start_date", Message: fmt.Sprintf("must be today (%s, UTC) or later", today)})
	case start.After(today.AddDays(s.cfg.BookingMaxAdvanceDays)):
		d = append(d, portal.FieldError{Field: "start_date", Message: fmt.Sprintf("must be at most %d days ahead", s.cfg.BookingMaxAdvanceDays)})
	}
	switch n := booking.Nights(start, end); {
	case n <= 0:
		d = append(d, portal.FieldError{Field: "end_date", Message: "must be after start_date"})
	case n > s.cfg.BookingMaxNights:
		d = append(d, portal.FieldError{Field: "end_date", Message: fmt.Sprintf("the stay must be at most %d nights", s.cfg.BookingMaxNights)})
	}
	if len(d) > 0 {
		return start, end, &portal.Error{Code: portal.EVALIDATION, Message: "the dates cannot be booked", Details: d}
	}
	return start, end, nil
}

// getBooking shows a booking with its history to its renter, the listing's
// owner, or an admin; to anyone else it does not exist (404).
func (s *Server) getBooking(c *gin.Context) {
	b, ok := s.visibleBooking(c)
	if !ok {
		return
	}
	s.respondBooking(c, b, http.StatusOK)
}

func (s *Server) respondBooking(c *gin.Context, b *store.Booking, status int) {
	ctx := c.Request.Context()
	h, err := store.BookingHistory(ctx, s.deps.DB, b.ID)
	if err != nil {
		renderError(c, err)
		return
	}
	pays, err := store.PaymentsByBooking(ctx, s.deps.DB, b.ID)
	if err != nil {
		renderError(c, err)
		return
	}
	c.JSON(status, bookingView(b, h, paymentView(pays[b.ID], b, principal(c).UserID)))
}

// visibleBooking loads the booking of the path if the caller may see it.
func (s *Server) visibleBooking(c *gin.Context) (*store.Booking, bool) {
	b, err := store.GetBooking(c.Request.Context(), s.deps.DB, c.Param("id"))
	p := principal(c)
	if err == nil && b.RenterID != p.UserID && b.OwnerID != p.UserID && !p.IsAdmin() {
		err = portal.Errorf(portal.ENOTFOUND, "booking not found")
	}
	if err != nil {
		renderError(c, notFound(err, "booking"))
		return nil, false
	}
	return b, true
}

// listBookings lists the caller's bookings as renter, or with ?as=owner the
// bookings of the caller's listings; ?status= narrows to one state.
func (s *Server) listBookings(c *gin.Context) {
	page, err := parsePage(c)
	if err != nil {
		renderError(c, err)
		return
	}
	me := principal(c).UserID
	var f store.BookingFilter
	switch c.DefaultQuery("as", "renter") {
	case "renter":
		f.RenterID = me
	case "owner":
		f.OwnerID = me
	default:
		renderError(c, invalidParam("as", "must be renter or owner"))
		return
	}
	if st := booking.Status(c.Query("status")); st != "" {
		if !st.Valid() {
			renderError(c, invalidParam("status", "is not a booking status"))
			return
		}
		f.Status = st
	}
	ctx := c.Request.Context()
	rows, next, err := store.ListBookings(ctx, s.deps.DB, f, page)
	if err != nil {
		renderError(c, err)
		return
	}
	out, err := pageViews(ctx, s.deps.DB, rows, func(b *store.Booking) string { return b.ID }, store.BookingHistories,
		func(b *store.Booking, h []store.HistoryEntry) BookingView { return bookingView(b, h, nil) })
	if err != nil {
		renderError(c, err)
		return
	}
	ids := make([]string, len(rows))
	for i := range rows {
		ids[i] = rows[i].ID
	}
	pays, err := store.PaymentsByBooking(ctx, s.deps.DB, ids...)
	if err != nil {
		renderError(c, err)
		return
	}
	for i := range rows {
		out[i].Payment = paymentView(pays[rows[i].ID], &rows[i], me)
	}
	c.JSON(http.StatusOK, newList(out, page, next))
}

// cancelBooking lets the renter or the listing's owner cancel: a booking
// pending payment is simply cancelled; a paid (confirmed) one is cancelled
// and refunded through the outbox (booking:refund). Any other state is 409.
// An admin who is neither gets 403; anyone else 404.
func (s *Server) cancelBooking(c *gin.Context) {
	b, ok := s.visibleBooking(c)
	if !ok {
		return
	}
	p := principal(c)
	if b.RenterID != p.UserID && b.OwnerID != p.UserID {
		renderError(c, portal.Errorf(portal.EFORBIDDEN, "only the renter or the listing's owner can cancel a booking"))
		return
	}
	refund, err := tasks.Encode(tasks.BookingRefund{BookingID: b.ID})
	if err != nil {
		renderError(c, err)
		return
	}
	ctx := c.Request.Context()
	b, _, err = store.CancelBooking(ctx, s.deps.DB, b.ID,
		store.Source{Kind: store.SourceAPI, Ref: requestID(c), ActorID: p.UserID}, store.OutboxMessage(refund))
	if err != nil {
		renderError(c, err)
		return
	}
	s.publish(ctx, b.Outbox...) // the booking.cancelled notifications, and booking:refund if it was paid
	s.respondBooking(c, b, http.StatusOK)
}
