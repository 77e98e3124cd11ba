package store

import "github.com/google/uuid"

// NewID returns a new identifier: a UUIDv7, time-ordered so that inserts
// land at the end of indexes and IDs sort by creation.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }
