// Command rentalportal is the Rental Portal platform: one binary with one
// subcommand per role (all, api, worker, scheduler, dashboard) plus migrate
// and stripe-trigger.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "rentalportal:", err)
		os.Exit(1)
	}
}
