package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
)

// benchEnv is what every phase shares.
type benchEnv struct {
	cfg config
	db  *sql.DB
	seq atomic.Int64 // makes service names unique per phase
	// raw are the settings of the raw limits that use the broker, set by
	// the report's chooseRawSettings before the first of them.
	raw rawSettings

	mu       sync.Mutex
	services []string // to clean up
}

const (
	bizTable  = "bench_biz"
	rawOutbox = "final_benchraw_outbox"
)

func (e *benchEnv) setup() error {
	d := e.cfg.db
	for _, q := range []string{
		"DROP TABLE IF EXISTS " + d.quote(bizTable),
		fmt.Sprintf(d.bizDDL, d.quote(bizTable)),
		"DROP TABLE IF EXISTS " + d.quote(rawOutbox),
	} {
		if _, err := e.db.Exec(q); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
	}
	if _, err := e.db.Exec("DELETE FROM final_schema_migrations WHERE table_name = "+d.ph(1), rawOutbox); err != nil &&
		!strings.Contains(err.Error(), d.missing) {
		return fmt.Errorf("setup: %w", err)
	}
	// The raw baseline writes to a table of exactly the outbox's shape.
	s, err := d.store.NewStore(e.db, rawOutbox, outbox.StoreOptions{})
	if err != nil {
		return err
	}
	if c, ok := s.(io.Closer); ok { // the MySQL store's prepared insert
		defer c.Close()
	}
	return s.Migrate(context.Background())
}

func (e *benchEnv) teardown() {
	d := e.cfg.db
	_, _ = e.db.Exec("DROP TABLE IF EXISTS " + d.quote(bizTable))
	_, _ = e.db.Exec("DROP TABLE IF EXISTS " + d.quote(rawOutbox))
	_, _ = e.db.Exec("DELETE FROM final_schema_migrations WHERE table_name = "+d.ph(1), rawOutbox)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, svc := range e.services {
		table := "final_" + svc + "_outbox"
		_, _ = e.db.Exec("DROP TABLE IF EXISTS " + d.quote(table))
		_, _ = e.db.Exec("DELETE FROM final_schema_migrations WHERE table_name = "+d.ph(1), table)
	}
	e.cfg.broker.cleanup(e.services)
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
	raw, err := e.prepareRaw(perTx)
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
	d        database
	biz, out *sql.Stmt
	rows     *sql.Stmt // the insert of perTx rows at once, with -batch
	pack     bool      // the perTx messages in one row, as the library's packs (-batch, -pack)
}

// prepareRaw prepares the raw transaction's statements; with -batch and
// more than one message per transaction, their rows are written in one
// multi-row insert where the store writes them so (PublishMessages on a
// store that is an outbox.BatchInserter), and one by one elsewhere.
func (e *benchEnv) prepareRaw(perTx int) (*rawTx, error) {
	r := &rawTx{db: e.db, d: e.cfg.db, pack: e.cfg.batch && e.cfg.pack && perTx > 1}
	var err error
	if r.biz, err = e.db.Prepare(e.cfg.db.bizInsert()); err != nil {
		return nil, err
	}
	if r.out, err = e.db.Prepare(e.cfg.db.rawInsert()); err != nil {
		r.closeStmts()
		return nil, err
	}
	if !r.pack && e.rawMultiRow(perTx) {
		if r.rows, err = e.db.Prepare(e.cfg.db.rawInsertRows(perTx)); err != nil {
			r.closeStmts()
			return nil, err
		}
	}
	return r, nil
}

// rawMultiRow says whether the raw transaction writes its perTx rows in
// one statement: as the library's PublishMessages does with -batch.
func (e *benchEnv) rawMultiRow(perTx int) bool {
	d := e.cfg.db
	if !e.cfg.batch || perTx < 2 || !d.multiRow {
		return false
	}
	if d.multiRowOK == nil {
		return true
	}
	var version string
	if err := e.db.QueryRow(d.version).Scan(&version); err != nil {
		return false
	}
	return d.multiRowOK(version)
}

// commit commits a business insert and perTx inserts of body into the
// table of the outbox's shape: with pack, one insert of perTx copies of
// body, as the library stores a transaction's messages in one row.
func (r *rawTx) commit(body []byte, perTx int) error {
	tx, err := r.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := tx.Stmt(r.biz).Exec(1, 100); err != nil {
		return err
	}
	switch {
	case r.pack:
		if err := r.insertOne(tx, bytes.Repeat(body, perTx)); err != nil {
			return err
		}
	case r.rows != nil:
		if err := r.insertRows(tx, body, perTx); err != nil {
			return err
		}
	default:
		for k := 0; k < perTx; k++ {
			if err := r.insertOne(tx, body); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// insertOne writes one row of body, reading its id where the database
// returns it.
func (r *rawTx) insertOne(tx *sql.Tx, body []byte) error {
	args := r.d.rawArgs(body, 5*time.Second)
	if r.d.returning {
		var id int64
		return tx.Stmt(r.out).QueryRow(args...).Scan(&id)
	}
	_, err := tx.Stmt(r.out).Exec(args...)
	return err
}

// insertRows writes perTx rows of body in one statement and reads their
// ids.
func (r *rawTx) insertRows(tx *sql.Tx, body []byte, perTx int) error {
	var args []any
	for range perTx {
		args = append(args, r.d.rawArgs(body, 5*time.Second)...)
	}
	rows, err := tx.Stmt(r.rows).Query(args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	n := 0
	for ; rows.Next(); n++ {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if n != perTx {
		return fmt.Errorf("raw insert of %d rows returned %d ids", perTx, n)
	}
	return nil
}

func (r *rawTx) closeStmts() {
	for _, s := range []*sql.Stmt{r.biz, r.out, r.rows} {
		if s != nil {
			_ = s.Close()
		}
	}
}

// close releases the statements and empties the tables.
func (r *rawTx) close() {
	r.closeStmts()
	r.d.empty(r.db, rawOutbox)
	r.d.empty(r.db, bizTable)
}

// settle waits, up to a minute, for the database to be quiet after what
// earlier phases did (InnoDB's purge of the deleted rows, PostgreSQL's
// vacuum, SQLite's checkpoint), so that each phase starts from a quiet
// database.
func (e *benchEnv) settle() {
	d := e.cfg.db
	tables := []string{d.quote(bizTable), d.quote(rawOutbox)}
	e.mu.Lock()
	for _, svc := range e.services {
		tables = append(tables, d.quote("final_"+svc+"_outbox"))
	}
	e.mu.Unlock()
	d.settle(e.db, tables)
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
	if err := e.db.QueryRow(e.cfg.db.version).Scan(&dbv); err == nil {
		dbv = e.cfg.db.versionPrefix + dbv
	}
	var cache string
	if e.cfg.db.cache != "" && e.db.QueryRow(e.cfg.db.cache).Scan(&cache) == nil {
		dbv += " (" + cache + ")"
	}
	return dbv, e.cfg.broker.version()
}

// options are the library's options in every phase.
func (e *benchEnv) options() final.Options {
	return final.DefaultOptions().WithLogger(quietLogger()).WithMaxUnconfirmed(e.cfg.unconfirmed).
		WithOutboxHeldClaims(e.cfg.heldClaims).WithPrefetch(e.cfg.prefetch).WithWireFormat(e.cfg.wire).
		WithDispatchQueueSize(e.cfg.queue).WithOutboxScanAgoTime(e.cfg.scanAgo).WithPackMessages(e.cfg.pack).
		WithAckLinger(e.cfg.ackLinger)
}
