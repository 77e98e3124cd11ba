-- +goose Up
-- The whole domain of DESIGN.md §3. Money is in minor units (BIGINT), times
-- are DATETIME text in UTC (the driver's _time_format=sqlite), dates are
-- 'YYYY-MM-DD' TEXT, identifiers are TEXT (UUIDv7 for ours, Stripe's own
-- for Stripe objects).
CREATE TABLE users (
    id                  TEXT PRIMARY KEY,
    email               TEXT NOT NULL UNIQUE CHECK (email = lower(email)),
    password_hash       TEXT NOT NULL,
    name                TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('renter', 'owner', 'admin')),
    stripe_account_id   TEXT UNIQUE,
    charges_enabled     BOOLEAN NOT NULL DEFAULT false,
    payouts_enabled     BOOLEAN NOT NULL DEFAULT false,
    stripe_customer_id  TEXT UNIQUE,
    subscription_id     TEXT,
    subscription_status TEXT,
    subscription_plan   TEXT,
    created_at          DATETIME NOT NULL,
    updated_at          DATETIME NOT NULL
);

CREATE TABLE listings (
    id            TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL REFERENCES users (id),
    title         TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    price_per_day INTEGER NOT NULL CHECK (price_per_day > 0),
    currency      TEXT NOT NULL CHECK (length(currency) = 3),
    timezone      TEXT NOT NULL DEFAULT 'UTC',
    active        BOOLEAN NOT NULL DEFAULT true,
    created_at    DATETIME NOT NULL,
    updated_at    DATETIME NOT NULL,
    deleted_at    DATETIME
);
CREATE INDEX listings_owner_idx ON listings (owner_id);
CREATE INDEX listings_active_price_idx ON listings (active, price_per_day) WHERE deleted_at IS NULL;

CREATE TABLE bookings (
    id           TEXT PRIMARY KEY,
    listing_id   TEXT NOT NULL REFERENCES listings (id),
    renter_id    TEXT NOT NULL REFERENCES users (id),
    owner_id     TEXT NOT NULL REFERENCES users (id),
    start_date   TEXT NOT NULL,
    end_date     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending_payment', 'confirmed', 'active', 'completed',
                                                'expired', 'cancelled', 'refunded', 'disputed')),
    status_before_dispute TEXT,
    total_amount INTEGER NOT NULL CHECK (total_amount > 0),
    currency     TEXT NOT NULL,
    expires_at   DATETIME NOT NULL,
    refund_requested_at DATETIME,
    created_at   DATETIME NOT NULL,
    updated_at   DATETIME NOT NULL,
    CHECK (end_date > start_date)
);
-- Two bookings of one listing never overlap while they hold the dates.
-- SQLite has no exclusion constraints; these triggers run inside the writing
-- transaction, and SQLite serializes writers, so the check cannot race.
-- +goose StatementBegin
CREATE TRIGGER bookings_no_overlap_insert BEFORE INSERT ON bookings
WHEN NEW.status IN ('pending_payment', 'confirmed', 'active', 'disputed', 'completed')
BEGIN
    SELECT RAISE(ABORT, 'bookings_no_overlap')
    WHERE EXISTS (SELECT 1 FROM bookings b
                  WHERE b.listing_id = NEW.listing_id
                    AND b.status IN ('pending_payment', 'confirmed', 'active', 'disputed', 'completed')
                    AND b.start_date < NEW.end_date AND NEW.start_date < b.end_date);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER bookings_no_overlap_update BEFORE UPDATE OF status, start_date, end_date ON bookings
WHEN NEW.status IN ('pending_payment', 'confirmed', 'active', 'disputed', 'completed')
BEGIN
    SELECT RAISE(ABORT, 'bookings_no_overlap')
    WHERE EXISTS (SELECT 1 FROM bookings b
                  WHERE b.listing_id = NEW.listing_id AND b.id <> NEW.id
                    AND b.status IN ('pending_payment', 'confirmed', 'active', 'disputed', 'completed')
                    AND b.start_date < NEW.end_date AND NEW.start_date < b.end_date);
END;
-- +goose StatementEnd

