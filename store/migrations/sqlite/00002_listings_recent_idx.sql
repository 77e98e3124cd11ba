-- +goose Up
-- The public listing list pages newest first (keyset on created_at DESC,
-- id DESC) over listings that are not deleted.
CREATE INDEX listings_recent_idx ON listings (created_at DESC, id DESC) WHERE deleted_at IS NULL;

-- +goose Down
DROP INDEX listings_recent_idx;
