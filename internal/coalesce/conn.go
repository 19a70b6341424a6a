// Package coalesce gathers the writes to a connection into fewer system
// calls, for clients that flush each message: amqp091-go writes each
// publish with a write of its own.
package coalesce

import (
	"net"
	"sync"
	"time"
)

// MaxPending bounds the bytes a Conn has accepted that no system call has
// taken yet: a Write past it waits until the system call under way returns,
// as a plain one waits for the socket. With the bytes of that call, at most
// twice MaxPending have not reached the socket.
const MaxPending = 1 << 20

// closeFlush bounds how long Close waits for the bytes accepted before it to
// reach the socket. A variable only so that a test can give a peer on a
// loaded machine the time it needs to read them.
var closeFlush = 100 * time.Millisecond

// Conn is a connection whose writes reach the socket several at a time.
// amqp091-go flushes each publish (its method, header and body frames)
// with a write system call of its own; on the benchmark machine a
// publishing process spent half its CPU in them (docs/performance.md).
// Here a Write only copies its bytes, and a goroutine gives the socket all
// that has gathered, so the writes made while one system call runs go out
// together in the next. It is the flusher of nats.go's connection, put
// under amqp091-go's.
//
// A Write that returned has put its bytes in the process's memory, not yet
// in the kernel's: they reach the peer unless the socket fails first or
// the process dies. So a Conn suits writes whose loss the protocol
// recovers, such as publishes awaiting their confirm (one never confirmed
// is sent again), and not writes a caller counts as done once written,
// such as acknowledgements. A write the socket refuses fails the
// connection: the socket is closed, so amqp091-go's reader stops at once,
// and every later Write, and the Read that the close ends, return that
// error. Nothing written after the refused bytes reaches the peer.
//
// Close gives the socket what waits, for at most closeFlush, then closes
// it. The writing goroutine runs while bytes wait: a Write that finds none
// running starts it, and it ends once it has written them all, or the
// socket failed.
type Conn struct {
	net.Conn

	mu       sync.Mutex
	room     sync.Cond // broadcast when a system call returns, the writer ends or Close begins
	pending  []byte    // accepted, not yet taken by a system call
	spare    []byte    // the buffer of the last system call, reused
	writing  bool      // the writing goroutine runs
	closing  bool      // Close was called: Write refuses
	err      error     // the socket's write error: every later Write and failed Read return it
	syscalls int64     // writes given to the socket, for the tests
	waiters  int       // Writes waiting for room, for the tests
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
	for c.err == nil && !c.closing && len(c.pending) > 0 && len(c.pending)+len(p) > MaxPending {
		c.waiters++
		c.room.Wait()
		c.waiters--
	}
	switch {
	case c.closing:
		return 0, net.ErrClosed
	case c.err != nil:
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
		if err != nil {
			c.err = err
			c.pending = nil
			_ = c.Conn.Close()
		}
		c.room.Broadcast()
	}
	c.writing = false
	c.room.Broadcast()
}

// Read reads from the socket; once a write failed (before any Close), a
// failed Read returns the write's error, the cause, rather than the closed
// socket's.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.mu.Lock()
		if c.err != nil && !c.closing {
			err = c.err
		}
		c.mu.Unlock()
	}
	return n, err
}

// Close gives the socket the bytes accepted before it, waiting at most
// closeFlush, and closes it; later Writes return net.ErrClosed.
func (c *Conn) Close() error {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.room.Broadcast() // Writes waiting for room return
		if c.writing {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(closeFlush))
			for c.writing {
				c.room.Wait()
			}
		}
		c.pending = nil
	}
	c.mu.Unlock()
	return c.Conn.Close()
}
