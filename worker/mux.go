package worker

import (
	"github.com/hibiken/asynq"

	"github.com/rentalportal/portal/tasks"
)

// Mux binds every task type of the contract to its handler, behind the
// middleware every task gets: identity in the logs, panic recovery, and
// permanent errors skipping retries.
func (w *Worker) Mux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.Use(w.observe, w.recoverPanic, w.classify)

	mux.HandleFunc(tasks.TypeImageThumbnail, w.thumbnail)
	mux.HandleFunc(tasks.TypeStripeEvent, w.handleStripeEvent)
	mux.HandleFunc(tasks.TypeBookingExpire, w.expireBooking)
	mux.HandleFunc(tasks.TypeBookingRefund, w.handleBookingRefund)
	mux.HandleFunc(tasks.TypePaymentIntent, w.handlePaymentIntent)
	mux.HandleFunc(tasks.TypePaymentsReconcile, w.handleReconcile)
	mux.HandleFunc(tasks.TypeBookingsTick, w.bookingsTick)
	mux.HandleFunc(tasks.TypeMaintenanceSweep, w.sweep)
	mux.HandleFunc(tasks.TypeMaintenanceCleanup, w.cleanup)
	mux.HandleFunc(tasks.TypeNotifyEvent, w.notifyEvent)
	mux.HandleFunc(tasks.TypeNotifyEmail, w.notifyEmail)
	mux.HandleFunc(tasks.TypeNotifyInApp, w.notifyInApp)
	return mux
}
