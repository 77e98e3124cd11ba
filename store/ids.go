package store

import "github.com/google/uuid"

// NewID returns a new identifier: a UUIDv7, time-ordered so that inserts
// land at the end of indexes and IDs sort by creation.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// keyedBookings is the namespace of the booking IDs that idempotency keys
// name (a fixed random UUID).
var keyedBookings = uuid.MustParse("6f1d2c3e-8b4a-4e57-9c21-0d5a7e9b3f48")

// KeyedBookingID is the ID of the booking a renter's Idempotency-Key names:
// a name-based UUID of the renter and the key, so a retry with the same key
// asks for the same booking ID, which the database holds once.
func KeyedBookingID(renterID, key string) string {
	return uuid.NewSHA1(keyedBookings, []byte(renterID+"\x00"+key)).String()
}
