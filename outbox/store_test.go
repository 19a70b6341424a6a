package outbox_test

import (
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
	if outbox.OrderKey("t", "k") != outbox.OrderKey("t", "k") {
		t.Fatal("OrderKey is not stable")
	}
	if outbox.OrderKey("t1", "k") == outbox.OrderKey("t2", "k") {
		t.Fatal("the same key under two topics shares an order key")
	}
}
