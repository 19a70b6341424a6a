package amqp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
)

// recordingDialer dials with net.Dialer and records what it was asked.
type recordingDialer struct {
	mu        sync.Mutex
	addrs     []string
	deadlined int // dials whose context had a deadline
}

func (d *recordingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, addr)
	if _, ok := ctx.Deadline(); ok {
		d.deadlined++
	}
	d.mu.Unlock()
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

// Every connection of the provider, the publishing one and the consuming
// one, is opened by the dialer given with WithDialer, to the URL's host,
// with the dial timeout in its context.
func TestWithDialerOpensEveryConnection(t *testing.T) {
	url := testenv.AMQP(t)
	var d recordingDialer
	roundTrip(t, amqp.NewProvider(url, amqp.WithDialer(d.dial)))
	d.mu.Lock()
	defer d.mu.Unlock()
	require.GreaterOrEqual(t, len(d.addrs), 2, "the publishing and the consuming connection")
	for _, a := range d.addrs {
		require.Equal(t, testenv.Hostport(url), a)
	}
	require.Equal(t, len(d.addrs), d.deadlined, "a dial without the dial timeout")
}

// TLS runs above the connection the dialer returns.
func TestWithDialerUnderTLS(t *testing.T) {
	ca := newCA(t, "final test CA")
	proxy := startTLSProxy(t, &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "broker", "127.0.0.1")}})
	var d recordingDialer
	roundTrip(t, amqp.NewProvider(proxy.url(t), amqp.WithTLS(&tls.Config{RootCAs: ca.pool()}), amqp.WithDialer(d.dial)))
	require.GreaterOrEqual(t, proxy.handshakes.Load(), int32(2), "the connections went through TLS")
	d.mu.Lock()
	defer d.mu.Unlock()
	require.GreaterOrEqual(t, len(d.addrs), 2, "the connections were not the dialer's")
}

// A dialer's error is the connection attempt's: mq.ErrUnavailable, which
// the bus retries, wrapping it.
func TestWithDialerErrorIsUnavailable(t *testing.T) {
	errNoRoute := errors.New("no route to the broker")
	p := amqp.NewProvider(testenv.AMQP(t), amqp.WithDialTimeout(time.Second),
		amqp.WithDialer(func(context.Context, string, string) (net.Conn, error) { return nil, errNoRoute }))
	err := p.Init(context.Background(), mq.Config{Service: testenv.Service(t, nil), Logger: quiet()})
	require.ErrorIs(t, err, mq.ErrUnavailable)
	require.ErrorIs(t, err, errNoRoute)
	require.ErrorContains(t, err, "guest:xxxxx@", "the error names the broker, password masked")
	require.NoError(t, p.Close())
}
