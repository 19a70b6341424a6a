// Package proccpu reads the CPU time a process has used from /proc, for
// the commands under bench/ that measure what a server spends.
package proccpu

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Ticks returns the user and system CPU time of process pid so far, in
// clock ticks (1/100 s on Linux).
func Ticks(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	return parse(string(b))
}

// parse reads utime and stime, the 14th and 15th fields of a
// /proc/<pid>/stat line. The command name (the 2nd, in parentheses) may
// hold spaces and parentheses, so the fields are counted after its last
// ')'.
func parse(stat string) (int64, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 || end+2 > len(stat) {
		return 0, fmt.Errorf("proccpu: not a stat line: %.40q", stat)
	}
	f := strings.Fields(stat[end+2:]) // from the 3rd field, state
	if len(f) < 13 {
		return 0, fmt.Errorf("proccpu: a stat line of %d fields", len(f)+2)
	}
	u, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proccpu: utime: %w", err)
	}
	s, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proccpu: stime: %w", err)
	}
	return u + s, nil
}
