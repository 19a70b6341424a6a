package outbox_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/finalbus/final/outbox"
)

func TestOrderKey(t *testing.T) {
	if k := outbox.OrderKey("t", ""); k != 0 {
		t.Fatalf("a message without a key has order key %d, want 0", k)
	}
	a, b := outbox.OrderKey("ab", "c"), outbox.OrderKey("a", "bc")
	if a == 0 || b == 0 || a == b {
		t.Fatalf(`OrderKey("ab","c") = %d, OrderKey("a","bc") = %d: want two different non-zero keys`, a, b)
	}
	// The key is stored in outbox rows, so every build must compute the
	// same one: rows written before an upgrade keep their order after it.
	// The value is FNV-1a 64 of "order.created\x00customer-42", computed
	// independently of hash/fnv.
	if k := outbox.OrderKey("order.created", "customer-42"); k != -7348517012559375368 {
		t.Fatalf(`OrderKey("order.created", "customer-42") = %d, want -7348517012559375368 (the order key of stored rows changed)`, k)
	}
	if outbox.OrderKey("t1", "k") == outbox.OrderKey("t2", "k") {
		t.Fatal("the same key under two topics shares an order key")
	}
}

func TestConnectionFailed(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("exec: %w", driver.ErrBadConn), true},
		{sql.ErrConnDone, true},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{context.DeadlineExceeded, true},
		{&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{errors.New("Error 1146: Table 'test.t' doesn't exist"), false},
		{context.Canceled, false},
	} {
		if got := outbox.ConnectionFailed(c.err); got != c.want {
			t.Errorf("ConnectionFailed(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
