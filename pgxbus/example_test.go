package pgxbus_test

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finalbus/final"
	"github.com/finalbus/final/mq/amqp"
	"github.com/finalbus/final/pgxbus"
)

// A business row and its message in one pgx.Tx, and an Inbox handler that
// writes in the pgx.Tx the bus began.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/test")
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	bus := pgxbus.New("order_svc", pool, amqp.NewProvider("amqp://guest:guest@127.0.0.1:5672/"), final.DefaultOptions())
	bus.Subscribe("payment.received").Inbox().Handler(func(c *final.Context) error {
		_, err := pgxbus.Tx(c).Exec(c.Context(), `UPDATE orders SET paid = true WHERE id = $1`, string(c.Message.Payload))
		return err
	})
	if err := bus.Start(); err != nil {
		panic(err)
	}
	defer bus.Shutdown()

	tx, err := pool.Begin(ctx)
	if err != nil {
		panic(err)
	}
	err = pgxbus.Transaction(ctx, bus, tx, func(txBus *final.TxBus) error {
		if _, err := tx.Exec(ctx, `INSERT INTO orders (id) VALUES ($1)`, "o-1"); err != nil {
			return err
		}
		return txBus.Publish("order.created", []byte(`{"id":"o-1"}`))
	})
	if err != nil {
		panic(err)
	}
}
