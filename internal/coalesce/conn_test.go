package coalesce

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// pipeConn returns a Conn over one end of a net.Pipe, whose writes
// wait until the other end (returned too) reads them: a socket whose
// buffer is full.
func pipeConn(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return New(a), b
}

func (c *Conn) state() (pending int, syscalls int64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending), c.syscalls, c.err
}

// Writes made while the socket is busy reach it together, in order, and
// the Writes themselves do not wait for the socket.
func TestWritesShareSystemCalls(t *testing.T) {
	c, peer := pipeConn(t)
	var want bytes.Buffer
	frames := make([][]byte, 1000)
	for i := range frames {
		frames[i] = fmt.Appendf(nil, "frame %04d;", i)
		want.Write(frames[i])
	}
	wrote := make(chan error, 1)
	go func() {
		for i, p := range frames {
			if n, err := c.Write(p); err != nil || n != len(p) {
				wrote <- fmt.Errorf("write %d: %d, %v", i, n, err)
				return
			}
		}
		wrote <- nil
	}()
	// Every Write returns while the peer reads nothing: they wait in the
	// conn, at most one write to the socket under way.
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the writes waited for a socket that takes nothing")
	}
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("the peer read %q..., want %q...", got[:40], want.Bytes()[:40])
	}
	if _, syscalls, _ := c.state(); syscalls > 2 {
		t.Errorf("1,000 writes took %d writes to the socket, want at most 2 (one under way, then the rest)", syscalls)
	}
}

// The bytes waiting for the socket never exceed MaxPending: a Write past
// it waits for the socket.
func TestBytesAreBounded(t *testing.T) {
	c, peer := pipeConn(t)
	chunk := bytes.Repeat([]byte{'x'}, 64<<10)
	total := 3 * MaxPending
	done := make(chan error, 1)
	go func() {
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	buf := make([]byte, 4096)
	for read := 0; read < total; {
		if pending, _, _ := c.state(); pending > MaxPending {
			t.Fatalf("%d bytes wait for the socket, bound %d", pending, MaxPending)
		}
		n, err := peer.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		read += n
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A socket that fails a write fails the connection: the socket is closed,
// and every later Write returns the error.
func TestWriteErrorFailsTheConn(t *testing.T) {
	c, peer := pipeConn(t)
	_ = peer.Close()
	if _, err := c.Write([]byte("lost")); err != nil {
		t.Fatalf("the first write: %v (it only queues)", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, err := c.state(); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed socket write was not recorded")
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	if _, err := c.Write([]byte("after")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("a write after the failure: %v, want %v", err, io.ErrClosedPipe)
	}
	// The socket is closed too: a read of it fails at once.
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("a read after the failure: %v, want %v", err, io.ErrClosedPipe)
	}
}

// Close drops what waits, ends the writing goroutine and refuses later
// writes; a Write waiting for room returns.
func TestCloseReleasesWriters(t *testing.T) {
	c, _ := pipeConn(t) // the peer reads nothing
	big := bytes.Repeat([]byte{'y'}, MaxPending)
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := c.Write(big) // waits: the socket takes nothing
		errs <- err
	}()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := <-errs; !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("the waiting write: %v, want a closed connection", err)
	}
	if _, err := c.Write([]byte("z")); err == nil {
		t.Fatal("a write after Close succeeded")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		writing := c.writing
		c.mu.Unlock()
		if !writing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writing goroutine did not end after Close")
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}
