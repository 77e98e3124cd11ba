-- +goose NO TRANSACTION
-- +goose Up
-- The sweeper and the tick look for bookings due to move: pending ones past
-- their deadline, confirmed ones whose stay starts, active ones that are
-- over. Partial indexes hold only the bookings in those states, so they stay
-- small while finished bookings pile up, and a booking's move to a final
-- state (expired, completed, cancelled, refunded) adds no entry to them.
-- CONCURRENTLY (outside a transaction): bookings keep being written while
-- the indexes build. The new ones first, so the queries always have one.
CREATE INDEX CONCURRENTLY bookings_pending_expires_idx ON bookings (expires_at) WHERE status = 'pending_payment';
CREATE INDEX CONCURRENTLY bookings_confirmed_start_idx ON bookings (start_date) WHERE status = 'confirmed';
CREATE INDEX CONCURRENTLY bookings_active_end_idx ON bookings (end_date) WHERE status = 'active';
DROP INDEX CONCURRENTLY IF EXISTS bookings_status_expires_idx;
DROP INDEX CONCURRENTLY IF EXISTS bookings_status_start_idx;
DROP INDEX CONCURRENTLY IF EXISTS bookings_status_end_idx;

-- +goose Down
CREATE INDEX CONCURRENTLY bookings_status_expires_idx ON bookings (status, expires_at);
CREATE INDEX CONCURRENTLY bookings_status_start_idx ON bookings (status, start_date);
CREATE INDEX CONCURRENTLY bookings_status_end_idx ON bookings (status, end_date);
DROP INDEX CONCURRENTLY IF EXISTS bookings_pending_expires_idx;
DROP INDEX CONCURRENTLY IF EXISTS bookings_confirmed_start_idx;
DROP INDEX CONCURRENTLY IF EXISTS bookings_active_end_idx;
