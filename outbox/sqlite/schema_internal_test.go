package sqlite

import "testing"

func TestAtLeast(t *testing.T) {
	for v, want := range map[string]bool{
		"3.35.0": true, "3.35.5": true, "3.51.2": true, "4.0.0": true, "3.35": true,
		"3.34.1": false, "3.8.11": false, "2.99.99": false, "": false, "x.y": false,
	} {
		if got := atLeast(v, minVersion); got != want {
			t.Errorf("atLeast(%q) = %v, want %v", v, got, want)
		}
	}
}
