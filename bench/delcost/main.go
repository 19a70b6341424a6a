// Command delcost measures what MariaDB spends, in CPU per row, to delete
// confirmed outbox rows in lists, as the acker does: by the JSON_TABLE of
// their ids joined to the table (the form outbox/mysql uses, see its
// byids.go), by an IN list, or by a range of consecutive ids. It fills a
// table shaped as the outbox with rows of 300 bytes, deletes them all in
// lists of -batch, and reads mariadbd's CPU from /proc during the deletes
// and for three seconds after them (InnoDB's purge).
//
//	go run ./bench/delcost -form json -batch 450
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql"
)

// mariadbCPU is the CPU time of every mariadbd process, in seconds.
func mariadbCPU() float64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		log.Fatal(err)
	}
	var t float64
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil || !strings.Contains(string(b), "(mariadbd)") {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
		u, _ := strconv.ParseFloat(f[11], 64)
		k, _ := strconv.ParseFloat(f[12], 64)
		t += (u + k) / 100 // clock ticks
	}
	return t
}

func main() {
	dsn := flag.String("dsn", "root@tcp(127.0.0.1:3306)/test", "MariaDB DSN")
	form := flag.String("form", "json", "json (the acker's), in, or range")
	batch := flag.Int("batch", 450, "ids per DELETE")
	n := flag.Int("rows", 100000, "rows to insert and delete")
	flag.Parse()
	if *form != "json" && *form != "in" && *form != "range" {
		log.Fatalf("bad -form %q: json, in or range", *form)
	}
	db, err := sql.Open("mysql", *dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	const table = "final_delcost"
	if _, err := db.Exec(`DROP TABLE IF EXISTS ` + table); err != nil {
		log.Fatal(err)
	}
	defer db.Exec(`DROP TABLE IF EXISTS ` + table)
	// The outbox's columns and its index on available_at (outbox/mysql/schema.go).
	if _, err := db.Exec(`CREATE TABLE ` + table + ` (id BIGINT AUTO_INCREMENT PRIMARY KEY, message LONGBLOB NULL,
		status BIGINT NULL, create_at DATETIME(3) NULL, last_send_at DATETIME(3) NULL,
		available_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), attempts INT NOT NULL DEFAULT 0,
		last_error VARCHAR(1024) NULL, claimed_by VARCHAR(64) NULL, KEY (available_at)) ENGINE=InnoDB`); err != nil {
		log.Fatal(err)
	}
	payload := make([]byte, 300)
	insert := `INSERT INTO ` + table + ` (message, create_at) VALUES ` + strings.TrimSuffix(strings.Repeat("(?, NOW(3)),", 100), ",")
	args := make([]any, 100)
	for j := range args {
		args[j] = payload
	}
	for i := 0; i < *n; i += 100 {
		if _, err := db.Exec(insert, args...); err != nil {
			log.Fatal(err)
		}
	}
	var lo int64
	if err := db.QueryRow(`SELECT MIN(id) FROM ` + table).Scan(&lo); err != nil {
		log.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the inserts' background work: waiting it out, not synchronising
	c0, t0 := mariadbCPU(), time.Now()
	for id := lo; id < lo+int64(*n); id += int64(*batch) {
		ids := make([]string, 0, *batch)
		for k := int64(0); k < int64(*batch); k++ {
			ids = append(ids, strconv.FormatInt(id+k, 10))
		}
		switch *form {
		case "json":
			_, err = db.Exec(`DELETE o FROM JSON_TABLE(?, '$[*]' COLUMNS (outbox_id BIGINT PATH '$')) AS ids STRAIGHT_JOIN `+table+
				` AS o FORCE INDEX (PRIMARY) ON o.id = ids.outbox_id`, "["+strings.Join(ids, ",")+"]")
		case "in":
			_, err = db.Exec(`DELETE FROM ` + table + ` WHERE id IN (` + strings.Join(ids, ",") + `)`)
		case "range":
			_, err = db.Exec(`DELETE FROM `+table+` WHERE id BETWEEN ? AND ?`, id, id+int64(*batch)-1)
		}
		if err != nil {
			log.Fatal(err)
		}
	}
	took := time.Since(t0)
	c1 := mariadbCPU()
	time.Sleep(3 * time.Second) // the purge of the deleted rows: measured, not waited for
	c2 := mariadbCPU()
	fmt.Printf("%s, %d ids a DELETE: %v; mariadbd %.2f s during (%.1f µs a row), %.2f s in the 3 s after (%.1f µs a row, purge)\n",
		*form, *batch, took.Round(time.Millisecond), c1-c0, (c1-c0)/float64(*n)*1e6, c2-c1, (c2-c1)/float64(*n)*1e6)
}
