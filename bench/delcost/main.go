// Command delcost measures what MariaDB spends, in CPU per row, to delete
// confirmed outbox rows in lists, as the acker does. It fills an outbox
// table that the library's own migration creates (outbox/mysql, its
// indexes included) with rows of 300 bytes, deletes them all in lists of
// -batch, and reads mariadbd's CPU from /proc during the deletes and for
// three seconds after them (InnoDB's purge). The forms: acker, the store's
// own Delete (the acker's path: the rows locked by id, then deleted by id,
// in one transaction); in, one DELETE by an IN list; range, one DELETE of
// a range of consecutive ids; json, one DELETE by ids joined from a JSON
// array, as a held claim's Commit deletes (outbox/mysql's byIDs); mark, one UPDATE by an IN list of a column no
// index holds (status), the confirmation a design that drops partitions
// instead of deleting rows would still write; partition, the same marks
// on a table partitioned by id ranges of -part rows, each partition
// truncated once its rows are marked. The last two weigh a partitioned
// outbox (docs/performance.md, "What is not met"); the library has none.
// held: the relay's held claims, one after another, each claiming -batch
// rows (the store's ClaimHeld: scan, lock, read) and deleting them in its
// own transaction (Held.Commit); this process's CPU is reported too, so
// the claim's share of a drain shows beside the DELETE's (-form json).
// held2: the same, but each claim is taken while the one before it is still
// held, and that one commits after it, as the relay's two held claims
// (OutboxHeldClaims) do while their messages are published.
//
//	go run ./bench/delcost -form acker $(pidof mariadbd)
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/finalbus/final/internal/proccpu"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/mysql"
)

