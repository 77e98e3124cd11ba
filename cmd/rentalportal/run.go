package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `rentalportal — the Rental Portal job platform

Usage:
  rentalportal <command> [flags]

Roles (each runs until SIGINT/SIGTERM, then shuts down gracefully):
  all          API + worker + scheduler + dashboard in one process; with no
               DATABASE_URL / REDIS_URL / S3_BUCKET it uses an SQLite file,
               an in-process Redis and a local blob folder under DATA_DIR
  api          the HTTP API (needs REDIS_URL)
  worker       the task workers (needs REDIS_URL)
  scheduler    the cron scheduler; safe to run in several replicas
  dashboard    Asynqmon at /monitoring behind operator auth (DASHBOARD_ADDR)

Tools:
  admin            manage administrators: "admin create --email E --name N"
                   (password on stdin or from --password-env VAR), "admin promote --email E"
  migrate          apply the embedded schema migrations and exit
  stripe-trigger   send a signed test Stripe event to a running API
  healthcheck      exit 0 if a readiness probe answers 200 (for container
                   health checks; default: this machine's API)
  version          print the version

Configuration comes from the environment; see .env.example.
`

// run is the whole program: main only calls it, so tests can start the real
// thing with their own arguments, environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "--version":
		fmt.Fprintln(stdout, "rentalportal", version)
		return nil
	case "admin":
		return runAdmin(ctx, rest, getenv, os.Stdin, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, getenv, stdout, stderr)
	case "stripe-trigger":
		return runStripeTrigger(ctx, rest, getenv, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, rest, getenv, stdout)
	case roleAll, roleAPI, roleWorker, roleScheduler, roleDashboard:
		return serve(ctx, cmd, getenv, stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q (one of: %s)", cmd, strings.Join(
		[]string{roleAll, roleAPI, roleWorker, roleScheduler, roleDashboard, "migrate", "stripe-trigger", "healthcheck", "version"}, ", "))
}
