package postgres

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/finalbus/final/outbox"
)

func TestWrapErrorClassifies(t *testing.T) {
	for _, c := range []struct {
		err       error
		transient bool
	}{
		{&pgconn.PgError{Code: "40001"}, true},
		{&pgconn.PgError{Code: "40P01"}, true},
		{&pgconn.PgError{Code: "55P03"}, true},
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "57014"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "25006"}, true},
		{&pgconn.PgError{Code: "53300"}, true},
		{fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: "40P01"}), true},
		{driver.ErrBadConn, true},
		{io.ErrUnexpectedEOF, true},
		{context.DeadlineExceeded, true},
		{&pgconn.PgError{Code: "42P01"}, false}, // undefined_table
		{&pgconn.PgError{Code: "42501"}, false}, // insufficient_privilege
		{&pgconn.PgError{Code: "23505"}, false}, // unique_violation
		{errors.New("something else"), false},
	} {
		err := wrapError("delete", c.err)
		if got := errors.Is(err, outbox.ErrTransient); got != c.transient {
			t.Errorf("%v: transient = %v, want %v", c.err, got, c.transient)
		}
		if !errors.Is(err, c.err) {
			t.Errorf("%v: the driver's error is not kept in %v", c.err, err)
		}
	}
}

func TestDerivedNamesFit(t *testing.T) {
	if got := derivedName("final_orders_outbox", "available"); got != "final_orders_outbox_available" {
		t.Fatalf("derivedName kept short = %q", got)
	}
	a := derivedName("final_"+string(make63('x'))[:57], "order_id")
	b := derivedName("final_"+string(make63('x'))[:56]+"1", "order_id")
	c := derivedName("final_"+string(make63('x'))[:56]+"2", "order_id")
	for _, n := range []string{a, b, c} {
		if len(n) > maxIdentifierLen {
			t.Fatalf("derivedName = %q, %d bytes", n, len(n))
		}
	}
	if b == c {
		t.Fatalf("two tables share the index name %q", b)
	}
}

func make63(c byte) []byte {
	b := make([]byte, 63)
	for i := range b {
		b[i] = c
	}
	return b
}

func TestIDArray(t *testing.T) {
	if got := idArray([]int64{7, -8, 9}); got != "{7,-8,9}" {
		t.Fatalf("idArray = %q", got)
	}
}
