package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSServerBinary is FINAL_TEST_NATS_SERVER, or nats-server on the PATH,
// or /usr/sbin/nats-server, where .ci/run finds it.
func NATSServerBinary() string {
	if v := os.Getenv("FINAL_TEST_NATS_SERVER"); v != "" {
		return v
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	return "/usr/sbin/nats-server"
}

// NATSServer is a nats-server process of a test's own, with JetStream and a
// store directory that outlives its restarts: a test may stop and start it
// without disturbing the shared server the other tests use.
type NATSServer struct {
	t        testing.TB
	bin, dir string
	port     int
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd has exited
}

// StartNATSServer starts a nats-server of t's own on a free port of
// 127.0.0.1 and waits until JetStream answers. It is stopped when t ends,
// whether t failed or not. A missing binary makes the test fail under
// CI=true and skip otherwise.
func StartNATSServer(t testing.TB) *NATSServer {
	t.Helper()
	bin := NATSServerBinary()
	if _, err := os.Stat(bin); err != nil {
		Unavailable(t, "nats-server binary: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &NATSServer{t: t, bin: bin, dir: t.TempDir(), port: port}
	t.Cleanup(func() { s.Stop(syscall.SIGKILL) })
	s.Start()
	return s
}

// URL is the server's nats:// URL.
func (s *NATSServer) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// Running reports whether the server process is running.
func (s *NATSServer) Running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Start starts the server, on its port and store directory, and waits
// (up to 30s) until JetStream answers; it fails the test otherwise.
func (s *NATSServer) Start() {
	s.t.Helper()
	if s.Running() {
		s.t.Fatal("testenv: the nats-server is running already")
	}
	cmd := exec.Command(s.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-js",
		"-sd", filepath.Join(s.dir, "store"), "-l", s.logPath())
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("testenv: start %s: %v", s.bin, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan<- struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.exited)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := jetStreamAnswers(s.URL())
		if err == nil {
			return
		}
		if !s.Running() || time.Now().After(deadline) {
			s.t.Fatalf("testenv: nats-server on port %d did not come up (%v); its log: %s", s.port, err, s.logPath())
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// Stop sends sig to the server (SIGTERM shuts it down cleanly, SIGKILL
// crashes it) and waits until it has exited; after 30s it kills it. It
// does nothing when the server is not running.
func (s *NATSServer) Stop(sig syscall.Signal) {
	if !s.Running() {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *NATSServer) logPath() string { return filepath.Join(s.dir, "nats-server.log") }

// jetStreamAnswers reports why JetStream at url does not answer, or nil.
func jetStreamAnswers(url string) error {
	nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	return nil
}
