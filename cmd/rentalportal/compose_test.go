package main

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// configKeys returns every environment variable the Config struct reads.
func configKeys() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		if k := t.Field(i).Tag.Get("env"); k != "" && k != "-" {
			keys[k] = true
		}
	}
	return keys
}

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"../../docker-compose.yml"}, cli.WithName("rentalportal"),
		cli.WithEnv([]string{}), cli.WithDiscardEnvFile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

// TestComposeFile validates docker-compose.yml the way `docker compose
// config` would, and checks it against the program: every role is a
// service, each runs the right subcommand with an environment the Config
// struct accepts in production, health checks, dependencies and volumes.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	for _, name := range []string{"postgres", "redis", "s3", "stripe-mock", "migrate", "api", "worker", "scheduler", "dashboard"} {
		if _, err := p.GetService(name); err != nil {
			t.Errorf("service %s missing", name)
		}
	}
	keys := configKeys()
	roles := map[string]string{"migrate": "migrate", "api": roleAPI, "worker": roleWorker, "scheduler": roleScheduler, "dashboard": roleDashboard}
	for svc, role := range roles {
		t.Run(svc, func(t *testing.T) {
			s, err := p.GetService(svc)
			if err != nil {
				t.Fatal(err)
			}
			if s.Build == nil || s.Image == "" {
				t.Errorf("%s must build the platform image", svc)
			}
			if !slices.Equal([]string(s.Command), []string{role}) {
				t.Errorf("command = %v, want [%s]", s.Command, role)
			}
			env := map[string]string{}
			for k, v := range s.Environment {
				if !keys[k] {
					t.Errorf("environment variable %s is not read by the Config struct (typo?)", k)
				}
				if v == nil {
					t.Errorf("%s has no value", k)
					continue
				}
				env[k] = *v
			}
			cfg, err := loadConfig(func(k string) string { return env[k] })
			if err != nil {
				t.Fatalf("its environment does not pass start-up validation: %v", err)
			}
			if (role == roleDashboard || role == roleAPI) && len(cfg.operatorUsers) == 0 {
				t.Errorf("%s in production needs OPERATOR_USERS (the dashboard refuses to start without)", svc)
			}
			if !cfg.production() || cfg.embeddedDB() || cfg.embeddedRedis() || cfg.localBlobs() {
				t.Errorf("compose must run production mode on PostgreSQL, Redis and S3: %+v", cfg)
			}
			if !strings.Contains(cfg.DatabaseURL, "@postgres:5432/") || !strings.Contains(cfg.RedisURL, "redis:6379") ||
				!strings.Contains(cfg.S3Endpoint, "s3:7070") || !strings.Contains(cfg.StripeAPIBase, "stripe-mock:12111") {
				t.Errorf("URLs must point at the compose services: %s %s %s %s", cfg.DatabaseURL, cfg.RedisURL, cfg.S3Endpoint, cfg.StripeAPIBase)
			}
			if svc != "migrate" {
				if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0 {
					t.Fatalf("%s has no health check", svc)
				}
				test := strings.Join(s.HealthCheck.Test, " ")
				if !strings.Contains(test, "rentalportal healthcheck") || !strings.Contains(test, "/health/readiness") {
					t.Errorf("health check %q must probe readiness", test)
				}
				// The probe must hit the port the role listens on.
				port := map[string]string{roleAPI: portOf(cfg.HTTPAddr), roleDashboard: portOf(cfg.DashboardAddr),
					roleWorker: portOf(cfg.MetricsAddr), roleScheduler: portOf(cfg.MetricsAddr)}[role]
				if port == "" || !strings.Contains(test, ":"+port+"/") {
					t.Errorf("health check %q does not probe the role's port %q", test, port)
				}
				for _, dep := range []string{"migrate", "redis"} {
					if _, ok := s.DependsOn[dep]; !ok {
						t.Errorf("%s must depend on %s", svc, dep)
					}
				}
				if s.DependsOn["migrate"].Condition != types.ServiceConditionCompletedSuccessfully {
					t.Errorf("%s must wait for migrate to complete", svc)
				}
				if cfg.MigrateOnStart {
					t.Errorf("roles must not migrate on start when a migrate service exists")
				}
			} else if s.DependsOn["postgres"].Condition != types.ServiceConditionHealthy {
				t.Errorf("migrate must wait for a healthy postgres")
			}
		})
	}
	for _, svc := range []string{"postgres", "redis", "s3"} {
		s, _ := p.GetService(svc)
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s has no health check", svc)
		}
		if len(s.Volumes) == 0 || s.Volumes[0].Type != types.VolumeTypeVolume {
			t.Errorf("%s keeps its data in no named volume", svc)
		}
	}
}

func portOf(addr string) string {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return ""
	}
	return addr[i+1:]
}
