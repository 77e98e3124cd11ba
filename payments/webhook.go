package payments

import (
	"bytes"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"
)

// Webhook verification errors. Verify returns an error wrapping exactly one.
var (
	ErrNoSignature       = errors.New("missing or malformed Stripe-Signature header")
	ErrBadSignature      = errors.New("no signature matches a configured webhook secret")
	ErrTimestampTooOld   = errors.New("signature timestamp older than the tolerance")
	ErrTimestampInFuture = errors.New("signature timestamp too far in the future")
	ErrMalformedEvent    = errors.New("malformed event")
	ErrLivemodeMismatch  = errors.New("event livemode does not match this deployment")
)

// Verifier checks webhook signatures against one or more secrets (several
// during a secret rotation: an event signed with any of them is accepted).
type Verifier struct {
	secrets   []string
	tolerance time.Duration
	livemode  bool
}

// NewVerifier returns a Verifier. tolerance bounds the distance between the
// signature's timestamp and now, in both directions (0 means 300 s);
// livemode is the mode events must carry.
func NewVerifier(secrets []string, tolerance time.Duration, livemode bool) *Verifier {
	var s []string
	for _, x := range secrets {
		if x = strings.TrimSpace(x); x != "" {
			s = append(s, x)
		}
	}
	if tolerance <= 0 {
		tolerance = webhook.DefaultTolerance
	}
	return &Verifier{secrets: s, tolerance: tolerance, livemode: livemode}
}

// Configured reports whether the verifier has at least one secret.
func (v *Verifier) Configured() bool { return len(v.secrets) > 0 }

// Event is a verified Stripe event: the fields the platform indexes, and the
// raw payload as received.
type Event struct {
	ID         string
	Type       string
	APIVersion string
	Livemode   bool
	// Account is the connected account the event came from (Connect), if any.
	Account string
	Created time.Time
	// ObjectID is data.object.id.
	ObjectID string
	// Object is data.object as JSON.
	Object json.RawMessage
	// Payload is the whole event exactly as received.
	Payload []byte
}

// SupportedVersion reports whether the event is rendered in the pinned API
// version, so its object has the shape this code reads.
func (e Event) SupportedVersion() bool { return e.APIVersion == APIVersion }

type wireEvent struct {
	ID         string          `json:"id"`
	Object     string          `json:"object"`
	Type       string          `json:"type"`
	APIVersion *string         `json:"api_version"`
	Livemode   bool            `json:"livemode"`
	Account    string          `json:"account"`
	Created    int64           `json:"created"`
	Data       *wireEventData  `json:"data"`
	Request    json.RawMessage `json:"request"`
}

type wireEventData struct {
	Object json.RawMessage `json:"object"`
}

// Verify checks a webhook delivery: the Stripe-Signature header must carry a
// v1 signature of "timestamp.payload" by one of the secrets, the timestamp
// must lie within the tolerance of now in either direction (Stripe's own
// check only refuses old ones), the payload must be an event, and its
// livemode must match. It does not check the API version: an event of
// another version is verified, stored and marked (Event.SupportedVersion).
// Errors: ErrNoSignature, ErrBadSignature, ErrTimestampTooOld,
// ErrTimestampInFuture, ErrMalformedEvent, ErrLivemodeMismatch.
func (v *Verifier) Verify(payload []byte, sigHeader string, now time.Time) (Event, error) {
	ts, sigs, err := parseSignatureHeader(sigHeader)
	if err != nil {
		return Event{}, err
	}
	if len(v.secrets) == 0 {
		return Event{}, fmt.Errorf("%w (no webhook secret configured)", ErrBadSignature)
	}
	matched := false
	for _, secret := range v.secrets {
		want := webhook.ComputeSignature(ts, payload, secret)
		for _, sig := range sigs {
			if hmac.Equal(want, sig) {
				matched = true
			}
		}
	}
	if !matched {
		return Event{}, ErrBadSignature
	}
	// The timestamp is checked after the signature, so an attacker learns
	// nothing from which check failed.
	if d := now.Sub(ts); d > v.tolerance {
		return Event{}, fmt.Errorf("%w (%s old)", ErrTimestampTooOld, d.Round(time.Second))
	} else if -d > v.tolerance {
		return Event{}, fmt.Errorf("%w (%s ahead)", ErrTimestampInFuture, (-d).Round(time.Second))
	}
	ev, err := ParseEvent(payload)
	if err != nil {
		return Event{}, err
	}
	if ev.Livemode != v.livemode {
		return Event{}, fmt.Errorf("%w (event livemode=%t)", ErrLivemodeMismatch, ev.Livemode)
	}
	return ev, nil
}

// ParseEvent decodes an event's envelope (no signature check: for events
// fetched from the API). Errors: ErrMalformedEvent.
func ParseEvent(payload []byte) (Event, error) {
	var w wireEvent
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&w); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrMalformedEvent, err)
	}
	if dec.More() {
		return Event{}, fmt.Errorf("%w: trailing data", ErrMalformedEvent)
	}
	switch {
	case w.ID == "" || len(w.ID) > 255:
		return Event{}, fmt.Errorf("%w: no id", ErrMalformedEvent)
	case w.Object != "" && w.Object != "event":
		return Event{}, fmt.Errorf("%w: object is %q", ErrMalformedEvent, w.Object)
	case w.Type == "" || len(w.Type) > 255:
		return Event{}, fmt.Errorf("%w: no type", ErrMalformedEvent)
	case w.Created <= 0 || w.Created > 1<<40:
		return Event{}, fmt.Errorf("%w: bad created", ErrMalformedEvent)
	case w.Data == nil || len(w.Data.Object) == 0 || w.Data.Object[0] != '{':
		return Event{}, fmt.Errorf("%w: no data.object", ErrMalformedEvent)
	}
	var obj struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(w.Data.Object, &obj); err != nil {
		return Event{}, fmt.Errorf("%w: data.object: %v", ErrMalformedEvent, err)
	}
	ev := Event{
		ID: w.ID, Type: w.Type, Livemode: w.Livemode, Account: w.Account,
		Created: time.Unix(w.Created, 0).UTC(), ObjectID: obj.ID, Object: w.Data.Object, Payload: payload,
	}
	if w.APIVersion != nil {
		ev.APIVersion = *w.APIVersion
	}
	return ev, nil
}

// parseSignatureHeader reads "t=<unix>,v1=<hex>,v1=<hex>,v0=..." (only v1
// signatures count).
func parseSignatureHeader(h string) (time.Time, [][]byte, error) {
	if h == "" || len(h) > 4096 {
		return time.Time{}, nil, ErrNoSignature
	}
	var ts time.Time
	var sigs [][]byte
	for _, pair := range strings.Split(h, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok {
			return time.Time{}, nil, ErrNoSignature
		}
		switch k {
		case "t":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n <= 0 || n > 1<<40 {
				return time.Time{}, nil, ErrNoSignature
			}
			ts = time.Unix(n, 0)
		case "v1":
			if sig, err := hex.DecodeString(val); err == nil && len(sig) == 32 {
				sigs = append(sigs, sig)
			}
		}
	}
	if ts.IsZero() || len(sigs) == 0 {
		return time.Time{}, nil, ErrNoSignature
	}
	return ts, sigs, nil
}

// Sign returns a Stripe-Signature header for payload signed with secret at
// t, as Stripe sends it (for tests and the stripe-trigger tool).
func Sign(payload []byte, secret string, t time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: t}).Header
}