func main() {
	dsn := flag.String("dsn", "root@tcp(127.0.0.1:3306)/test", "the MariaDB to measure (it creates and drops final_delcost)")
	form := flag.String("form", "acker", "acker (the store's Delete), in, range, json, mark, partition, held or held2")
	part := flag.Int("part", 10000, "-form partition: rows a partition")
	batch := flag.Int("batch", 450, "ids per delete")
	n := flag.Int("rows", 100000, "rows to insert and delete")
	dropIndex := flag.String("drop-index", "", "indexes of the library's table to drop before the inserts, comma-separated (idx_final_available, idx_final_order_id): what each costs a row")
	flag.Parse()
	pid := flag.Arg(0)
	if pid == "" {
		log.Fatal("usage: delcost [-form acker|in|range|json|mark|partition|held|held2] [-batch N] [-rows N] [-part N] [-dsn DSN] <pid of mariadbd>")
	}
	switch *form {
	case "acker", "in", "range", "json", "mark", "partition", "held", "held2":
	default:
		log.Fatalf("bad -form %q: acker, in, range, json, mark, partition, held or held2", *form)
	}
	held := *form == "held" || *form == "held2"
	if *batch <= 0 || *n <= 0 || *part <= 0 || *n%100 != 0 {
		log.Fatal("-batch, -rows and -part must be positive, and -rows a multiple of 100 (the rows go in 100 a statement)")
	}
	// seconds is the CPU process p has used (user and system).
	seconds := func(p string) float64 {
		t, err := proccpu.Ticks(p)
		if err != nil {
			log.Fatal(err)
		}
		return float64(t) / 100
	}
	self := strconv.Itoa(os.Getpid())
	cpu := func() float64 { return seconds(pid) }  // mariadbd's
	own := func() float64 { return seconds(self) } // this process's
	ctx := context.Background()
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
	store, err := mysql.New(db, table, mysql.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	for _, ix := range strings.Split(*dropIndex, ",") {
		if ix == "" {
			continue
		}
		if held || *form == "acker" {
			log.Fatal("-drop-index: the store's own statements (-form held, held2, acker) use both indexes")
		}
		if ix != "idx_final_available" && ix != "idx_final_order_id" {
			log.Fatalf("-drop-index %q: idx_final_available or idx_final_order_id", ix)
		}
		if _, err := db.Exec(`ALTER TABLE ` + table + ` DROP INDEX ` + ix); err != nil {
			log.Fatal(err)
		}
	}
	if *form == "partition" {
		// The fresh table's ids start at 1.
		var parts []string
		for i := 0; i*(*part) < *n; i++ {
			parts = append(parts, fmt.Sprintf("PARTITION p%d VALUES LESS THAN (%d)", i, 1+(i+1)*(*part)))
		}
		parts = append(parts, "PARTITION pmax VALUES LESS THAN MAXVALUE")
		if _, err := db.Exec(`ALTER TABLE ` + table + ` PARTITION BY RANGE (id) (` + strings.Join(parts, ", ") + `)`); err != nil {
			log.Fatal(err)
		}
	}
	// A message as the library stores it (an envelope of a 256-byte
	// payload, about 300 bytes), so that a claim decodes it as the relay's.
	payload, err := message.Marshal(message.New("delcost", make([]byte, 256)))
	if err != nil {
		log.Fatal(err)
	}
	insert := `INSERT INTO ` + table + ` (message, create_at) VALUES ` + strings.TrimSuffix(strings.Repeat("(?, NOW(3)),", 100), ",")
	args := make([]any, 100)
	for j := range args {
		args[j] = payload
	}
	ci0 := cpu()
	for i := 0; i < *n; i += 100 {
		if _, err := db.Exec(insert, args...); err != nil {
			log.Fatal(err)
		}
	}
	var lo int64
	if err := db.QueryRow(`SELECT MIN(id) FROM ` + table).Scan(&lo); err != nil {
		log.Fatal(err)
	}
	if *form == "partition" && lo != 1 {
		log.Fatalf("ids start at %d, not at 1: the partitions would not hold the rows they are truncated for", lo)
	}
	ci1 := cpu()
	time.Sleep(2 * time.Second) // the inserts' background work: waiting it out, not synchronising
	var nextPart int64          // -form partition: the first partition not truncated
	c0, t0, o0 := cpu(), time.Now(), own()
	if held {
		commit := func(h outbox.Held) {
			recs := h.Records()
			ids := make([]int64, len(recs))
			for i, r := range recs {
				ids[i] = r.ID
			}
			if err := h.Commit(ctx, ids); err != nil {
				log.Fatal(err)
			}
		}
		var open outbox.Held // -form held2: the claim before, still held
		for {
			h, err := store.ClaimHeld(ctx, "delcost", *batch, 0, time.Minute)
			if err != nil {
				log.Fatal(err)
			}
			if open != nil {
				commit(open)
				open = nil
			}
			if h == nil {
				break
			}
			if *form == "held2" {
				open = h
				continue
			}
			commit(h)
		}
		if left, err := store.Len(ctx); err != nil || left != 0 {
			log.Fatalf("%d rows left after the claims found none (%v)", left, err)
		}
	}
	for first := lo; !held && first < lo+int64(*n); first += int64(*batch) {
		ids := make([]int64, 0, *batch)
		for id := first; id < first+int64(*batch) && id < lo+int64(*n); id++ {
			ids = append(ids, id)
		}
		var list []string // the ids as SQL literals, for the forms that write them
		if *form != "acker" && *form != "range" {
			list = make([]string, len(ids))
			for i, id := range ids {
				list[i] = strconv.FormatInt(id, 10)
			}
		}
		switch *form {
		case "acker":
			err = store.Delete(ctx, ids)
		case "in":
			_, err = db.Exec(`DELETE FROM ` + table + ` WHERE id IN (` + strings.Join(list, ",") + `)`)
		case "json":
			_, err = db.Exec(`DELETE o FROM JSON_TABLE(?, '$[*]' COLUMNS (outbox_id BIGINT PATH '$')) AS ids STRAIGHT_JOIN `+table+
				` AS o FORCE INDEX (PRIMARY) ON o.id = ids.outbox_id`, "["+strings.Join(list, ",")+"]")
		case "mark", "partition":
			_, err = db.Exec(`UPDATE ` + table + ` SET status = 1 WHERE id IN (` + strings.Join(list, ",") + `)`)
			// A partition goes once its last row is marked (the rows are
			// marked in id order), the last one at the last row.
			marked := ids[len(ids)-1] - lo + 1
			for err == nil && *form == "partition" && nextPart*int64(*part) < marked &&
				((nextPart+1)*int64(*part) <= marked || marked == int64(*n)) {
				_, err = db.Exec(fmt.Sprintf(`ALTER TABLE %s TRUNCATE PARTITION p%d`, table, nextPart))
				nextPart++
			}
		case "range":
			_, err = db.Exec(`DELETE FROM `+table+` WHERE id BETWEEN ? AND ?`, ids[0], ids[len(ids)-1])
		}
		if err != nil {
			log.Fatal(err)
		}
	}
	took := time.Since(t0)
	c1, o1 := cpu(), own()
	time.Sleep(3 * time.Second) // the purge of the deleted rows: measured, not waited for
	c2 := cpu()
	fmt.Printf("insert 100 a statement: mariadbd %.1f µs a row\n", (ci1-ci0)/float64(*n)*1e6)
	fmt.Printf("%s, %d ids a delete: %v; mariadbd %.2f s during (%.1f µs a row), %.2f s in the 3 s after (%.1f µs a row, purge); delcost %.2f s (%.1f µs a row)\n",
		*form, *batch, took.Round(time.Millisecond), c1-c0, (c1-c0)/float64(*n)*1e6, c2-c1, (c2-c1)/float64(*n)*1e6, o1-o0, (o1-o0)/float64(*n)*1e6)
}
