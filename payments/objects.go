package payments

import (
	"encoding/json"
	"fmt"
)

// Ref is a reference to another Stripe object: its ID whether Stripe sent
// the ID alone or the expanded object.
type Ref string

// UnmarshalJSON accepts "id", {"id": "..."} and null.
func (r *Ref) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*r = ""
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*r = Ref(s)
		return nil
	}
	var o struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	*r = Ref(o.ID)
	return nil
}

// Object is the union of the fields the platform reads from the objects its
// events carry (PaymentIntent, Charge, Refund, Dispute, Payout, Transfer,
// Account, Subscription): Stripe's objects share field names, so one
// decoder serves them all.
type Object struct {
	ID       string            `json:"id"`
	Object   string            `json:"object"`
	Status   string            `json:"status"`
	Created  int64             `json:"created"`
	Livemode bool              `json:"livemode"`
	Metadata map[string]string `json:"metadata"`

	Amount         int64  `json:"amount"`
	AmountReceived int64  `json:"amount_received"`
	AmountRefunded int64  `json:"amount_refunded"`
	AmountReversed int64  `json:"amount_reversed"`
	Currency       string `json:"currency"`

	// PaymentIntent and Charge link charges, refunds and disputes to the
	// payment; LatestCharge is the PaymentIntent's charge.
	PaymentIntent Ref  `json:"payment_intent"`
	Charge        Ref  `json:"charge"`
	LatestCharge  Ref  `json:"latest_charge"`
	Paid          bool `json:"paid"`
	Refunded      bool `json:"refunded"`
	Refunds       *struct {
		Data []RefundObject `json:"data"`
	} `json:"refunds"`

	// Disputes.
	Reason string `json:"reason"`

	// Payouts and transfers.
	ArrivalDate   int64  `json:"arrival_date"`
	FailureCode   string `json:"failure_code"`
	Destination   Ref    `json:"destination"`
	Reversed      bool   `json:"reversed"`
	TransferGroup string `json:"transfer_group"`

	// Connect accounts.
	ChargesEnabled bool `json:"charges_enabled"`
	PayoutsEnabled bool `json:"payouts_enabled"`

	// Subscriptions.
	Customer Ref `json:"customer"`
	Items    *struct {
		Data []struct {
			Price *struct {
				ID        string `json:"id"`
				LookupKey string `json:"lookup_key"`
			} `json:"price"`
		} `json:"data"`
	} `json:"items"`
	Plan *struct {
		ID string `json:"id"`
	} `json:"plan"`

	LastPaymentError *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"last_payment_error"`
	FailureMessage string `json:"failure_message"`
}

// RefundObject is one refund of a charge.
type RefundObject struct {
	ID       string `json:"id"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Status   string `json:"status"`
	Reason   string `json:"reason"`
	Created  int64  `json:"created"`
}

// BookingID is the booking the object names in its metadata, if any.
func (o Object) BookingID() string { return o.Metadata["booking_id"] }

// PlanID is a subscription's plan: the lookup key or ID of its first price.
func (o Object) PlanID() string {
	if o.Items != nil {
		for _, it := range o.Items.Data {
			if it.Price != nil {
				if it.Price.LookupKey != "" {
					return it.Price.LookupKey
				}
				return it.Price.ID
			}
		}
	}
	if o.Plan != nil {
		return o.Plan.ID
	}
	return ""
}

// ParseObject decodes an event's data.object.
func ParseObject(raw []byte) (Object, error) {
	var o Object
	if err := json.Unmarshal(raw, &o); err != nil {
		return Object{}, fmt.Errorf("%w: data.object: %v", ErrMalformedEvent, err)
	}
	return o, nil
}
