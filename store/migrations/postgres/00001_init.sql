-- +goose Up
-- The whole domain of DESIGN.md §3. Money is in minor units (BIGINT), times
-- are timestamptz in UTC, identifiers are text (UUIDv7 for ours, Stripe's own
-- for Stripe objects).
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE users (
    id                  text PRIMARY KEY,
    email               text NOT NULL UNIQUE CHECK (email = lower(email)),
    password_hash       text NOT NULL,
    name                text NOT NULL,
    role                text NOT NULL CHECK (role IN ('renter', 'owner', 'admin')),
    stripe_account_id   text UNIQUE,
    charges_enabled     boolean NOT NULL DEFAULT false,
    payouts_enabled     boolean NOT NULL DEFAULT false,
    stripe_customer_id  text UNIQUE,
    subscription_id     text,
    subscription_status text,
    subscription_plan   text,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);

CREATE TABLE listings (
    id            text PRIMARY KEY,
    owner_id      text NOT NULL REFERENCES users (id),
    title         text NOT NULL,
    description   text NOT NULL DEFAULT '',
    price_per_day bigint NOT NULL CHECK (price_per_day > 0),
    currency      text NOT NULL CHECK (length(currency) = 3),
    timezone      text NOT NULL DEFAULT 'UTC',
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz
);
CREATE INDEX listings_owner_idx ON listings (owner_id);
CREATE INDEX listings_active_price_idx ON listings (active, price_per_day) WHERE deleted_at IS NULL;

CREATE TABLE bookings (
    id           text PRIMARY KEY,
    listing_id   text NOT NULL REFERENCES listings (id),
    renter_id    text NOT NULL REFERENCES users (id),
    owner_id     text NOT NULL REFERENCES users (id),
    start_date   date NOT NULL,
    end_date     date NOT NULL,
    status       text NOT NULL CHECK (status IN ('pending_payment', 'confirmed', 'active', 'completed',
                                                'expired', 'cancelled', 'refunded', 'disputed')),
    status_before_dispute text,
    total_amount bigint NOT NULL CHECK (total_amount > 0),
    currency     text NOT NULL,
    expires_at   timestamptz NOT NULL,
    refund_requested_at timestamptz,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    CHECK (end_date > start_date),
    -- Two bookings of one listing never overlap while they hold the dates.
    CONSTRAINT bookings_no_overlap EXCLUDE USING gist (
        listing_id WITH =,
        daterange(start_date, end_date, '[)') WITH &&
    ) WHERE (status IN ('pending_payment', 'confirmed', 'active', 'disputed', 'completed'))
);
CREATE INDEX bookings_renter_idx ON bookings (renter_id, created_at DESC);
CREATE INDEX bookings_owner_idx ON bookings (owner_id, created_at DESC);
CREATE INDEX bookings_status_expires_idx ON bookings (status, expires_at);
CREATE INDEX bookings_status_start_idx ON bookings (status, start_date);
CREATE INDEX bookings_status_end_idx ON bookings (status, end_date);

CREATE TABLE booking_history (
    id          text PRIMARY KEY,
    booking_id  text NOT NULL REFERENCES bookings (id) ON DELETE CASCADE,
    from_status text NOT NULL,
    to_status   text NOT NULL,
    cause       text NOT NULL,
    source      text NOT NULL,
    source_ref  text NOT NULL DEFAULT '',
    actor_id    text,
    created_at  timestamptz NOT NULL
);
CREATE INDEX booking_history_booking_idx ON booking_history (booking_id, created_at);