CREATE INDEX bookings_listing_idx ON bookings (listing_id, start_date);
CREATE INDEX bookings_renter_idx ON bookings (renter_id, created_at DESC);
CREATE INDEX bookings_owner_idx ON bookings (owner_id, created_at DESC);
CREATE INDEX bookings_status_expires_idx ON bookings (status, expires_at);
CREATE INDEX bookings_status_start_idx ON bookings (status, start_date);
CREATE INDEX bookings_status_end_idx ON bookings (status, end_date);

CREATE TABLE booking_history (
    id          TEXT PRIMARY KEY,
    booking_id  TEXT NOT NULL REFERENCES bookings (id) ON DELETE CASCADE,
    from_status TEXT NOT NULL,
    to_status   TEXT NOT NULL,
    cause       TEXT NOT NULL,
    source      TEXT NOT NULL,
    source_ref  TEXT NOT NULL DEFAULT '',
    actor_id    TEXT,
    created_at  DATETIME NOT NULL
);
CREATE INDEX booking_history_booking_idx ON booking_history (booking_id, created_at);

CREATE TABLE uploads (
    id             TEXT PRIMARY KEY,
    owner_id       TEXT NOT NULL REFERENCES users (id),
    kind           TEXT NOT NULL CHECK (kind IN ('image', 'document')),
    object_key     TEXT NOT NULL UNIQUE,
    content_type   TEXT NOT NULL,
    size_bytes     INTEGER NOT NULL DEFAULT 0,
    declared_size  INTEGER,
    original_name  TEXT NOT NULL DEFAULT '',
    status         TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'ready', 'failed')),
    failure_reason TEXT NOT NULL DEFAULT '',
    width          INTEGER,
    height         INTEGER,
    booking_id     TEXT REFERENCES bookings (id) ON DELETE SET NULL,
    dispute_id     TEXT,
    created_at     DATETIME NOT NULL,
    updated_at     DATETIME NOT NULL
);
CREATE INDEX uploads_owner_idx ON uploads (owner_id, created_at DESC);
CREATE INDEX uploads_status_idx ON uploads (status, updated_at);

CREATE TABLE upload_variants (
    upload_id    TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    name         TEXT NOT NULL CHECK (name IN ('thumb', 'medium', 'large')),
    object_key   TEXT NOT NULL,
    content_type TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    size_bytes   INTEGER NOT NULL,
    PRIMARY KEY (upload_id, name)
);

CREATE TABLE listing_photos (
    listing_id TEXT NOT NULL REFERENCES listings (id) ON DELETE CASCADE,
    upload_id  TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    PRIMARY KEY (listing_id, upload_id)
);

CREATE TABLE payments (
    id                TEXT PRIMARY KEY,
    booking_id        TEXT NOT NULL UNIQUE REFERENCES bookings (id),
    payment_intent_id TEXT UNIQUE,
    client_secret     TEXT,
    charge_id         TEXT,
    amount            INTEGER NOT NULL,
    amount_received   INTEGER NOT NULL DEFAULT 0,
    amount_refunded   INTEGER NOT NULL DEFAULT 0,
    currency          TEXT NOT NULL,
    status            TEXT NOT NULL,
    last_event_at     DATETIME,
    created_at        DATETIME NOT NULL,
    updated_at        DATETIME NOT NULL
);
CREATE INDEX payments_status_idx ON payments (status, updated_at);

CREATE TABLE refunds (
    id         TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    amount     INTEGER NOT NULL,
    currency   TEXT NOT NULL,
    status     TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);

CREATE TABLE disputes (
    id               TEXT PRIMARY KEY,
    booking_id       TEXT REFERENCES bookings (id),
    payment_id       TEXT REFERENCES payments (id),
    charge_id        TEXT NOT NULL,
    amount           INTEGER NOT NULL,
    currency         TEXT NOT NULL,
    reason           TEXT NOT NULL DEFAULT '',
    status           TEXT NOT NULL,
    funds_withdrawn  BOOLEAN NOT NULL DEFAULT false,
    funds_reinstated BOOLEAN NOT NULL DEFAULT false,
    last_event_at    DATETIME,
    created_at       DATETIME NOT NULL,
    updated_at       DATETIME NOT NULL,
    closed_at        DATETIME
);

