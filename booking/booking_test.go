package booking

import (
	"errors"
	"testing"
)

// TestNextEveryPair checks the whole (state, event) table: every pair not
// listed as legal must be refused, and each legal one must land where the
// design says.
func TestNextEveryPair(t *testing.T) {
	t.Parallel()
	legal := map[Status]map[Event]Status{
		PendingPayment: {PaymentSucceeded: Confirmed, Expire: Expired, Cancel: Cancelled, RefundSucceeded: Refunded},
		Confirmed:      {Start: Active, Cancel: Cancelled, DisputeOpened: Disputed, RefundSucceeded: Refunded},
		Active:         {End: Completed, DisputeOpened: Disputed, RefundSucceeded: Refunded},
		Completed:      {DisputeOpened: Disputed, RefundSucceeded: Refunded},
		Expired:        {PaymentSucceeded: Confirmed, RefundSucceeded: Refunded},
		Cancelled:      {RefundSucceeded: Refunded},
		Disputed:       {DisputeWon: Active, DisputeLost: Refunded}, // won: back to the state before (Active here)
		Refunded:       {},
	}
	for _, from := range Statuses {
		for _, ev := range Events {
			t.Run(string(from)+"/"+string(ev), func(t *testing.T) {
				got, err := Next(from, ev, Active)
				want, ok := legal[from][ev]
				if !ok {
					var ill *IllegalTransition
					if !errors.As(err, &ill) {
						t.Fatalf("Next(%s, %s) = %s, %v; want an IllegalTransition", from, ev, got, err)
					}
					if got != from {
						t.Fatalf("an illegal move must leave the state as it was, got %s", got)
					}
					return
				}
				if err != nil || got != want {
					t.Fatalf("Next(%s, %s) = %s, %v; want %s", from, ev, got, err, want)
				}
			})
		}
	}
}

func TestDisputeWonReturnsToStateBefore(t *testing.T) {
	t.Parallel()
	for _, before := range []Status{Confirmed, Active, Completed} {
		got, err := Next(Disputed, DisputeWon, before)
		if err != nil || got != before {
			t.Errorf("won dispute from %s: got %s, %v", before, got, err)
		}
	}
	// Unknown history falls back to confirmed, never to a terminal state.
	if got, _ := Next(Disputed, DisputeWon, ""); got != Confirmed {
		t.Errorf("won dispute with no history: got %s, want confirmed", got)
	}
}

func TestHoldsDatesMatchesOverlapConstraint(t *testing.T) {
	t.Parallel()
	hold := map[Status]bool{PendingPayment: true, Confirmed: true, Active: true, Disputed: true, Completed: true}
	for _, s := range Statuses {
		if s.HoldsDates() != hold[s] {
			t.Errorf("%s.HoldsDates() = %v, want %v", s, s.HoldsDates(), hold[s])
		}
	}
}

func TestPrice(t *testing.T) {
	t.Parallel()
	d := func(s string) Date {
		x, err := ParseDate(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	cases := []struct {
		name       string
		price      int64
		start, end string
		want       int64
		wantErr    bool
	}{
		{"one night", 2500, "2027-01-01", "2027-01-02", 2500, false},
		{"across a month and leap day", 1000, "2028-02-27", "2028-03-02", 4000, false},
		{"same day", 1000, "2027-01-01", "2027-01-01", 0, true},
		{"reversed", 1000, "2027-01-03", "2027-01-01", 0, true},
		{"zero price", 0, "2027-01-01", "2027-01-02", 0, true},
		{"overflow", 1 << 61, "2027-01-01", "2027-01-09", 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Price(c.price, d(c.start), d(c.end))
			if (err != nil) != c.wantErr || got != c.want {
				t.Fatalf("Price = %d, %v; want %d (err %v)", got, err, c.want, c.wantErr)
			}
		})
	}
}

func TestDateScanAndJSON(t *testing.T) {
	t.Parallel()
	var d Date
	if err := d.UnmarshalJSON([]byte(`"2027-12-31"`)); err != nil || d.String() != "2027-12-31" {
		t.Fatalf("unmarshal: %v %s", err, d)
	}
	for _, bad := range []string{`"2027-13-01"`, `"31/12/2027"`, `12`, `"2027-02-30"`} {
		if err := d.UnmarshalJSON([]byte(bad)); err == nil {
			t.Errorf("UnmarshalJSON(%s) accepted", bad)
		}
	}
	var s Date
	if err := s.Scan("2027-01-05"); err != nil || s.String() != "2027-01-05" {
		t.Fatalf("scan text: %v %s", err, s)
	}
	if err := s.Scan(d.Time()); err != nil || s.String() != "2027-12-31" {
		t.Fatalf("scan time: %v %s", err, s)
	}
}
