// Command inbox shows effectively-once handling: a payment service credits
// an account for each "payment.captured" message inside a transaction the
// bus opens, and the same message delivered twice credits once. The credit
// and its follow-up "account.credited" message commit together.
// Run: go run ./_example/inbox
package main

import (
	"database/sql"
	"fmt"
	"log"
	"strconv"
	"time"

	"github.com/finalbus/final"
	"github.com/finalbus/final/_example/internal/exampleenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq/amqp"
)

func main() {
	db := exampleenv.OpenDB()
	defer db.Close()
	must(exec(db, `CREATE TABLE IF NOT EXISTS example_accounts (id INT PRIMARY KEY, balance INT NOT NULL)`))
	must(exec(db, `REPLACE INTO example_accounts (id, balance) VALUES (1, 0)`))
	defer exec(db, "DROP TABLE example_accounts") //nolint:errcheck

	// One worker, so messages are handled in the order they were queued:
	// the marker below then proves the duplicate was handled before it.
	bus := final.New("example_inbox", db, amqp.NewProvider(exampleenv.AMQPURL()),
		final.DefaultOptions().WithNumSubscriber(1))
	credited := make(chan string, 10)
	bus.Subscribe("example.payment.captured").Inbox().Handler(func(c *final.Context) error {
		amount, err := strconv.Atoi(string(c.Message.Payload))
		if err != nil {
			return final.Permanent(err) // cannot ever succeed: dead-letter, no retries
		}
		if _, err := c.Tx().Exec("UPDATE example_accounts SET balance = balance + ? WHERE id = 1", amount); err != nil {
			return err
		}
		// Sent if and only if the credit commits.
		return c.TxBus().Publish("example.account.credited", c.Message.Payload)
	})
	bus.Subscribe("example.account.credited").Handler(func(c *final.Context) error {
		credited <- string(c.Message.Payload)
		return nil
	})
	if err := bus.Start(); err != nil {
		log.Fatal(err)
	}
	defer bus.Shutdown()

	payment := message.New("example.payment.captured", []byte("250"))
	must(bus.PublishMessage(payment))
	fmt.Println("account.credited:", wait(credited))

	// The same payment again: the duplicate at-least-once delivery produces
	// after a crash. Then a zero payment as a marker.
	must(bus.PublishMessage(payment))
	must(bus.PublishMessage(message.New("example.payment.captured", []byte("0"))))
	if got := wait(credited); got != "0" {
		log.Fatalf("credited %s twice", got)
	}
	var balance int
	must(db.QueryRow("SELECT balance FROM example_accounts WHERE id = 1").Scan(&balance))
	fmt.Println("payment", payment.UUID, "delivered twice; balance:", balance)
	if balance != 250 {
		log.Fatal("the duplicate was applied")
	}
}

func wait(ch <-chan string) string {
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		log.Fatal("timed out")
	}
	return ""
}

func exec(db *sql.DB, q string) error { _, err := db.Exec(q); return err }

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
