// Package coalesce gathers the writes to a connection into fewer system
// calls, for clients that flush each message: amqp091-go writes each
// publish with a write of its own.
package coalesce

import (
	"net"
	"sync"
)

// MaxPending bounds the bytes a Conn holds that have not reached
// the socket; a Write beyond it waits for the socket, as a plain one does.
const MaxPending = 1 << 20

// Conn is a connection whose writes reach the socket several at a time.
// amqp091-go flushes each publish (its method, header and body frames)
// with a write system call of its own; on the benchmark machine a
// publishing process spent half its CPU in them (docs/performance.md).
// Here a Write only copies its bytes, and a goroutine gives the socket all
// that has gathered, so the writes made while one system call runs go out
// together in the next. It is the flusher of nats.go's connection, put
// under amqp091-go's.
//
// What a Write accepted is what a kernel's socket buffer would have
// accepted: a write the socket then refuses fails the connection (the
// socket is closed, so amqp091-go's reader sees it at once), and every later
// Write returns the error. Publishes lost so are unconfirmed, and sent
// again, as with any link that breaks. Close drops what waits: amqp091-go
// closes a connection after the broker answered its close, by when
// everything before it was sent, or after it failed.
//
// The writing goroutine lives only while bytes wait: the Write that finds
// none waiting starts it, and it ends when it has written them all or the
// socket failed.
type Conn struct {
	net.Conn

	mu       sync.Mutex
	room     sync.Cond // signalled when the writer took the bytes waiting, or failed
	pending  []byte    // accepted, not yet given to the socket
	spare    []byte    // the buffer the writer last wrote, reused
	writing  bool      // the writing goroutine runs
	err      error     // the socket's write error, or net.ErrClosed: every later Write returns it
	syscalls int64     // writes given to the socket, for the tests
}

// New returns c with its writes coalesced. The Conn owns c: its Close
// closes c.
func New(c net.Conn) *Conn {
	cc := &Conn{Conn: c}
	cc.room.L = &cc.mu
	return cc
}

// Write queues p for the socket. It waits only while MaxPending bytes
// wait already (a p larger than that waits until none do).
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && len(c.pending) > 0 && len(c.pending)+len(p) > MaxPending {
		c.room.Wait()
	}
	if c.err != nil {
		return 0, c.err
	}
	c.pending = append(c.pending, p...)
	if !c.writing {
		c.writing = true
		go c.write()
	}
	return len(p), nil
}

// write gives the socket what waits until nothing does.
func (c *Conn) write() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.pending) > 0 && c.err == nil {
		buf := c.pending
		c.pending = c.spare[:0]
		c.syscalls++
		c.mu.Unlock()
		_, err := c.Conn.Write(buf)
		c.mu.Lock()
		c.spare = buf
		if err != nil && c.err == nil {
			c.err = err
			c.pending = nil
			_ = c.Conn.Close()
		}
		c.room.Broadcast()
	}
	c.writing = false
}

// Close closes the socket; bytes still waiting are dropped.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.pending = nil
	c.room.Broadcast()
	c.mu.Unlock()
	return c.Conn.Close()
}
