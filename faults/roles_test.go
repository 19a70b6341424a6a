package faults

import (
	"bufio"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/finalbus/final"
	"github.com/finalbus/final/mq/amqp"
)

// The test binary doubles as the processes the suite kills.
//
//	producer: commits business rows with messages from 4 goroutines.
//	consumer: handles the scene's topic, recording each delivery in a table
//	          before it returns, slowly enough that kills land mid-handler.
//	inbox-consumer: the same with an Inbox subscription: the record is
//	          written in the handler's transaction.
func runRole(role string) int {
	svc, table, topic, recv := os.Getenv("FAULTS_SVC"), os.Getenv("FAULTS_TABLE"), os.Getenv("FAULTS_TOPIC"), os.Getenv("FAULTS_RECV")
	db, err := sql.Open("mysql", os.Getenv("FAULTS_DSN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	b := final.New(svc, db, amqp.NewProvider(os.Getenv("FAULTS_AMQP")), options())
	switch role {
	case "consumer":
		b.Subscribe(topic).Handler(func(c *final.Context) error {
			if _, err := db.Exec("INSERT INTO `"+recv+"` (ref) VALUES (?)", string(c.Message.Payload)); err != nil {
				return err
			}
			time.Sleep(5 * time.Millisecond) // a handler that takes time: the kill lands mid-handler
			return nil
		})
	case "inbox-consumer":
		b.Subscribe(topic).Inbox().Handler(func(c *final.Context) error {
			if _, err := c.Tx().Exec("INSERT INTO `"+recv+"` (ref) VALUES (?)", string(c.Message.Payload)); err != nil {
				return err
			}
			time.Sleep(5 * time.Millisecond) // a handler that takes time: the kill lands mid-handler
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
	s := &scene{table: table, topic: topic}
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Minute) // a safety net: the suite kills it long before
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				_ = s.commit(b, db, fmt.Sprintf("%s-%d-%d", os.Getenv("FAULTS_PREFIX"), w, i))
			}
		}()
	}
	wg.Wait()
	return 0
}

// spawn starts the test binary in role for scene s and waits until it is
// ready. The process is killed at the end of the test if still running.
func (s *scene) spawn(role, prefix string) *exec.Cmd {
	s.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FAULTS_ROLE="+role, "FAULTS_SVC="+s.svc, "FAULTS_TABLE="+s.table,
		"FAULTS_TOPIC="+s.topic, "FAULTS_RECV="+s.recvTable, "FAULTS_DSN="+s.w.dsn, "FAULTS_AMQP="+s.w.amqpURL,
		"FAULTS_PREFIX="+prefix)
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		s.t.Fatalf("%s did not start: %q %v", role, line, err)
	}
	return cmd
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
}
