package event

import (
	"reflect"
	"testing"
)

func TestAddressees(t *testing.T) {
	t.Parallel()
	a := func(r Role, c Channel, id string) Addressee {
		return Addressee{Delivery: Delivery{Role: r, Channel: c}, RecipientID: id}
	}
	cases := []struct {
		name string
		ev   Event
		want []Addressee
	}{
		{"renter by both, owner in the app", Event{Type: BookingExpired, Data: Data{RenterID: "r", OwnerID: "o"}},
			[]Addressee{a(Renter, Email, "r"), a(Renter, InApp, "r"), a(Owner, InApp, "o")}},
		{"a role the data does not name is skipped", Event{Type: BookingConfirmed, Data: Data{RenterID: "r"}},
			[]Addressee{a(Renter, Email, "r"), a(Renter, InApp, "r")}},
		{"operators by email", Event{Type: PayoutFailed, Data: Data{OwnerID: "o"}},
			[]Addressee{a(Owner, Email, "o"), a(Owner, InApp, "o"), a(Operators, Email, OperatorsRecipient)}},
		{"one user in two roles hears once per channel", Event{Type: BookingConfirmed, Data: Data{RenterID: "u", OwnerID: "u"}},
			[]Addressee{a(Renter, Email, "u"), a(Renter, InApp, "u")}},
		{"nobody named", Event{Type: UploadReady}, nil},
		{"unknown type", Event{Type: "nonsense", Data: Data{OwnerID: "o"}}, nil},
	}
	for _, c := range cases {
		if got := c.ev.Addressees(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}
