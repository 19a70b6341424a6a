// Command rowcost measures what MariaDB spends, in CPU per transaction, on
// a transaction's outbox rows: none (the business insert alone), ten rows
// of one message each (one multi-row INSERT, as PublishMessages writes
// them), or one row holding all ten, each deleted afterwards in lists of
// 240 ids, as the acker does. The CPU is mariadbd's, read from /proc
// around each form, purge included.
//
//	go run ./bench/rowcost $(pidof mariadbd)
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"log"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/finalbus/final/internal/proccpu"
)

// ticks returns the user and system CPU of process pid, in clock ticks
// (1/100 s).
func ticks(pid string) int64 {
	t, err := proccpu.Ticks(pid)
	if err != nil {
		log.Fatal(err)
	}
	return t
}

const cols = `id BIGINT AUTO_INCREMENT PRIMARY KEY, message LONGBLOB NULL, status BIGINT NULL, create_at DATETIME(3) NULL, last_send_at DATETIME(3) NULL,
 available_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), attempts INT NOT NULL DEFAULT 0, last_error VARCHAR(1024) NULL, claimed_by VARCHAR(64) NULL, order_key BIGINT NULL,
 KEY a (available_at, id), KEY o (order_key, id)`

func main() {
	dsn := flag.String("dsn", "root@tcp(127.0.0.1:3306)/test", "the MariaDB to measure (it creates and drops grp_outbox and grp_business)")
	flag.Parse()
	pid := flag.Arg(0)
	if pid == "" {
		log.Fatal("usage: rowcost [-dsn DSN] <pid of mariadbd>")
	}
	db, err := sql.Open("mysql", *dsn)
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(16)
	const txs = 20000
	const producers = 8
	msg := make([]byte, 330)
	for round := 0; round < 2; round++ {
		for _, mode := range []string{"none", "rows", "group"} {
			db.Exec("DROP TABLE IF EXISTS grp_outbox")
			db.Exec("DROP TABLE IF EXISTS grp_business")
			for _, ddl := range []string{
				"CREATE TABLE grp_outbox (" + cols + ") ENGINE=InnoDB",
				"CREATE TABLE grp_business (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB",
			} {
				if _, err := db.Exec(ddl); err != nil {
					log.Fatal(err)
				}
			}
			time.Sleep(time.Second)
			ids := make(chan int64, 100000)
			var delWG sync.WaitGroup
			delWG.Add(1)
			go func() { // the acker: deletes in lists of up to 240
				defer delWG.Done()
				buf := []int64{}
				flush := func() {
					if len(buf) == 0 {
						return
					}
					var sb strings.Builder
					sb.WriteString("DELETE FROM grp_outbox WHERE id IN (")
					for i, id := range buf {
						if i > 0 {
							sb.WriteByte(',')
						}
						sb.WriteString(strconv.FormatInt(id, 10))
					}
					sb.WriteString(")")
					if _, err := db.Exec(sb.String()); err != nil {
						log.Fatal(err)
					}
					buf = buf[:0]
				}
				for id := range ids {
					buf = append(buf, id)
					if len(buf) == 240 {
						flush()
					}
				}
				flush()
			}()
			var n atomic.Int64
			t0 := ticks(pid)
			w0 := time.Now()
			var wg sync.WaitGroup
			for p := 0; p < producers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rowsQ := "INSERT INTO grp_outbox (message, create_at) VALUES " + strings.TrimSuffix(strings.Repeat("(?, NOW(3)),", 10), ",") + " RETURNING id"
					args := make([]any, 10)
					for i := range args {
						args[i] = msg
					}
					group := make([]byte, 0, 3400)
					for i := 0; i < 10; i++ {
						group = append(group, msg...)
					}
					for n.Add(1) <= txs {
						tx, err := db.Begin()
						if err != nil {
							log.Fatal(err)
						}
						if _, err := tx.Exec("INSERT INTO grp_business (v) VALUES (?)", "order"); err != nil {
							log.Fatal(err)
						}
						var got []int64
						switch mode {
						case "rows":
							r, err := tx.Query(rowsQ, args...)
							if err != nil {
								log.Fatal(err)
							}
							for r.Next() {
								var id int64
								if err := r.Scan(&id); err != nil {
									log.Fatal(err)
								}
								got = append(got, id)
							}
							r.Close()
						case "group":
							res, err := tx.Exec("INSERT INTO grp_outbox (message, create_at) VALUES (?, NOW(3))", group)
							if err != nil {
								log.Fatal(err)
							}
							id, _ := res.LastInsertId()
							got = append(got, id)
						}
						if err := tx.Commit(); err != nil {
							log.Fatal(err)
						}
						for _, id := range got {
							ids <- id
						}
					}
				}()
			}
			wg.Wait()
			close(ids)
			delWG.Wait()
			w1 := time.Now()
			for {
				var name string
				var hl int64
				db.QueryRow("SHOW GLOBAL STATUS LIKE 'Innodb_history_list_length'").Scan(&name, &hl)
				if hl < 100 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			t1 := ticks(pid)
			fmt.Printf("round %d %-5s mariadbd %6.1f us/tx = %5.1f us/msg; %5.0f tx/s wall\n", round, mode,
				float64(t1-t0)*10000/txs, float64(t1-t0)*1000/txs, txs/w1.Sub(w0).Seconds())
		}
	}
	db.Exec("DROP TABLE IF EXISTS grp_outbox")
	db.Exec("DROP TABLE IF EXISTS grp_business")
}
