-- +goose Up
-- The sweeper and the tick look for bookings due to move: pending ones past
-- their deadline, confirmed ones whose stay starts, active ones that are
-- over. Partial indexes hold only the bookings in those states, so they stay
-- small while finished bookings pile up, and a booking's move to a final
-- state (expired, completed, cancelled, refunded) adds no entry to them.
DROP INDEX bookings_status_expires_idx;
DROP INDEX bookings_status_start_idx;
DROP INDEX bookings_status_end_idx;
CREATE INDEX bookings_pending_expires_idx ON bookings (expires_at) WHERE status = 'pending_payment';
CREATE INDEX bookings_confirmed_start_idx ON bookings (start_date) WHERE status = 'confirmed';
CREATE INDEX bookings_active_end_idx ON bookings (end_date) WHERE status = 'active';

-- +goose Down
DROP INDEX bookings_pending_expires_idx;
DROP INDEX bookings_confirmed_start_idx;
DROP INDEX bookings_active_end_idx;
CREATE INDEX bookings_status_expires_idx ON bookings (status, expires_at);
CREATE INDEX bookings_status_start_idx ON bookings (status, start_date);
CREATE INDEX bookings_status_end_idx ON bookings (status, end_date);
