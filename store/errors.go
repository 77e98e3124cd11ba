package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/rentalportal/portal"
)

// Translate turns driver errors of both engines into *portal.Error with a
// code: no rows → ENOTFOUND; unique violation → EDUPLICATE; the booking
// overlap constraint → EOVERLAP; foreign-key violation → EINVALID; check
// violation → EINVALID; serialization failure, deadlock or busy database →
// ECONFLICT; a connection failure → EUNAVAILABLE. Other errors, and errors
// that already carry a code, pass through unchanged.
func Translate(err error) error {
	if err == nil {
		return nil
	}
	var pe *portal.Error
	if errors.As(err, &pe) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return portal.WrapError(portal.ENOTFOUND, err, "not found")
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "23505":
			return portal.WrapError(portal.EDUPLICATE, err, "%s already exists", constraintSubject(pg.ConstraintName))
		case "23P01":
			if pg.ConstraintName == "bookings_no_overlap" {
				return overlapError(err)
			}
			return portal.WrapError(portal.ECONFLICT, err, "conflicting row")
		case "23503":
			return portal.WrapError(portal.EINVALID, err, "a referenced record does not exist")
		case "23514", "22P02", "22007", "22008", "23502":
			return portal.WrapError(portal.EINVALID, err, "invalid value")
		case "40001", "40P01":
			return portal.WrapError(portal.ECONFLICT, err, "concurrent update, try again")
		case "57P01", "57P02", "57P03", "53300":
			return portal.WrapError(portal.EUNAVAILABLE, err, "database unavailable")
		}
		if strings.HasPrefix(pg.Code, "08") {
			return portal.WrapError(portal.EUNAVAILABLE, err, "database unavailable")
		}
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return portal.WrapError(portal.EDUPLICATE, err, "%s already exists", sqliteSubject(se.Error()))
		case sqlite3.SQLITE_CONSTRAINT_TRIGGER:
			if strings.Contains(se.Error(), "bookings_no_overlap") {
				return overlapError(err)
			}
			return portal.WrapError(portal.ECONFLICT, err, "conflicting row")
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return portal.WrapError(portal.EINVALID, err, "a referenced record does not exist")
		case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
			return portal.WrapError(portal.EINVALID, err, "invalid value")
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_BUSY_SNAPSHOT:
			return portal.WrapError(portal.ECONFLICT, err, "database busy, try again")
		}
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return portal.WrapError(portal.EUNAVAILABLE, err, "database timeout")
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, driver.ErrBadConn) {
		return portal.WrapError(portal.EUNAVAILABLE, err, "database unavailable")
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return portal.WrapError(portal.EUNAVAILABLE, err, "database unavailable")
	}
	return err
}

// isRetryable reports whether a transaction failed only because of a
// concurrent one (serialization failure, deadlock, busy SQLite).
func isRetryable(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "40001" || pg.Code == "40P01"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED || c == sqlite3.SQLITE_BUSY_SNAPSHOT
	}
	return false
}

// constraintSubject names what a PostgreSQL unique constraint protects, for
// a client-safe message ("users_email_key" → "email").
func constraintSubject(name string) string {
	switch {
	case strings.Contains(name, "email"):
		return "email"
	case name == "":
		return "record"
	}
	return "record"
}

// sqliteSubject does the same from SQLite's message ("UNIQUE constraint
// failed: users.email").
func sqliteSubject(msg string) string {
	if strings.Contains(msg, "users.email") {
		return "email"
	}
	return "record"
}

// overlapError is EOVERLAP with its cause: the database's exclusion
// violation, the SQLite trigger's error, or errOverlap.
func overlapError(cause error) error {
	return portal.WrapError(portal.EOVERLAP, cause, "the dates overlap another booking of this listing")
}

// errOverlap is the cause of an EOVERLAP whose insert PostgreSQL skipped
// (ON CONFLICT DO NOTHING: its dates overlap a booking that holds them, or
// its ID is taken).
var errOverlap = errors.New("bookings_no_overlap: the insert was skipped")
