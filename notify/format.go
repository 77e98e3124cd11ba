package notify

import (
	"strconv"
	"strings"
	"time"

	// Listing time zones are IANA names; the production image (distroless)
	// has no zoneinfo of its own, so the binary carries it.
	_ "time/tzdata"
)

// minorUnits are the ISO 4217 exponents that are not 2: how many decimals
// an amount in minor units has. Zero-decimal currencies (JPY: ¥500 is 500)
// and three-decimal ones (KWD: 1.500 is 1500).
var minorUnits = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
	"RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}

// Exponent returns the number of decimals of a currency (2 unless listed).
func Exponent(currency string) int {
	if e, ok := minorUnits[strings.ToUpper(currency)]; ok {
		return e
	}
	return 2
}

// Money renders an amount in minor units with its currency's decimals and
// its ISO code, unambiguous in every language: "EUR 1,234.50", "JPY 12,000".
func Money(minor int64, currency string) string {
	cur := strings.ToUpper(currency)
	exp := Exponent(cur)
	neg := minor < 0
	u := uint64(minor)
	if neg {
		u = uint64(-minor)
	}
	digits := strconv.FormatUint(u, 10)
	if len(digits) <= exp {
		digits = strings.Repeat("0", exp-len(digits)+1) + digits
	}
	whole, frac := digits[:len(digits)-exp], digits[len(digits)-exp:]
	var b strings.Builder
	if cur != "" {
		b.WriteString(cur + " ")
	}
	if neg {
		b.WriteByte('-')
	}
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if exp > 0 {
		b.WriteString("." + frac)
	}
	return b.String()
}

// location returns the listing's zone, or UTC for "" or an unknown name.
func location(name string) *time.Location {
	if name == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return time.UTC
	}
	return loc
}

// civilDate renders a YYYY-MM-DD date as "Mon 2 Mar 2026" (as is if it does
// not parse).
func civilDate(s string) string {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return s
	}
	return d.Format("Mon 2 Jan 2006")
}

// nights counts the nights between two YYYY-MM-DD dates (0 if unknown).
func nights(start, end string) int {
	s, err1 := time.Parse(time.DateOnly, start)
	e, err2 := time.Parse(time.DateOnly, end)
	if err1 != nil || err2 != nil || !e.After(s) {
		return 0
	}
	return int(e.Sub(s).Hours() / 24)
}

// instant renders a time in loc with its zone stated: "Mon 2 Mar 2026,
// 14:30 CET (Europe/Paris)", or "..., 13:30 UTC".
func instant(t time.Time, loc *time.Location) string {
	s := t.In(loc).Format("Mon 2 Jan 2006, 15:04 MST")
	if name := loc.String(); name != "UTC" {
		s += " (" + name + ")"
	}
	return s
}
