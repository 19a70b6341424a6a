// Command gorm does what _example/tx does with gorm: the bus gets gorm's
// *sql.Tx through gormTx.Statement.ConnPool. Run: go run ./_example/gorm
package main

import (
	"database/sql"
	"errors"
	"fmt"
	"log"
	"time"

	gormmysql "gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/finalbus/final"
	"github.com/finalbus/final/_example/internal/exampleenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq/amqp"
)

type ExampleUser struct {
	ID   int64
	Name string
}

func main() {
	db := exampleenv.OpenDB()
	defer db.Close()
	gdb, err := gorm.Open(gormmysql.New(gormmysql.Config{Conn: db}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	if err := gdb.AutoMigrate(&ExampleUser{}); err != nil {
		log.Fatal(err)
	}

	bus := final.New("example_gorm", db, amqp.NewProvider(exampleenv.AMQPURL()), final.DefaultOptions())
	// The queue outlives this process: count only this run's messages.
	run := message.NewUUID()
	received := make(chan string, 10)
	bus.Subscribe("example.user.registered").Handler(func(c *final.Context) error {
		if c.Message.Header.GetString("run") == run {
			received <- string(c.Message.Payload)
		}
		return nil
	})
	if err := bus.Start(); err != nil {
		log.Fatal(err)
	}
	defer bus.Shutdown()

	register := func(name string, fail bool) error {
		gtx := gdb.Begin()
		if gtx.Error != nil {
			return gtx.Error
		}
		return bus.Transaction(gtx.Statement.ConnPool.(*sql.Tx), func(txBus *final.TxBus) error {
			if err := gtx.Create(&ExampleUser{Name: name}).Error; err != nil {
				return err
			}
			m := message.New("example.user.registered", []byte(name))
			m.Header.Set("run", run)
			if err := txBus.PublishMessage(m); err != nil {
				return err
			}
			if fail {
				return errors.New("name taken")
			}
			return nil
		})
	}
	if err := register("ada", false); err != nil {
		log.Fatal(err)
	}
	fmt.Println("rolled back:", register("mallory", true))
	if err := register("grace", false); err != nil {
		log.Fatal(err)
	}
	for got := 0; got < 2; got++ {
		select {
		case name := <-received:
			fmt.Println("user.registered:", name)
		case <-time.After(30 * time.Second):
			log.Fatal("timed out")
		}
	}
	_ = gdb.Migrator().DropTable(&ExampleUser{})
}
