package outbox_test

import (
	"errors"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/finalbus/final/outbox"
)

// IdentifierChars accepts exactly the non-empty strings the regular
// expression it replaced matched: every single byte, every pair of bytes,
// and random strings over the bytes around the edges of the allowed
// ranges and beyond ASCII (UTF-8 and invalid UTF-8 alike).
func TestIdentifierCharsMatchesTheRegexp(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	check := func(s string) {
		t.Helper()
		if got, want := outbox.IdentifierChars(s), re.MatchString(s); got != want {
			t.Fatalf("IdentifierChars(%q) = %v, the regexp %v", s, got, want)
		}
	}
	for a := 0; a < 256; a++ {
		check(string([]byte{byte(a)}))
		for b := 0; b < 256; b++ {
			check(string([]byte{byte(a), byte(b)}))
		}
	}
	edges := []byte("`az{@AZ[/09:_.-,/ \x00\x7f\x80\xc3\xa9\xff")
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		b := make([]byte, 1+r.IntN(12))
		for i := range b {
			b[i] = edges[r.IntN(len(edges))]
		}
		check(string(b))
	}
}

func TestValidateIdentifier(t *testing.T) {
	for _, ok := range []string{"a", "final_svc_outbox", "A.b-c_9", strings.Repeat("x", 64)} {
		if err := outbox.ValidateIdentifier(ok, 64); err != nil {
			t.Errorf("ValidateIdentifier(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("x", 65), "a b", "t`x", "t'; DROP TABLE x; --", "é"} {
		if err := outbox.ValidateIdentifier(bad, 64); !errors.Is(err, outbox.ErrInvalidIdentifier) {
			t.Errorf("ValidateIdentifier(%q) = %v, want ErrInvalidIdentifier", bad, err)
		}
	}
}

func BenchmarkIdentifierChars(b *testing.B) {
	for b.Loop() {
		if !outbox.IdentifierChars("order_svc.order.created") {
			b.Fatal("refused")
		}
	}
}