CREATE TABLE payouts (
    id                TEXT PRIMARY KEY,
    owner_id          TEXT REFERENCES users (id),
    stripe_account_id TEXT NOT NULL DEFAULT '',
    amount            INTEGER NOT NULL,
    currency          TEXT NOT NULL,
    status            TEXT NOT NULL,
    failure_code      TEXT NOT NULL DEFAULT '',
    arrival_date      DATETIME,
    last_event_at     DATETIME,
    created_at        DATETIME NOT NULL,
    updated_at        DATETIME NOT NULL
);

CREATE TABLE transfers (
    id                TEXT PRIMARY KEY,
    booking_id        TEXT REFERENCES bookings (id),
    owner_id          TEXT REFERENCES users (id),
    destination       TEXT NOT NULL DEFAULT '',
    amount            INTEGER NOT NULL,
    amount_reversed   INTEGER NOT NULL DEFAULT 0,
    currency          TEXT NOT NULL,
    reversed          BOOLEAN NOT NULL DEFAULT false,
    last_event_at     DATETIME,
    created_at        DATETIME NOT NULL,
    updated_at        DATETIME NOT NULL
);

-- The webhook inbox: every Stripe event exactly as received, unique on its id.
CREATE TABLE stripe_events (
    id             TEXT PRIMARY KEY,
    type           TEXT NOT NULL,
    api_version    TEXT NOT NULL DEFAULT '',
    livemode       BOOLEAN NOT NULL DEFAULT false,
    object_id      TEXT NOT NULL DEFAULT '',
    event_created  DATETIME NOT NULL,
    payload        TEXT NOT NULL,
    source         TEXT NOT NULL DEFAULT 'webhook',
    received_at    DATETIME NOT NULL,
    processed_at   DATETIME,
    outcome        TEXT NOT NULL DEFAULT '',
    outcome_detail TEXT NOT NULL DEFAULT '',
    attempts       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX stripe_events_unprocessed_idx ON stripe_events (received_at) WHERE processed_at IS NULL;
CREATE INDEX stripe_events_object_idx ON stripe_events (object_id);

-- The transactional outbox: a row is written in the transaction of the change
-- that needs the task, relayed to Redis right after commit, and re-relayed by
-- the sweeper if a crash came in between. id is the asynq task ID.
CREATE TABLE outbox (
    id         TEXT PRIMARY KEY,
    task_type  TEXT NOT NULL,
    payload    BLOB NOT NULL,
    process_at DATETIME,
    created_at DATETIME NOT NULL,
    sent_at    DATETIME,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbox_unsent_idx ON outbox (created_at) WHERE sent_at IS NULL;

-- Domain events (booking confirmed, upload ready, ...) written in the
-- transaction of the change; notifications fan out from them.
CREATE TABLE domain_events (
    id           TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    data         TEXT NOT NULL DEFAULT '{}',
    created_at   DATETIME NOT NULL
);
CREATE INDEX domain_events_subject_idx ON domain_events (subject_type, subject_id);

CREATE TABLE notifications (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event_id   TEXT NOT NULL REFERENCES domain_events (id),
    type       TEXT NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    read_at    DATETIME,
    created_at DATETIME NOT NULL,
    UNIQUE (event_id, user_id)
);
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at DESC);

-- One row per (event, recipient, channel): the idempotency record of a delivery.
CREATE TABLE deliveries (
    event_id     TEXT NOT NULL REFERENCES domain_events (id),
    recipient_id TEXT NOT NULL,
    channel      TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT NOT NULL DEFAULT '',
    created_at   DATETIME NOT NULL,
    updated_at   DATETIME NOT NULL,
    PRIMARY KEY (event_id, recipient_id, channel)
);

-- Operator actions in the dashboard.
CREATE TABLE operator_audit (
    id          TEXT PRIMARY KEY,
    operator    TEXT NOT NULL,
    role        TEXT NOT NULL,
    action      TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    queue       TEXT NOT NULL DEFAULT '',
    task_id     TEXT NOT NULL DEFAULT '',
    status_code INTEGER NOT NULL,
    remote_ip   TEXT NOT NULL DEFAULT '',
    created_at  DATETIME NOT NULL
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
