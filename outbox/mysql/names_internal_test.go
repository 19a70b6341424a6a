package mysql

import (
	"strings"
	"testing"
)

func TestLockName(t *testing.T) {
	// Names that fit keep the form earlier releases used, so that an
	// instance of an earlier release and one of this release starting at
	// once still take the same lock.
	if got := lockName("final_orders_outbox"); got != "final_migrate_final_orders_outbox" {
		t.Fatalf("lockName kept short = %q", got)
	}
	a := lockName("final_" + strings.Repeat("x", 57) + "1")
	b := lockName("final_" + strings.Repeat("x", 57) + "2")
	if len(a) != maxLockNameLen || len(b) != maxLockNameLen || a == b {
		t.Fatalf("lockName of long names = %q, %q: want two distinct names of %d", a, b, maxLockNameLen)
	}
	if again := lockName("final_" + strings.Repeat("x", 57) + "1"); again != a {
		t.Fatalf("lockName is not stable: %q then %q", a, again)
	}
}

func TestFileNameLen(t *testing.T) {
	for name, want := range map[string]int{"final_a_outbox": 14, "a.b": 7, "a-b": 7, strings.Repeat("-", 48): 240} {
		if got := fileNameLen(name); got != want {
			t.Errorf("fileNameLen(%q) = %d, want %d", name, got, want)
		}
	}
}
