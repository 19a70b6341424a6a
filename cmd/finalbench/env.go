package main

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox/mysql"
)

// benchEnv is what every phase shares.
type benchEnv struct {
	cfg config
	db  *sql.DB
	seq atomic.Int64 // makes service names unique per phase

	mu       sync.Mutex
	services []string // to clean up
}

const (
	bizTable    = "bench_biz"
	rawOutbox   = "final_benchraw_outbox"
	rawInsertSQ = "INSERT INTO `" + rawOutbox + "` (message, status, create_at, available_at) VALUES (?, 0, NOW(3), NOW(6) + INTERVAL ? MICROSECOND)"
)

func (e *benchEnv) setup() error {
	for _, q := range []string{
		"DROP TABLE IF EXISTS `" + bizTable + "`",
		"CREATE TABLE `" + bizTable + "` (id BIGINT AUTO_INCREMENT PRIMARY KEY, ref BIGINT NOT NULL, amount INT NOT NULL, created_at DATETIME(3) NOT NULL)",
		"DROP TABLE IF EXISTS `" + rawOutbox + "`",
		"DELETE FROM final_schema_migrations WHERE table_name = '" + rawOutbox + "'",
	} {
		if _, err := e.db.Exec(q); err != nil && !strings.Contains(err.Error(), "final_schema_migrations' doesn't exist") {
			return fmt.Errorf("setup: %w", err)
		}
	}
	// The raw baseline writes to a table of exactly the outbox's shape.
	s, err := mysql.New(e.db, rawOutbox, mysql.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Migrate(context.Background())
}

func (e *benchEnv) teardown() {
	_, _ = e.db.Exec("DROP TABLE IF EXISTS `" + bizTable + "`")
	_, _ = e.db.Exec("DROP TABLE IF EXISTS `" + rawOutbox + "`")
	e.mu.Lock()
	defer e.mu.Unlock()
	conn, err := amqp091.Dial(e.cfg.amqpURL)
	var ch *amqp091.Channel
	if err == nil {
		defer conn.Close()
		ch, _ = conn.Channel()
	}
	for _, svc := range e.services {
		table := "final_" + svc + "_outbox"
		_, _ = e.db.Exec("DROP TABLE IF EXISTS `" + table + "`")
		_, _ = e.db.Exec("DELETE FROM final_schema_migrations WHERE table_name = ?", table)
		if ch != nil {
			_, _ = ch.QueueDelete("final."+svc, false, false, false)
			_, _ = ch.QueueDelete("final."+svc+".dlq", false, false, false)
		}
	}
}

// service returns a fresh service name, removed at teardown.
func (e *benchEnv) service(kind string) string {
	svc := fmt.Sprintf("bench%s%d", kind, e.seq.Add(1))
	e.mu.Lock()
	e.services = append(e.services, svc)
	e.mu.Unlock()
	return svc
}

// payload returns a payload of the configured size carrying seq.
func (e *benchEnv) payload(seq uint64) []byte {
	p := make([]byte, max(e.cfg.size, 8))
	binary.BigEndian.PutUint64(p, seq)
	return p
}

// produce runs n producers until d has passed, each calling tx for its
// next transaction; with rate > 0 the producers together stay under rate
// transactions per second. It returns the transactions committed and the
// time taken.
func produce(n int, d time.Duration, rate float64, tx func(worker int) error) (int64, time.Duration) {
	var (
		done  atomic.Int64
		wg    sync.WaitGroup
		start = time.Now()
		stop  = start.Add(d)
	)
	var every time.Duration
	if rate > 0 {
		every = time.Duration(float64(n) / rate * float64(time.Second))
	}
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := start.Add(time.Duration(w) * every / time.Duration(n))
			for time.Now().Before(stop) {
				if every > 0 {
					if wait := time.Until(next); wait > 0 {
						time.Sleep(wait) // pacing the load, not synchronisation
					}
					next = next.Add(every)
				}
				if err := tx(w); err == nil {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return done.Load(), time.Since(start)
}

// rawDB measures the same transaction without the library: a business
// insert and perTx outbox-shaped inserts, with prepared statements.
func (e *benchEnv) rawDB(n, perTx int, d time.Duration, rate float64) float64 {
	e.settle()
	raw, err := e.prepareRaw()
	if err != nil {
		panic(err)
	}
	defer raw.close()
	body, _ := message.Marshal(message.New("bench.raw", e.payload(0)))
	commits, took := produce(n, d, rate, func(int) error { return raw.commit(body, perTx) })
	return float64(commits) / took.Seconds()
}

// rawTx is the raw transaction, without the library, on prepared
// statements.
type rawTx struct {
	db       *sql.DB
	biz, out *sql.Stmt
}

func (e *benchEnv) prepareRaw() (*rawTx, error) {
	biz, err := e.db.Prepare("INSERT INTO `" + bizTable + "` (ref, amount, created_at) VALUES (?, ?, NOW(3))")
	if err != nil {
		return nil, err
	}
	out, err := e.db.Prepare(rawInsertSQ)
	if err != nil {
		biz.Close()
		return nil, err
	}
	return &rawTx{db: e.db, biz: biz, out: out}, nil
}

// commit commits a business insert and perTx inserts of body into the
// table of the outbox's shape.
func (r *rawTx) commit(body []byte, perTx int) error {
	tx, err := r.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := tx.Stmt(r.biz).Exec(1, 100); err != nil {
		return err
	}
	for k := 0; k < perTx; k++ {
		if _, err := tx.Stmt(r.out).Exec(body, int64(5e6)); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// close releases the statements and empties the tables.
func (r *rawTx) close() {
	_ = r.biz.Close()
	_ = r.out.Close()
	_, _ = r.db.Exec("TRUNCATE TABLE `" + rawOutbox + "`")
	_, _ = r.db.Exec("TRUNCATE TABLE `" + bizTable + "`")
}

// settle waits, up to a minute, for InnoDB to purge what earlier phases
// deleted, so that each phase starts from a quiet database.
func (e *benchEnv) settle() {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var n int64
		err := e.db.QueryRow("SELECT COUNT FROM information_schema.INNODB_METRICS WHERE NAME = 'trx_rseg_history_len'").Scan(&n)
		if err != nil || n < 1000 {
			return
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
}

// machine describes where the benchmark ran.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("%d cores (%s), %s %s/%s", runtime.NumCPU(), cpu, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// versions reports the database and broker versions.
func (e *benchEnv) versions() (string, string) {
	var dbv string
	_ = e.db.QueryRow("SELECT VERSION()").Scan(&dbv)
	mqv := "unknown"
	if conn, err := amqp091.Dial(e.cfg.amqpURL); err == nil {
		mqv = fmt.Sprint(conn.Properties["version"])
		conn.Close()
	}
	return dbv, mqv
}

// options are the library's options in every phase.
func (e *benchEnv) options() final.Options {
	return final.DefaultOptions().WithLogger(quietLogger()).WithMaxUnconfirmed(e.cfg.unconfirmed)
}
