package faultnet

import (
	"context"
	"fmt"
	"net"
	"sync"
	"syscall"
)

// Gate is a dialer whose link can be cut and restored, like a Proxy's,
// without standing between the client and the server: the connections it
// dials are the server's own, so a benchmark that cuts the link to build a
// backlog measures the drain after Restore on the same path as a client
// that dials directly. For clients that accept a dialer (amqp.WithDialer).
type Gate struct {
	dialer net.Dialer

	mu    sync.Mutex
	down  bool
	conns map[*gateConn]struct{}
}

// NewGate returns an open gate.
func NewGate() *Gate { return &Gate{conns: map[*gateConn]struct{}{}} }

// DialContext dials addr, or fails with ECONNREFUSED while the link is cut.
func (g *Gate) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if g.isDown() {
		return nil, refused(network, addr)
	}
	c, err := g.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.down { // cut while dialling
		c.Close()
		return nil, refused(network, addr)
	}
	gc := &gateConn{Conn: c, g: g}
	g.conns[gc] = struct{}{}
	return gc, nil
}

// Cut closes every connection the gate dialled and refuses new ones until
// Restore.
func (g *Gate) Cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.down = true
	for c := range g.conns {
		c.Conn.Close()
		delete(g.conns, c)
	}
}

// Restore lets dials through again.
func (g *Gate) Restore() {
	g.mu.Lock()
	g.down = false
	g.mu.Unlock()
}

func (g *Gate) isDown() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.down
}

// refused is the error of a dial while the link is cut.
func refused(network, addr string) error {
	return &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("faultnet: link to %s cut: %w", addr, syscall.ECONNREFUSED)}
}

// gateConn forgets itself in its gate when closed.
type gateConn struct {
	net.Conn
	g *Gate
}

func (c *gateConn) Close() error {
	c.g.mu.Lock()
	delete(c.g.conns, c)
	c.g.mu.Unlock()
	return c.Conn.Close()
}
