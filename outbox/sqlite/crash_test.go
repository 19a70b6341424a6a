package sqlite_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/sqlite"
)

// The child process of the crash tests is this test binary, run with
// childModeEnv set; TestMain hands it to child.
const (
	childModeEnv   = "FINAL_SQLITE_CHILD"
	childPathEnv   = "FINAL_SQLITE_PATH"
	childDriverEnv = "FINAL_SQLITE_DRIVER"
	childLeaseEnv  = "FINAL_SQLITE_LEASE"
)

// child claims rows of the database file as another process would, says so
// on stdout, and waits to be killed. Mode "lease" claims the rows for
// FINAL_SQLITE_LEASE through the store; mode "lock" leases them inside a
// BEGIN IMMEDIATE transaction that it never commits, as a claim killed
// half way would.
func child(mode string) int {
	db, err := sql.Open(os.Getenv(childDriverEnv), "file:"+os.Getenv(childPathEnv)+"?"+sqlite.DSNParams)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	switch mode {
	case "lease":
		lease, err := time.ParseDuration(os.Getenv(childLeaseEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		s, err := sqlite.New(db, table, sqlite.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		recs, err := s.Claim(ctx, "child", 100, 0, lease)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Printf("claimed %d\n", len(recs))
	case "lock":
		c, err := db.Conn(ctx)
		if err == nil {
			_, err = c.ExecContext(ctx, "BEGIN IMMEDIATE")
		}
		if err == nil {
			_, err = c.ExecContext(ctx, `UPDATE `+table+` SET claimed_by = 'child', available_at = available_at + 3600000000`)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Println("locked")
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		return 2
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // until killed
	return 0
}

// runChild starts a child in mode on path and returns what it printed,
// once it has; it is killed (SIGKILL) by kill, or when t ends.
func runChild(t *testing.T, d driverCase, path, mode string, lease time.Duration) (line string, kill func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childModeEnv+"="+mode, childPathEnv+"="+path,
		childDriverEnv+"="+d.driver, childLeaseEnv+"="+lease.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	killed := false
	kill = func() {
		if killed {
			return
		}
		killed = true
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		stdin.Close()
	}
	t.Cleanup(kill)
	line, err = bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		kill()
		t.Fatalf("child %s: %v; stderr: %s", mode, err, stderr.String())
	}
	return strings.TrimSpace(line), kill
}

// A process that claimed rows and was killed before sending them: its
// lease holds them from every other owner until it expires, and then
// another owner claims them.
func TestKilledClaimersLeaseExpires(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		path := dbFile(t)
		s, _ := newStoreAt(t, d, path)
		ctx := context.Background()
		for i := 0; i < 3; i++ {
			_, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("x"), OrderKey: outbox.OrderKey("t", "k")})
			require.NoError(t, err)
		}
		const lease = 2 * time.Second
		start := time.Now() // the child's lease ends after start+lease
		line, kill := runChild(t, d, path, "lease", lease)
		require.Equal(t, "claimed 3", line)
		kill()

		deadline := time.Now().Add(30 * time.Second)
		for {
			recs, err := s.Claim(ctx, "survivor", 100, 0, time.Minute)
			at := time.Now() // the claim took the rows before this
			require.NoError(t, err)
			if len(recs) > 0 {
				require.Len(t, recs, 3)
				require.False(t, at.Before(start.Add(lease)),
					"claimed %v after %v, within the dead owner's lease of %v", recs, at.Sub(start), lease)
				return
			}
			require.True(t, time.Now().Before(deadline), "rows not claimable 30s after the lease")
			time.Sleep(20 * time.Millisecond) // polling interval
		}
	})
}

// A process killed inside its claim's transaction leaves nothing behind:
// the lock goes with the process, the uncommitted lease is rolled back,
// and the next claim takes the rows at once.
func TestKilledInsideClaimLeavesNoLease(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		path := dbFile(t)
		s, _ := newStoreAt(t, d, path)
		ctx := context.Background()
		for i := 0; i < 3; i++ {
			_, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("x")})
			require.NoError(t, err)
		}
		line, kill := runChild(t, d, path, "lock", 0)
		require.Equal(t, "locked", line)
		kill()
		recs, err := s.Claim(ctx, "survivor", 100, 0, time.Minute)
		require.NoError(t, err)
		require.Len(t, recs, 3)
	})
}
