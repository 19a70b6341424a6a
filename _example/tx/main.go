// Command tx writes an order and its "order.created" message in one
// database/sql transaction; a rolled-back order sends nothing.
// Run: go run ./_example/tx
package main

import (
	"database/sql"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/finalbus/final"
	"github.com/finalbus/final/_example/internal/exampleenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq/amqp"
)

func main() {
	db := exampleenv.OpenDB()
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS example_orders (
		id BIGINT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(64) NOT NULL)`); err != nil {
		log.Fatal(err)
	}

	bus := final.New("example_tx", db, amqp.NewProvider(exampleenv.AMQPURL()), final.DefaultOptions())
	// The queue outlives this process: count only this run's messages.
	run := message.NewUUID()
	received := make(chan string, 10)
	bus.Subscribe("example.order.created").Handler(func(c *final.Context) error {
		if c.Message.Header.GetString("run") == run {
			received <- string(c.Message.Payload)
		}
		return nil
	})
	if err := bus.Start(); err != nil {
		log.Fatal(err)
	}
	defer bus.Shutdown()

	placeOrder := func(item string, valid bool) error {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		return bus.Transaction(tx, func(txBus *final.TxBus) error {
			if _, err := tx.Exec("INSERT INTO example_orders (item) VALUES (?)", item); err != nil {
				return err
			}
			m := message.New("example.order.created", []byte(item))
			m.Header.Set("run", run)
			if err := txBus.PublishMessage(m); err != nil {
				return err
			}
			if !valid {
				return errors.New("out of stock") // rolls back the order and the message
			}
			return nil
		})
	}
	must(placeOrder("book", true))
	fmt.Println("rolled back:", placeOrder("unicorn", false))
	must(placeOrder("lamp", true))

	for got := 0; got < 2; got++ {
		select {
		case item := <-received:
			fmt.Println("order.created:", item)
		case <-time.After(30 * time.Second):
			log.Fatal("timed out")
		}
	}
	// Confirmed rows are deleted in batches shortly after the broker's confirm.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var n int
		must(db.QueryRow("SELECT COUNT(*) FROM final_example_tx_outbox").Scan(&n))
		if n == 0 {
			fmt.Println("outbox empty: every message confirmed by the broker")
			break
		}
		if time.Now().After(deadline) {
			log.Fatalf("%d outbox rows still unconfirmed", n)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	_, _ = db.Exec("DROP TABLE example_orders")
}

func must(err error) {
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		log.Fatal(err)
	}
}
