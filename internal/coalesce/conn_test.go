package coalesce

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
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
	_ = b.SetReadDeadline(time.Now().Add(10 * time.Second)) // a test that would hang fails
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

// waitFor polls cond every millisecond until it holds, failing the test
// after ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after 10s for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

// busy returns a Conn whose writer is inside a system call the peer does
// not read: a byte was written and taken.
func busy(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	c, peer := pipeConn(t)
	if _, err := c.Write([]byte{'a'}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the writer to take the first byte", func() bool {
		pending, syscalls, _ := c.state()
		return syscalls == 1 && pending == 0
	})
	return c, peer
}

// A Write larger than MaxPending is taken whole once nothing else waits.
func TestWriteLargerThanTheBound(t *testing.T) {
	c, peer := busy(t)
	if _, err := c.Write([]byte{'b'}); err != nil { // waits behind the first
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte{'c'}, 2*MaxPending)
	wrote := make(chan error, 1)
	go func() { _, err := c.Write(big); wrote <- err }()
	got := make([]byte, 2+len(big))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if want := append([]byte("ab"), big...); !bytes.Equal(got, want) {
		t.Fatal("the peer read other bytes than were written")
	}
}

// Close refuses new writes, releases those waiting for room, and gives the
// socket what it accepted before, for at most closeFlush.
func TestCloseReleasesWaitingWrites(t *testing.T) {
	c, _ := busy(t) // the peer reads nothing
	if _, err := c.Write(bytes.Repeat([]byte{'y'}, MaxPending)); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	go func() { _, err := c.Write([]byte{'z'}); errs <- err }()
	waitFor(t, "a Write to wait for room", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.waiters == 1
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("the waiting write: %v, want %v", err, net.ErrClosed)
	}
	if _, err := c.Write([]byte("z")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a write after Close: %v, want %v", err, net.ErrClosed)
	}
	c.mu.Lock()
	writing := c.writing
	c.mu.Unlock()
	if writing {
		t.Fatal("the writing goroutine runs after Close returned")
	}
}

// What was written before Close reaches a peer that reads.
func TestCloseFlushesWhatWaits(t *testing.T) {
	// The peer reads as fast as it is scheduled: on a loaded machine that
	// can take longer than Close's 100 ms, which is not what is tested here.
	was := closeFlush
	closeFlush = 10 * time.Second
	t.Cleanup(func() { closeFlush = was })
	for range 20 {
		c, peer := pipeConn(t)
		read := make(chan []byte, 1)
		go func() { b, _ := io.ReadAll(peer); read <- b }()
		want := bytes.Repeat([]byte("0123456789"), 10_000)
		for i := 0; i < len(want); i += 1000 {
			if _, err := c.Write(want[i : i+1000]); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if got := <-read; !bytes.Equal(got, want) {
			t.Fatalf("the peer read %d bytes before the close, want %d", len(got), len(want))
		}
	}
}

var errBroken = errors.New("broken socket")

// brokenConn refuses every write.
type brokenConn struct{ net.Conn }

func (brokenConn) Write([]byte) (int, error) { return 0, errBroken }

// After a failed write, the Read that the socket's close ends returns the
// write's error: the cause, not "use of a closed connection".
func TestReadReturnsTheWriteError(t *testing.T) {
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	c := New(brokenConn{a})
	read := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); read <- err }()
	if _, err := c.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	if err := <-read; !errors.Is(err, errBroken) {
		t.Fatalf("read: %v, want %v", err, errBroken)
	}
	if _, err := c.Write([]byte("after")); !errors.Is(err, errBroken) {
		t.Fatalf("a write after the failure: %v, want %v", err, errBroken)
	}
}
