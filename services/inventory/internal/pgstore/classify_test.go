package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/amtprov/amtprov/services/inventory/internal/pgstore"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		err                error
		retryable, refused bool
	}{
		{&pgconn.PgError{Code: "40P01"}, true, false},  // deadlock
		{&pgconn.PgError{Code: "40001"}, true, false},  // serialization failure
		{&pgconn.PgError{Code: "57P01"}, true, false},  // admin shutdown
		{&pgconn.PgError{Code: "08006"}, true, false},  // connection failure
		{&pgconn.PgError{Code: "22P02"}, false, true},  // invalid text representation
		{&pgconn.PgError{Code: "23514"}, false, true},  // check violation
		{&pgconn.PgError{Code: "42703"}, false, false}, // undefined column: a bug, not the data
		{errors.New("dial tcp: connection refused"), true, false},
		{context.Canceled, false, false},
	}
	for _, tt := range tests {
		err := fmt.Errorf("apply: %w", tt.err)
		if got := pgstore.Retryable(err); got != tt.retryable {
			t.Errorf("Retryable(%v) = %v", tt.err, got)
		}
		if got := pgstore.Refused(err); got != tt.refused {
			t.Errorf("Refused(%v) = %v", tt.err, got)
		}
	}
}
