package main

import (
	"testing"
	"time"

	"github.com/rentalportal/portal/payments"
)

// TestTriggerEventsAreRealistic: every event stripe-trigger can send is an
// event of the pinned API version whose object has the type and the
// references the worker resolves it by.
func TestTriggerEventsAreRealistic(t *testing.T) {
	t.Parallel()
	o := triggerOptions{BookingID: "b-1", Amount: 4200, Currency: "eur", IntentID: "pi_1", ChargeID: "ch_1",
		Account: "acct_1", Customer: "cus_1", Plan: "price_1", Created: time.Unix(1_700_000_000, 0)}
	want := map[string]string{"payment_intent": "payment_intent", "charge": "charge", "dispute": "dispute", "payout": "payout",
		"transfer": "transfer", "account": "account", "subscription": "subscription"}
	for _, typ := range triggerEventTypes() {
		o.Event = typ
		b, id, err := buildTriggerEvent(o)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		ev, err := payments.ParseEvent(b)
		if err != nil || ev.ID != id || ev.Type != typ || !ev.SupportedVersion() || ev.ObjectID == "" {
			t.Fatalf("%s: %+v %v", typ, ev, err)
		}
		obj, err := payments.ParseObject(ev.Object)
		if err != nil || want[obj.Object] == "" {
			t.Fatalf("%s: object %+v %v", typ, obj, err)
		}
		switch obj.Object {
		case "payment_intent":
			if obj.BookingID() != "b-1" || obj.Amount != 4200 {
				t.Fatalf("%s: %+v", typ, obj)
			}
		case "charge", "dispute":
			if obj.PaymentIntent != "pi_1" || (obj.Object == "dispute" && obj.Charge != "ch_1") {
				t.Fatalf("%s: %+v", typ, obj)
			}
		}
	}
	o.Event = "charge.refunded"
	o.RefundAmount = 1000
	b, _, _ := buildTriggerEvent(o)
	ev, _ := payments.ParseEvent(b)
	obj, _ := payments.ParseObject(ev.Object)
	if obj.Refunded || obj.AmountRefunded != 1000 {
		t.Fatalf("partial refund %+v", obj)
	}
	if _, _, err := buildTriggerEvent(triggerOptions{Event: "nope"}); err == nil {
		t.Fatal("unknown event type accepted")
	}
	if u := webhookURL(":8080"); u != "http://localhost:8080/webhooks/stripe" {
		t.Fatal(u)
	}
}
