// Command gorm does what _example/tx does with gorm: gormbus.SQLTx gives
// the bus the *sql.Tx of a gorm transaction, in gorm's plain and
// PrepareStmt modes, and the bus is built on the *sql.DB that gorm wraps,
// whose driver tells it the database.
//
//	go run ./_example/gorm                   # MariaDB/MySQL (FINAL_MYSQL_DSN)
//	go run ./_example/gorm -db postgres      # FINAL_POSTGRES_DSN, gorm.io/driver/postgres (pgx)
//	go run ./_example/gorm -db sqlite        # FINAL_SQLITE_FILE, gormlite (pure Go)
//	go run ./_example/gorm -prepare-stmt     # gorm's PrepareStmt mode
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/ncruces/go-sqlite3/gormlite"
	gormmysql "gorm.io/driver/mysql"
	gormpostgres "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/finalbus/final"
	"github.com/finalbus/final/_example/internal/exampleenv"
	"github.com/finalbus/final/gormbus"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq/amqp"
	"github.com/finalbus/final/outbox/sqlite"
)

type ExampleUser struct {
	ID   int64
	Name string
}

// dialector is gorm's dialector for the database named by -db.
func dialector(name string) (gorm.Dialector, error) {
	switch name {
	case "mysql":
		return gormmysql.Open(exampleenv.DSN()), nil
	case "postgres":
		dsn := os.Getenv("FINAL_POSTGRES_DSN")
		if dsn == "" {
			dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
		}
		return gormpostgres.Open(dsn), nil
	case "sqlite":
		// A file, in WAL mode with a busy timeout (outbox/sqlite refuses
		// a database without them); IMMEDIATE transactions take the write
		// lock at BEGIN.
		file := os.Getenv("FINAL_SQLITE_FILE")
		if file == "" {
			file = filepath.Join(os.TempDir(), "final-example-gorm.db")
		}
		return gormlite.Open("file:" + file + "?" + sqlite.DSNParams + "&_txlock=immediate"), nil
	}
	return nil, fmt.Errorf("-db %q: want mysql, postgres or sqlite", name)
}

func main() {
	dbName := flag.String("db", "mysql", "the database: mysql, postgres or sqlite")
	prepare := flag.Bool("prepare-stmt", false, "open gorm with PrepareStmt: true")
	flag.Parse()
	d, err := dialector(*dbName)
	if err != nil {
		log.Fatal(err)
	}
	gdb, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard, PrepareStmt: *prepare})
	if err != nil {
		log.Fatal(err)
	}
	db, err := gdb.DB() // the *sql.DB gorm wraps: the bus recognises its driver
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
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
		tx, err := gormbus.SQLTx(gtx)
		if err != nil {
			gtx.Rollback()
			return err
		}
		// The bus commits tx (or rolls it back) and sends at once.
		return bus.Transaction(tx, func(txBus *final.TxBus) error {
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
