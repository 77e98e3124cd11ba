-- +goose Up
-- Every notifications list answers with the caller's unread count: a
-- partial index holds only unread rows, so counting them reads no read ones.
CREATE INDEX notifications_unread_idx ON notifications (user_id) WHERE read_at IS NULL;

-- +goose Down
DROP INDEX notifications_unread_idx;
