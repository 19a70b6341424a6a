package faults

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/finalbus/final"
)

// The test binary doubles as the processes the suite kills.
//
//	producer: commits business rows with messages from 4 goroutines.
//	consumer: handles the scene's topic: works 5 ms, then records the
//	          delivery in a table as its last step, so a kill mostly lands
//	          mid-handler, before the record.
//	consumer-tail: records first, then works 5 ms: a kill mostly lands after
//	          the side effect and before the ack, at-least-once's worst case.
//	inbox-consumer: like consumer-tail, with an Inbox subscription: the
//	          record is written in the handler's transaction.
//
// The consumers print "start <ref>" on stdout when a handler first starts
// on a delivery, so the suite can tell a handler cut off by a kill.
func runRole(role string) int {
	svc, table, topic, recv := os.Getenv("FAULTS_SVC"), os.Getenv("FAULTS_TABLE"), os.Getenv("FAULTS_TOPIC"), os.Getenv("FAULTS_RECV")
	d := databaseNamed(os.Getenv("FAULTS_DB"))
	if d == nil {
		fmt.Fprintf(os.Stderr, "no database %q\n", os.Getenv("FAULTS_DB"))
		return 2
	}
	br := brokerNamed(os.Getenv("FAULTS_BROKER"))
	if br == nil {
		fmt.Fprintf(os.Stderr, "no broker %q\n", os.Getenv("FAULTS_BROKER"))
		return 2
	}
	db, err := sql.Open(d.driver, os.Getenv("FAULTS_DSN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	b := final.New(svc, db, br.provider(os.Getenv("FAULTS_BROKER_URL")), options().WithLogger(slog.New(ownerPrinter{})))
	started := func(c *final.Context) {
		if c.Attempt == 1 {
			fmt.Println("start", string(c.Message.Payload))
		}
	}
	work := func() { time.Sleep(5 * time.Millisecond) } // a handler that takes time
	record := func(c *final.Context, x interface {
		Exec(string, ...any) (sql.Result, error)
	}) error {
		_, err := x.Exec("INSERT INTO "+d.quote(recv)+" (ref) VALUES ("+d.ph+")", string(c.Message.Payload))
		return err
	}
	switch role {
	case "consumer":
		b.Subscribe(topic).Handler(func(c *final.Context) error {
			started(c)
			work()
			return record(c, db)
		})
	case "consumer-tail":
		b.Subscribe(topic).Handler(func(c *final.Context) error {
			started(c)
			if err := record(c, db); err != nil {
				return err
			}
			work()
			return nil
		})
	case "inbox-consumer":
		b.Subscribe(topic).Inbox().Handler(func(c *final.Context) error {
			started(c)
			if err := record(c, c.Tx()); err != nil {
				return err
			}
			work()
			return nil
		})
	}
	if err := b.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("ready")
	if role != "producer" {
		select {} // until killed
	}
	s := &scene{w: &world{db: d}, table: table, topic: topic}
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Minute) // a safety net: the suite kills it long before
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				_ = s.write(b, db, packOf(w, fmt.Sprintf("%s-%d-%d", os.Getenv("FAULTS_PREFIX"), w, i)), nil)
			}
		}()
	}
	wg.Wait()
	return 0
}

// proc is a process of the test binary in one role. Its stdout is read
// until the process exits.
type proc struct {
	cmd     *exec.Cmd
	drained chan struct{} // closed when stdout has reached EOF
	owner   string        // its bus's claim owner, known once it is ready
}

// spawn starts the test binary in role for scene s and waits until it is
// ready. The process is killed at the end of the test if still running.
func (s *scene) spawn(role, prefix string) *proc {
	s.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FAULTS_ROLE="+role, "FAULTS_SVC="+s.svc, "FAULTS_TABLE="+s.table,
		"FAULTS_TOPIC="+s.topic, "FAULTS_RECV="+s.recvTable, "FAULTS_DB="+s.w.db.name, "FAULTS_DSN="+s.w.dsn,
		"FAULTS_BROKER="+s.w.broker.name, "FAULTS_BROKER_URL="+s.w.brokerURL,
		"FAULTS_PREFIX="+prefix)
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	p := &proc{cmd: cmd, drained: make(chan struct{})}
	ready := make(chan struct{})
	go p.read(s, out, ready)
	s.t.Cleanup(func() { _ = p.kill() })
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	select {
	case <-ready:
	case <-p.drained:
		s.t.Fatalf("%s exited before it was ready", role)
	case <-t.C:
		s.t.Fatalf("%s not ready within a minute", role)
	}
	return p
}

// read takes the process's stdout line by line: "owner <id>", "ready"
// once, then the handlers' "start <ref>" lines, which may also come before
// it.
func (p *proc) read(s *scene, out io.Reader, ready chan<- struct{}) {
	defer close(p.drained)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if line := sc.Text(); line == "ready" {
			close(ready)
		} else if owner, ok := strings.CutPrefix(line, "owner "); ok {
			p.owner = owner // before "ready", which spawn waits for
		} else if ref, ok := strings.CutPrefix(line, "start "); ok {
			s.started(ref)
		}
	}
}

// kill sends SIGKILL and returns once the process is gone and everything
// it printed has been read.
func (p *proc) kill() error {
	err := p.cmd.Process.Kill()
	<-p.drained // Wait closes the pipe: read it to the end first
	_ = p.cmd.Wait()
	return err
}

// kill kills p and counts the rows its relay had claimed and not deleted,
// which another relay sends again once their lease ends.
func (s *scene) kill(p *proc) {
	s.t.Helper()
	if err := p.kill(); err != nil {
		s.t.Fatal(err)
	}
	if p.owner == "" {
		s.t.Fatal("the process never said which claim owner it is")
	}
	var n int
	q := "SELECT COUNT(*) FROM " + s.w.db.quote("final_"+s.svc+"_outbox") + " WHERE claimed_by = " + s.w.db.ph
	if err := s.w.rootDB.QueryRow(q, p.owner).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.claimedByKilled += n
	s.mu.Unlock()
}

// ownerPrinter is the roles' log handler: it prints "owner <id>" on stdout
// when the bus starts, so the suite can count the rows a killed process
// had claimed, and drops everything else.
type ownerPrinter struct{}

func (ownerPrinter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h ownerPrinter) WithAttrs([]slog.Attr) slog.Handler         { return h }
func (h ownerPrinter) WithGroup(string) slog.Handler              { return h }
func (ownerPrinter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "final: bus started" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "owner" {
				fmt.Println("owner", a.Value.String())
			}
			return true
		})
	}
	return nil
}
