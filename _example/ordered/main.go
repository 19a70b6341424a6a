// Command ordered handles account events in order per account, while
// different accounts are handled in parallel. Run: go run ./_example/ordered
package main

import (
	"fmt"
	"log"
	"strings"
	"sync"
	"time"

	"github.com/finalbus/final"
	"github.com/finalbus/final/_example/internal/exampleenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq/amqp"
)

func main() {
	db := exampleenv.OpenDB()
	defer db.Close()
	bus := final.New("example_ordered", db, amqp.NewProvider(exampleenv.AMQPURL()), final.DefaultOptions())

	run := message.NewUUID() // the queues outlive this process: count only this run's events
	accounts := []string{"alice", "bob", "carol"}
	events := []string{"opened", "deposited", "withdrew", "deposited", "closed"}
	var (
		mu   sync.Mutex
		seen = map[string][]string{}
		done = make(chan struct{})
	)
	bus.Subscribe("example.account.event").Ordered().Handler(func(c *final.Context) error {
		if c.Message.Header.GetString("run") != run {
			return nil
		}
		time.Sleep(10 * time.Millisecond) // some work: other accounts proceed meanwhile
		mu.Lock()
		defer mu.Unlock()
		seen[c.Key] = append(seen[c.Key], string(c.Message.Payload))
		total := 0
		for _, s := range seen {
			total += len(s)
		}
		if total == len(accounts)*len(events) {
			close(done)
		}
		return nil
	})
	if err := bus.Start(); err != nil {
		log.Fatal(err)
	}
	defer bus.Shutdown()

	// Each account's events, in order, interleaved with the other accounts'.
	for _, event := range events {
		for _, account := range accounts {
			m := message.New("example.account.event", []byte(event), message.WithKey(account))
			m.Header.Set("run", run)
			if err := bus.PublishMessage(m); err != nil {
				log.Fatal(err)
			}
		}
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		log.Fatal("timed out")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, account := range accounts {
		got := strings.Join(seen[account], " → ")
		fmt.Printf("%-5s %s\n", account, got)
		if got != strings.Join(events, " → ") {
			log.Fatalf("%s out of order", account)
		}
	}
}
