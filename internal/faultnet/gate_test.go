package faultnet

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// A gate's Cut closes what it dialled and refuses new dials with
// ECONNREFUSED until Restore; it forgets a connection once closed.
func TestGateCutsAndRestores(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // echo every accepted connection until it closes
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g := NewGate()
	echo := func(c net.Conn) error {
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.ReadFull(c, make([]byte, 1))
		return err
	}

	c, err := g.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := echo(c); err != nil {
		t.Fatalf("through an open gate: %v", err)
	}
	g.Cut()
	if err := echo(c); err == nil {
		t.Fatal("a connection dialled before the cut still works")
	}
	if _, err := g.DialContext(ctx, "tcp", ln.Addr().String()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while cut: %v, want ECONNREFUSED", err)
	}
	g.Restore()
	c, err = g.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial after Restore: %v", err)
	}
	if err := echo(c); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
	if n := g.open(); n != 1 {
		t.Fatalf("the gate holds %d connections, want the one open", n)
	}
	c.Close()
	if n := g.open(); n != 0 {
		t.Fatalf("the gate holds %d connections after they were closed", n)
	}
}

func (g *Gate) open() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}
