package booking

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"time"
)

// DateLayout is the wire and storage format of a Date.
const DateLayout = "2006-01-02"

// Date is a civil date (no time, no zone), stored as midnight UTC.
type Date struct{ t time.Time }

// ParseDate parses YYYY-MM-DD.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(DateLayout, s)
	if err != nil {
		return Date{}, fmt.Errorf("date %q is not YYYY-MM-DD", s)
	}
	return Date{t}, nil
}

// DateOf returns the civil date of t in loc.
func DateOf(t time.Time, loc *time.Location) Date {
	y, m, d := t.In(loc).Date()
	return Date{time.Date(y, m, d, 0, 0, 0, 0, time.UTC)}
}

// IsZero reports whether d is unset.
func (d Date) IsZero() bool { return d.t.IsZero() }

// String formats d as YYYY-MM-DD.
func (d Date) String() string { return d.t.Format(DateLayout) }

// Time returns midnight UTC of d.
func (d Date) Time() time.Time { return d.t }

// AddDays returns d moved by n days.
func (d Date) AddDays(n int) Date { return Date{d.t.AddDate(0, 0, n)} }

// Before reports whether d is before e.
func (d Date) Before(e Date) bool { return d.t.Before(e.t) }

// After reports whether d is after e.
func (d Date) After(e Date) bool { return d.t.After(e.t) }

// DaysUntil returns the number of days from d to e (negative if e is earlier).
func (d Date) DaysUntil(e Date) int { return int(e.t.Sub(d.t).Hours() / 24) }

// MarshalJSON writes "YYYY-MM-DD".
func (d Date) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads "YYYY-MM-DD".
func (d *Date) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("date must be a string YYYY-MM-DD")
	}
	p, err := ParseDate(s)
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// Value stores d as YYYY-MM-DD text (a DATE on PostgreSQL).
func (d Date) Value() (driver.Value, error) { return d.String(), nil }

// Scan reads a DATE (PostgreSQL: time.Time) or YYYY-MM-DD text (SQLite).
func (d *Date) Scan(src any) error {
	switch v := src.(type) {
	case time.Time:
		y, m, day := v.Date()
		d.t = time.Date(y, m, day, 0, 0, 0, 0, time.UTC)
		return nil
	case string:
		p, err := ParseDate(v)
		*d = p
		return err
	case []byte:
		p, err := ParseDate(string(v))
		*d = p
		return err
	}
	return fmt.Errorf("cannot scan %T into booking.Date", src)
}

// Nights is the number of nights (billable days) of a stay from start to
// end, end exclusive.
func Nights(start, end Date) int { return start.DaysUntil(end) }

// Price is the total of a stay in minor units: nights × price per day. It
// fails on a non-positive stay or price, or on overflow.
func Price(pricePerDay int64, start, end Date) (int64, error) {
	n := int64(Nights(start, end))
	if n <= 0 {
		return 0, fmt.Errorf("end date must be after start date")
	}
	if pricePerDay <= 0 {
		return 0, fmt.Errorf("price per day must be positive")
	}
	if pricePerDay > (1<<62)/n {
		return 0, fmt.Errorf("total price overflows")
	}
	return n * pricePerDay, nil
}
