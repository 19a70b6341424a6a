// Command quickstart runs final with nothing installed: an SQLite file and
// a NATS server inside the process (package embedded), in a temporary
// directory. It commits an order and its two messages in one transaction,
// handles them through a middleware, shows that a rolled-back transaction
// publishes nothing, and exits 0.
//
//	go run ./_example/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/finalbus/final"
	"github.com/finalbus/final/embedded"
)

func main() {
	if err := run(); err != nil {
		log.Fatalf("quickstart: %v", err)
	}
}

func run() error {
	dir, err := os.MkdirTemp("", "final-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	env, err := embedded.Open(dir)
	if err != nil {
		return err
	}
	defer env.Close()
	fmt.Printf("1. SQLite database and in-process NATS server in %s\n", dir)

	if _, err := env.DB.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER NOT NULL)`); err != nil {
		return err
	}

	var (
		mu      sync.Mutex
		handled = map[string]bool{}
		done    = make(chan struct{})
	)
	logging := func(c *final.Context) error {
		start := time.Now()
		err := c.Next()
		fmt.Printf("   middleware: %s %s handled in %s (err: %v)\n", c.Topic, c.Message.Payload, time.Since(start).Round(time.Microsecond), err)
		return err
	}
	bus := final.New("quickstart", env.DB, env.Provider(), final.DefaultOptions())
	for _, topic := range []string{"order.created", "invoice.requested"} {
		bus.Subscribe(topic).Middleware(logging).Handler(func(c *final.Context) error {
			mu.Lock()
			defer mu.Unlock()
			handled[c.Topic+" "+string(c.Message.Payload)] = true
			if len(handled) == 2 {
				close(done)
			}
			return nil
		})
	}
	if err := bus.Start(); err != nil {
		return err
	}
	defer bus.Shutdown()
	fmt.Println("2. bus started: outbox table created, subscriptions declared")

	ctx := context.Background()
	tx, err := env.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	err = bus.TransactionContext(ctx, tx, func(txBus *final.TxBus) error {
		if _, err := tx.Exec(`INSERT INTO orders (id, total) VALUES (?, ?)`, "o-1", 4200); err != nil {
			return err
		}
		if err := txBus.Publish("order.created", []byte(`{"id":"o-1"}`)); err != nil {
			return err
		}
		return txBus.Publish("invoice.requested", []byte(`{"order":"o-1"}`))
	})
	if err != nil {
		return err
	}
	fmt.Println("3. committed order o-1 with two messages in one transaction")

	tx, err = env.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	errOutOfStock := errors.New("out of stock")
	err = bus.TransactionContext(ctx, tx, func(txBus *final.TxBus) error {
		if _, err := tx.Exec(`INSERT INTO orders (id, total) VALUES (?, ?)`, "o-2", 100); err != nil {
			return err
		}
		if err := txBus.Publish("order.created", []byte(`{"id":"o-2"}`)); err != nil {
			return err
		}
		return errOutOfStock
	})
	if !errors.Is(err, errOutOfStock) {
		return fmt.Errorf("the second transaction: %v, want it rolled back", err)
	}
	fmt.Println("4. rolled back order o-2: its row and its message are gone together")

	select {
	case <-done:
	case <-time.After(30 * time.Second):
		return errors.New("the committed messages were not handled within 30s")
	}
	// The rolled-back message was never stored, so nothing can send it;
	// the outbox empties as the broker confirms.
	var orders, rows int
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := env.DB.QueryRow(`SELECT (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM final_quickstart_outbox)`).Scan(&orders, &rows); err != nil {
			return err
		}
		if rows == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling the outbox, not synchronisation
	}
	mu.Lock()
	o2 := handled["order.created "+`{"id":"o-2"}`]
	mu.Unlock()
	if orders != 1 || rows != 0 || o2 {
		return fmt.Errorf("orders %d (want 1), outbox rows %d (want 0), rolled-back message handled: %v", orders, rows, o2)
	}
	fmt.Printf("5. both messages handled once, %d order in the table, outbox empty, nothing of o-2 published\n", orders)
	return nil
}
