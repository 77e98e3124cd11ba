package worker

import "github.com/rentalportal/portal/tasks"

// Entry is one cron entry: a task type enqueued at each tick of a schedule.
type Entry struct {
	Type string
	// Spec is a cron expression, with an optional leading seconds field.
	// Ticks are aligned to the wall clock, so every scheduler replica
	// computes the same tick times and so the same task IDs.
	Spec string
	// Env names the variable that overrides Spec.
	Env string
}

// Schedule is every cron entry of the platform.
var Schedule = []Entry{
	// Activate bookings whose start came and complete those whose end passed.
	{Type: tasks.TypeBookingsTick, Spec: "* * * * *", Env: "CRON_BOOKINGS_TICK"},
	// Re-enqueue what the database says is outstanding (lost to a crash or a
	// flushed Redis).
	{Type: tasks.TypeMaintenanceSweep, Spec: "* * * * *", Env: "CRON_MAINTENANCE_SWEEP"},
	// Repair drift between Stripe and our payments.
	{Type: tasks.TypePaymentsReconcile, Spec: "*/15 * * * *", Env: "CRON_PAYMENTS_RECONCILE"},
	// Delete abandoned uploads, purge old relayed outbox rows and processed events.
	{Type: tasks.TypeMaintenanceCleanup, Spec: "17 * * * *", Env: "CRON_MAINTENANCE_CLEANUP"},
}
