package proccpu

import (
	"os"
	"strconv"
	"testing"
)

// utime and stime are counted after the command name's last ')', which
// may itself hold spaces and parentheses.
func TestParse(t *testing.T) {
	const stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 1000 0 0 0 37 5 0 0 20 0 9 0 100 0 0"
	got, err := parse(stat)
	if err != nil || got != 42 {
		t.Fatalf("parse = %d, %v; want 37 + 5 = 42", got, err)
	}
	for _, bad := range []string{"", "4242 (cmd", "4242 (cmd) S 1 2", "4242 (cmd) S 1 4242 4242 0 -1 4194560 1000 0 0 0 x 5"} {
		if _, err := parse(bad); err == nil {
			t.Errorf("parse(%q) took a line that is not one", bad)
		}
	}
}

// The test process's own stat line parses.
func TestTicksOfSelf(t *testing.T) {
	if _, err := Ticks(strconv.Itoa(os.Getpid())); err != nil {
		t.Fatal(err)
	}
}
