package amqp

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/finalbus/final/internal/coalesce"
)

// Dialer opens a connection to addr ("host:port") on network ("tcp"), the
// signature of net.Dialer's DialContext and of golang.org/x/net/proxy's
// ContextDialer.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// WithDialer opens the provider's connections with dial instead of plain
// TCP: through a SOCKS proxy, a service mesh's socket, or a test's gate
// that cuts the link. The context given to dial ends after
// WithDialTimeout's duration (sooner when the deadline of Init's context
// is nearer) and is cancelled once dial returns, so the connection must
// not depend on it. The returned connection must support deadlines: one
// as long as the dial timeout bounds the TLS and AMQP handshakes over it,
// as without WithDialer. TLS (an amqps:// URL) runs above it. An error dial returns
// is the connection attempt's, wrapped in mq.ErrUnavailable: Init (the
// bus's Start) returns it, and a reconnect tries again after the
// reconnect backoff. Default nil: net.Dialer's DialContext.
func WithDialer(dial Dialer) Option {
	return func(o *options) { o.dialer = dial }
}

// errNoConn: a WithDialer dial returned neither a connection nor an error.
var errNoConn = errors.New("amqp: WithDialer's dial returned no connection and no error")

// dialFunc is amqp091-go's DefaultDial on dialer (net.Dialer's when nil):
// the connection attempt bounded by timeout, and a deadline as long on the
// connection for the TLS and AMQP handshakes, which amqp091-go clears once
// the connection is open. With coalesced, the connection's writes are
// coalesced (coalesce.Conn): a publish's write no longer waits for a
// system call; TLS, when the URL asks for it, runs above. Only the
// publishing connection is dialled so: a publish whose bytes die with the
// process is never confirmed and is sent again, where an acknowledgement
// is counted as done once written (the acks' duplicate bound).
func dialFunc(dialer Dialer, timeout time.Duration, coalesced bool) func(network, addr string) (net.Conn, error) {
	if dialer == nil {
		dialer = (&net.Dialer{}).DialContext
	}
	return func(network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		conn, err := dialer(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if conn == nil {
			return nil, errNoConn
		}
		if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
			conn.Close()
			return nil, err
		}
		if coalesced {
			return coalesce.New(conn), nil
		}
		return conn, nil
	}
}
