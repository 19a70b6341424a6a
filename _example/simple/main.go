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

	const n = 10
	var wg sync.WaitGroup
	wg.Add(n)
	timing := func(c *final.Context) error {
		start := time.Now()
		err := c.Next()
		fmt.Printf("  %s took %s\n", c.Message.UUID, time.Since(start).Round(time.Microsecond))
		return err
	}
	tracing := func(c *final.Context) error {
		fmt.Printf("  trace-id=%v\n", c.Message.Header.Get("trace-id"))
		return c.Next()
	}
	bus.Subscribe("example.greeting").Middleware(timing, tracing).Handler(func(c *final.Context) error {
		fmt.Printf("received %q (attempt %d)\n", c.Message.Payload, c.Attempt)
		wg.Done()
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
		if err := bus.PublishMessage(m); err != nil {
			log.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		fmt.Printf("all %d messages handled\n", n)
	case <-time.After(30 * time.Second):
		log.Fatal("timed out waiting for messages")
	}
}
