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
// without disturbing the shared server the other tests use. Its lame duck
// mode lasts 30s (the server's minimum) after a grace period of 1s, and
// ends sooner once its few clients are gone.
type NATSServer struct {
	t        testing.TB
	bin, dir string
	port     int
	version  string
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd has exited
}

const natsServerConf = "lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"1s\"\n"

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
	if err := os.WriteFile(s.confPath(), []byte(natsServerConf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	s.Start()
	return s
}

// Version is the server's version, as it announces it.
func (s *NATSServer) Version() string { return s.version }

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
	cmd := exec.Command(s.bin, "-c", s.confPath(), "-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-js",
		"-sd", filepath.Join(s.dir, "store"), "-l", s.LogPath())
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
		v, err := jetStreamAnswers(s.URL())
		if err == nil {
			s.version = v
			return
		}
		if !s.Running() || time.Now().After(deadline) {
			s.t.Fatalf("testenv: nats-server on port %d did not come up (%v); its log: %s", s.port, err, s.LogPath())
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// Stop shuts the server down cleanly (SIGTERM, as start-stop-daemon
// --stop and most service managers do) and waits until it has exited.
func (s *NATSServer) Stop() { s.signal(func(p *os.Process) error { return p.Signal(syscall.SIGTERM) }) }

// LameDuck puts the server in lame duck mode (nats-server --signal ldm,
// SIGUSR2 on Unix), NATS's way to stop a server: it stops accepting
// clients, closes the connections of those it has after the grace period,
// and then shuts down. It waits until the server has exited.
func (s *NATSServer) LameDuck() {
	s.signal(func(p *os.Process) error {
		out, err := exec.Command(s.bin, "--signal", "ldm="+strconv.Itoa(p.Pid)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	})
}

// Kill crashes the server (SIGKILL) and waits until it has exited.
func (s *NATSServer) Kill() { s.signal((*os.Process).Kill) }

// signal sends the server a signal with send and waits until it has exited;
// after a minute it kills it. It does nothing when the server is not
// running.
func (s *NATSServer) signal(send func(*os.Process) error) {
	if !s.Running() {
		return
	}
	if err := send(s.cmd.Process); err != nil {
		s.t.Errorf("testenv: signal nats-server: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(time.Minute):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *NATSServer) confPath() string { return filepath.Join(s.dir, "nats-server.conf") }

// LogPath is the server's log file.
func (s *NATSServer) LogPath() string { return filepath.Join(s.dir, "nats-server.log") }

// jetStreamAnswers returns the version of the server at url, or why its
// JetStream does not answer.
func jetStreamAnswers(url string) (string, error) {
	js, done, err := JetStream(url, time.Second)
	if err != nil {
		return "", err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		return "", fmt.Errorf("JetStream: %w", err)
	}
	return js.Conn().ConnectedServerVersion(), nil
}
