-- +goose Up
-- Events parked as unknown_booking until their PaymentIntent or charge is
-- linked to a booking are looked up by their outcome_detail
-- ("awaiting payment_intent pi_..."), on every payment event.
CREATE INDEX stripe_events_parked_idx ON stripe_events (outcome_detail) WHERE outcome = 'unknown_booking';

-- +goose Down
DROP INDEX stripe_events_parked_idx;
