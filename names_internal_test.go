package final

import (
	"math/rand/v2"
	"regexp"
	"testing"
)

// nameChars accepts exactly the non-empty strings the regular expression
// it replaced matched: every single byte, every pair of bytes, and random
// strings over the bytes around the edges of the allowed ranges and
// beyond ASCII (UTF-8 and invalid UTF-8 alike).
func TestNameCharsMatchesTheRegexp(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	check := func(s string) {
		t.Helper()
		if got, want := nameChars(s), re.MatchString(s); got != want {
			t.Fatalf("nameChars(%q) = %v, the regexp %v", s, got, want)
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

func BenchmarkValidateTopic(b *testing.B) {
	for b.Loop() {
		if err := validateTopic("order_svc.order.created"); err != nil {
			b.Fatal(err)
		}
	}
}
