package payments_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/rentalportal/portal/payments"
)

func eventJSON(id, version string, livemode bool) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"object":"event","type":"payment_intent.succeeded","api_version":%q,
		"created":1700000000,"livemode":%t,"data":{"object":{"id":"pi_1","object":"payment_intent",
		"metadata":{"booking_id":"b1"}}}}`, id, version, livemode))
}

func TestVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	v := payments.NewVerifier([]string{"whsec_old", " whsec_new "}, 300*time.Second, false)
	good := eventJSON("evt_1", payments.APIVersion, false)
	sign := func(p []byte, secret string, at time.Time) string {
		return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: p, Secret: secret, Timestamp: at}).Header
	}
	cases := []struct {
		name    string
		payload []byte
		header  string
		want    error
	}{
		{"first secret", good, sign(good, "whsec_old", now), nil},
		{"second secret (rotation)", good, sign(good, "whsec_new", now), nil},
		{"at the old edge", good, sign(good, "whsec_new", now.Add(-300*time.Second)), nil},
		{"at the future edge", good, sign(good, "whsec_new", now.Add(300*time.Second)), nil},
		{"wrong secret", good, sign(good, "whsec_other", now), payments.ErrBadSignature},
		{"tampered payload", eventJSON("evt_2", payments.APIVersion, false), sign(good, "whsec_old", now), payments.ErrBadSignature},
		{"stale", good, sign(good, "whsec_old", now.Add(-301*time.Second)), payments.ErrTimestampTooOld},
		{"future", good, sign(good, "whsec_old", now.Add(301*time.Second)), payments.ErrTimestampInFuture},
		{"no header", good, "", payments.ErrNoSignature},
		{"garbage header", good, "nonsense", payments.ErrNoSignature},
		{"no v1", good, fmt.Sprintf("t=%d,v0=abcd", now.Unix()), payments.ErrNoSignature},
		{"no timestamp", good, "v1=" + fmt.Sprintf("%064x", 1), payments.ErrNoSignature},
		{"livemode mismatch", eventJSON("evt_3", payments.APIVersion, true),
			sign(eventJSON("evt_3", payments.APIVersion, true), "whsec_old", now), payments.ErrLivemodeMismatch},
		{"signed garbage", []byte(`not json`), sign([]byte(`not json`), "whsec_old", now), payments.ErrMalformedEvent},
		{"signed non-event", []byte(`{"id":"x","object":"charge"}`), sign([]byte(`{"id":"x","object":"charge"}`), "whsec_old", now), payments.ErrMalformedEvent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, err := v.Verify(c.payload, c.header, now)
			if c.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if ev.ID != "evt_1" || ev.Type != "payment_intent.succeeded" || ev.ObjectID != "pi_1" ||
					!ev.Created.Equal(time.Unix(1_700_000_000, 0)) || !ev.SupportedVersion() {
					t.Fatalf("event = %+v", ev)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify error = %v, want %v", err, c.want)
			}
		})
	}
}

func TestVerifyOtherAPIVersionIsVerifiedButUnsupported(t *testing.T) {
	t.Parallel()
	now := time.Now()
	v := payments.NewVerifier([]string{"whsec_x"}, 0, false)
	p := eventJSON("evt_v", "2020-08-27", false)
	ev, err := v.Verify(p, payments.Sign(p, "whsec_x", now), now)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if ev.SupportedVersion() || ev.APIVersion != "2020-08-27" {
		t.Fatalf("version %q supported=%t", ev.APIVersion, ev.SupportedVersion())
	}
}

func TestVerifyWithoutSecrets(t *testing.T) {
	t.Parallel()
	v := payments.NewVerifier(nil, 0, false)
	p := eventJSON("evt_1", payments.APIVersion, false)
	if _, err := v.Verify(p, payments.Sign(p, "", time.Now()), time.Now()); !errors.Is(err, payments.ErrBadSignature) {
		t.Fatalf("no secrets: %v", err)
	}
}

func TestParseObject(t *testing.T) {
	t.Parallel()
	o, err := payments.ParseObject([]byte(`{"id":"ch_1","object":"charge","payment_intent":{"id":"pi_9"},
		"refunded":true,"amount_refunded":500,"items":{"data":[{"price":{"id":"price_1","lookup_key":"pro"}}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if o.PaymentIntent != "pi_9" || !o.Refunded || o.AmountRefunded != 500 || o.PlanID() != "pro" {
		t.Fatalf("object = %+v", o)
	}
}
