package amqp

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/coalesce"
)

// deadlineConn records the deadline set on it.
type deadlineConn struct {
	net.Conn
	deadline time.Time
}

func (c *deadlineConn) SetDeadline(t time.Time) error { c.deadline = t; return nil }

// dialFunc does what amqp091-go's DefaultDial does on any dialer: the
// dial's context bounded by the timeout, and a deadline as long on the
// connection for the handshakes; and it coalesces the writes of the
// publishing connection only.
func TestDialFuncDeadlineAndCoalescing(t *testing.T) {
	const timeout = time.Minute
	for _, coalesced := range []bool{false, true} {
		var ctxDeadline time.Time
		var conn *deadlineConn
		dial := dialFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctxDeadline, _ = ctx.Deadline()
			client, server := net.Pipe()
			t.Cleanup(func() { server.Close() })
			conn = &deadlineConn{Conn: client}
			return conn, nil
		}, timeout, coalesced)
		before := time.Now()
		got, err := dial("tcp", "broker:5672")
		require.NoError(t, err)
		after := time.Now()
		require.False(t, ctxDeadline.Before(before.Add(timeout)) || ctxDeadline.After(after.Add(timeout)),
			"the dial's context ends at %v, not the dial timeout after the dial", ctxDeadline)
		require.False(t, conn.deadline.Before(before.Add(timeout)) || conn.deadline.After(after.Add(timeout)),
			"the connection's handshake deadline is %v, not the dial timeout after the dial", conn.deadline)
		_, isCoalesced := got.(*coalesce.Conn)
		require.Equal(t, coalesced, isCoalesced, "coalesced writes")
		require.NoError(t, got.Close())
	}
}

// A dialer that returns neither a connection nor an error fails the dial
// instead of panicking in the reconnect loop.
func TestDialFuncNoConnection(t *testing.T) {
	dial := dialFunc(func(context.Context, string, string) (net.Conn, error) { return nil, nil }, time.Second, true)
	_, err := dial("tcp", "broker:5672")
	require.True(t, errors.Is(err, errNoConn), "got %v", err)
}
