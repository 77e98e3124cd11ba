// Package web is the operator console: Asynqmon under /monitoring and a
// landing page that links the API docs, dashboard, metrics and probes.
package web

import (
	"net/http"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
)

// RootPath is where the dashboard is mounted.
const RootPath = "/monitoring"

// Config is what the console takes from the platform's configuration.
type Config struct {
	Version string
	Role    string
}

// Dashboard serves Asynqmon under RootPath.
type Dashboard struct {
	mon *asynqmon.HTTPHandler
}

// NewDashboard returns the dashboard for the Redis that holds the queues.
func NewDashboard(cfg Config, redis asynq.RedisConnOpt) *Dashboard {
	return &Dashboard{mon: asynqmon.New(asynqmon.Options{RootPath: RootPath, RedisConnOpt: redis})}
}

// ServeHTTP implements http.Handler.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.mon.ServeHTTP(w, r) }

// Close releases the dashboard's Redis connections.
func (d *Dashboard) Close() error { return d.mon.Close() }