CREATE TABLE uploads (
    id             text PRIMARY KEY,
    owner_id       text NOT NULL REFERENCES users (id),
    kind           text NOT NULL CHECK (kind IN ('image', 'document')),
    object_key     text NOT NULL UNIQUE,
    content_type   text NOT NULL,
    size_bytes     bigint NOT NULL DEFAULT 0,
    declared_size  bigint,
    original_name  text NOT NULL DEFAULT '',
    status         text NOT NULL CHECK (status IN ('pending', 'processing', 'ready', 'failed')),
    failure_reason text NOT NULL DEFAULT '',
    width          integer,
    height         integer,
    booking_id     text REFERENCES bookings (id) ON DELETE SET NULL,
    dispute_id     text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX uploads_owner_idx ON uploads (owner_id, created_at DESC);
CREATE INDEX uploads_status_idx ON uploads (status, updated_at);

CREATE TABLE upload_variants (
    upload_id    text NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (name IN ('thumb', 'medium', 'large')),
    object_key   text NOT NULL,
    content_type text NOT NULL,
    width        integer NOT NULL,
    height       integer NOT NULL,
    size_bytes   bigint NOT NULL,
    PRIMARY KEY (upload_id, name)
);

CREATE TABLE listing_photos (
    listing_id text NOT NULL REFERENCES listings (id) ON DELETE CASCADE,
    upload_id  text NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    position   integer NOT NULL,
    PRIMARY KEY (listing_id, upload_id)
);

CREATE TABLE payments (
    id                text PRIMARY KEY,
    booking_id        text NOT NULL UNIQUE REFERENCES bookings (id),
    payment_intent_id text UNIQUE,
    client_secret     text,
    charge_id         text,
    amount            bigint NOT NULL,
    amount_received   bigint NOT NULL DEFAULT 0,
    amount_refunded   bigint NOT NULL DEFAULT 0,
    currency          text NOT NULL,
    status            text NOT NULL,
    last_event_at     timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX payments_status_idx ON payments (status, updated_at);

CREATE TABLE refunds (
    id         text PRIMARY KEY,
    payment_id text NOT NULL REFERENCES payments (id),
    amount     bigint NOT NULL,
    currency   text NOT NULL,
    status     text NOT NULL,
    reason     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE disputes (
    id               text PRIMARY KEY,
    booking_id       text REFERENCES bookings (id),
    payment_id       text REFERENCES payments (id),
    charge_id        text NOT NULL,
    amount           bigint NOT NULL,
    currency         text NOT NULL,
    reason           text NOT NULL DEFAULT '',
    status           text NOT NULL,
    funds_withdrawn  boolean NOT NULL DEFAULT false,
    funds_reinstated boolean NOT NULL DEFAULT false,
    last_event_at    timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    closed_at        timestamptz
);

CREATE TABLE payouts (
    id                text PRIMARY KEY,
    owner_id          text REFERENCES users (id),
    stripe_account_id text NOT NULL DEFAULT '',
    amount            bigint NOT NULL,
    currency          text NOT NULL,
    status            text NOT NULL,
    failure_code      text NOT NULL DEFAULT '',
    arrival_date      timestamptz,
    last_event_at     timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);

CREATE TABLE transfers (
    id                text PRIMARY KEY,
    booking_id        text REFERENCES bookings (id),
    owner_id          text REFERENCES users (id),
    destination       text NOT NULL DEFAULT '',
    amount            bigint NOT NULL,
    amount_reversed   bigint NOT NULL DEFAULT 0,
    currency          text NOT NULL,
    reversed          boolean NOT NULL DEFAULT false,
    last_event_at     timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);

-- The webhook inbox: every Stripe event exactly as received, unique on its id.
CREATE TABLE stripe_events (
    id             text PRIMARY KEY,
    type           text NOT NULL,
    api_version    text NOT NULL DEFAULT '',
    livemode       boolean NOT NULL DEFAULT false,
    object_id      text NOT NULL DEFAULT '',
    event_created  timestamptz NOT NULL,
    payload        text NOT NULL,
    source         text NOT NULL DEFAULT 'webhook',
    received_at    timestamptz NOT NULL,
    processed_at   timestamptz,
    outcome        text NOT NULL DEFAULT '',
    outcome_detail text NOT NULL DEFAULT '',
    attempts       integer NOT NULL DEFAULT 0
);
CREATE INDEX stripe_events_unprocessed_idx ON stripe_events (received_at) WHERE processed_at IS NULL;
CREATE INDEX stripe_events_object_idx ON stripe_events (object_id);

-- The transactional outbox: a row is written in the transaction of the change
-- that needs the task, relayed to Redis right after commit, and re-relayed by
-- the sweeper if a crash came in between. id is the asynq task ID.
CREATE TABLE outbox (
    id         text PRIMARY KEY,
    task_type  text NOT NULL,
    payload    bytea NOT NULL,
    process_at timestamptz,
    created_at timestamptz NOT NULL,
    sent_at    timestamptz,
    attempts   integer NOT NULL DEFAULT 0,
    last_error text NOT NULL DEFAULT ''
);
CREATE INDEX outbox_unsent_idx ON outbox (created_at) WHERE sent_at IS NULL;

-- Domain events (booking confirmed, upload ready, ...) written in the
-- transaction of the change; notifications fan out from them.
CREATE TABLE domain_events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    subject_type text NOT NULL,
    subject_id   text NOT NULL,
    data         text NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL
);
CREATE INDEX domain_events_subject_idx ON domain_events (subject_type, subject_id);

CREATE TABLE notifications (
    id         text PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event_id   text NOT NULL REFERENCES domain_events (id),
    type       text NOT NULL,
    title      text NOT NULL,
    body       text NOT NULL,
    read_at    timestamptz,
    created_at timestamptz NOT NULL,
    UNIQUE (event_id, user_id)
);
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at DESC);

-- One row per (event, recipient, channel): the idempotency record of a delivery.
CREATE TABLE deliveries (
    event_id     text NOT NULL REFERENCES domain_events (id),
    recipient_id text NOT NULL,
    channel      text NOT NULL,
    status       text NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (event_id, recipient_id, channel)
);

-- Operator actions in the dashboard.
CREATE TABLE operator_audit (
    id          text PRIMARY KEY,
    operator    text NOT NULL,
    role        text NOT NULL,
    action      text NOT NULL,
    method      text NOT NULL,
    path        text NOT NULL,
    queue       text NOT NULL DEFAULT '',
    task_id     text NOT NULL DEFAULT '',
    status_code integer NOT NULL,
    remote_ip   text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL
);
CREATE INDEX operator_audit_created_idx ON operator_audit (created_at DESC);

-- +goose Down
DROP TABLE operator_audit;
DROP TABLE deliveries;
DROP TABLE notifications;
DROP TABLE domain_events;
DROP TABLE outbox;
DROP TABLE stripe_events;
DROP TABLE transfers;
DROP TABLE payouts;
DROP TABLE disputes;
DROP TABLE refunds;
DROP TABLE payments;
DROP TABLE listing_photos;
DROP TABLE upload_variants;
DROP TABLE uploads;
DROP TABLE booking_history;
DROP TABLE bookings;
DROP TABLE listings;
DROP TABLE users;
