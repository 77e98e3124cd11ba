// Package ratelimit keeps request rates and temporary blocks in Redis, so
// that they hold across every API replica: GCRA limits (go-redis/redis_rate's
// algorithm and keys) per subject and policy, a block list with expiry, and
// the brake on failed logins. Every request is counted in Redis, exactly;
// what is shared between concurrent requests is the round trip (batch.go),
// not the count. It imports nothing of ours; the HTTP layer decides which
// policy and subject a request has, and what to answer.
package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limit is a rate: Count events per Period, with bursts of up to Burst at
// once (GCRA: one event is earned back every Period/Count). The zero Limit
// is "off": nothing is limited.
//
// Its text form, used in configuration, is COUNT/PERIOD[:BURST]: "60/m",
// "300/m:50", "5/10s", "1/30s". PERIOD is s, m, h or a Go duration; BURST
// defaults to COUNT. "off" (or an empty string) is the zero Limit.
type Limit struct {
	Count  int
	Period time.Duration
	Burst  int
}

// Off reports whether the limit is disabled.
func (l Limit) Off() bool { return l.Count <= 0 }

// String returns the text form.
func (l Limit) String() string {
	if l.Off() {
		return "off"
	}
	s := strconv.Itoa(l.Count) + "/" + fmtPeriod(l.Period)
	if l.Burst != l.Count {
		s += ":" + strconv.Itoa(l.Burst)
	}
	return s
}

// MarshalText implements encoding.TextMarshaler.
func (l Limit) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (the configuration
// parser uses it).
func (l *Limit) UnmarshalText(b []byte) error {
	v, err := ParseLimit(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// ParseLimit parses COUNT/PERIOD[:BURST] or "off".
func ParseLimit(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "off") {
		return Limit{}, nil
	}
	rate, burst, hasBurst := strings.Cut(s, ":")
	count, period, err := parseRate(rate)
	if err != nil {
		return Limit{}, fmt.Errorf("%q: %w (want COUNT/PERIOD[:BURST], e.g. 60/m or 300/m:50, or off)", s, err)
	}
	l := Limit{Count: count, Period: period, Burst: count}
	if hasBurst {
		b, err := strconv.Atoi(burst)
		if err != nil || b < 1 || b > 1_000_000 {
			return Limit{}, fmt.Errorf("%q: burst must be a whole number from 1 to 1000000", s)
		}
		l.Burst = b
	}
	return l, nil
}

// Threshold is a count of events in a fixed window ("10/15m": ten within
// fifteen minutes), after which something happens (a block, a log line).
// Its text form is COUNT/WINDOW, or "off". The zero Threshold is off.
type Threshold struct {
	Count  int
	Window time.Duration
}

// Off reports whether the threshold is disabled.
func (t Threshold) Off() bool { return t.Count <= 0 }

// String returns the text form.
func (t Threshold) String() string {
	if t.Off() {
		return "off"
	}
	return strconv.Itoa(t.Count) + "/" + fmtPeriod(t.Window)
}

// MarshalText implements encoding.TextMarshaler.
func (t Threshold) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *Threshold) UnmarshalText(b []byte) error {
	v, err := ParseThreshold(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// ParseThreshold parses COUNT/WINDOW or "off".
func ParseThreshold(s string) (Threshold, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "off") {
		return Threshold{}, nil
	}
	count, window, err := parseRate(s)
	if err != nil {
		return Threshold{}, fmt.Errorf("%q: %w (want COUNT/WINDOW, e.g. 10/15m, or off)", s, err)
	}
	if window < time.Second {
		return Threshold{}, fmt.Errorf("%q: window must be at least 1s", s)
	}
	return Threshold{Count: count, Window: window}, nil
}

func parseRate(s string) (int, time.Duration, error) {
	c, p, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("no /")
	}
	count, err := strconv.Atoi(strings.TrimSpace(c))
	if err != nil || count < 1 || count > 1_000_000 {
		return 0, 0, fmt.Errorf("count must be a whole number from 1 to 1000000")
	}
	var period time.Duration
	switch p = strings.TrimSpace(p); p {
	case "s":
		period = time.Second
	case "m":
		period = time.Minute
	case "h":
		period = time.Hour
	case "d":
		period = 24 * time.Hour
	default:
		period, err = time.ParseDuration(p)
		if err != nil {
			return 0, 0, fmt.Errorf("period must be s, m, h, d or a duration like 10s")
		}
	}
	if period < time.Millisecond || period > 7*24*time.Hour {
		return 0, 0, fmt.Errorf("period must be from 1ms to 168h")
	}
	return count, period, nil
}

func fmtPeriod(d time.Duration) string {
	switch d {
	case time.Second:
		return "s"
	case time.Minute:
		return "m"
	case time.Hour:
		return "h"
	case 24 * time.Hour:
		return "d"
	}
	return d.String()
}
