// Command simple publishes messages outside any transaction and handles
// them behind two middlewares. Run: go run ./_example/simple
package main

import (
	"fmt"
	"log"
	"log/slog"
	"os"
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
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	bus := final.New("example_simple", db, amqp.NewProvider(exampleenv.AMQPURL()),
		final.DefaultOptions().WithLogger(logger))

	// Delivery is at-least-once and the queue outlives this process, so the
	// handler counts distinct messages of this run and ignores the rest.
	const n = 10
	run := message.NewUUID()
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
		done = make(chan struct{})
	)
	timing := func(c *final.Context) error {
		start := time.Now()
		err := c.Next()
		fmt.Printf("  handled %s in %s\n", c.Message.UUID, time.Since(start).Round(time.Microsecond))
		return err
	}
	tracing := func(c *final.Context) error {
		fmt.Printf("  trace-id=%v\n", c.Message.Header.Get("trace-id"))
		return c.Next()
	}
	bus.Subscribe("example.greeting").Middleware(timing, tracing).Handler(func(c *final.Context) error {
		if c.Message.Header.GetString("run") != run {
			fmt.Printf("skipped %q from an earlier run\n", c.Message.Payload)
			return nil
		}
		fmt.Printf("received %q (attempt %d)\n", c.Message.Payload, c.Attempt)
		mu.Lock()
		defer mu.Unlock()
		if !seen[c.Message.UUID] {
			seen[c.Message.UUID] = true
			if len(seen) == n {
				close(done)
			}
		}
		return nil
	})
	if err := bus.Start(); err != nil {
		log.Fatal(err)
	}
	defer bus.Shutdown()

	for i := 0; i < n; i++ {
		// Publish takes a topic and a payload; PublishMessage takes a
		// message whose headers, key or UUID the caller sets.
		m := message.New("example.greeting", []byte(fmt.Sprintf("hello %d", i)))
		m.Header.Set("trace-id", fmt.Sprintf("trace-%d", i))
		m.Header.Set("run", run)
		if err := bus.PublishMessage(m); err != nil {
			log.Fatal(err)
		}
	}
	select {
	case <-done:
		fmt.Printf("all %d messages handled\n", n)
	case <-time.After(30 * time.Second):
		log.Fatal("timed out waiting for messages")
	}
}
