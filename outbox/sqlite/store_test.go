package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/internal/dialects"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/outboxtest"
	"github.com/finalbus/final/outbox/sqlite"
)

func TestConformance(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		outboxtest.Run(t, outboxtest.Harness{New: func(t *testing.T) (outbox.Store, *sql.DB) { return newStore(t, d) }})
	})
}

func TestInboxConformance(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		outboxtest.RunInbox(t, outboxtest.InboxHarness{SingleWriter: true, New: func(t *testing.T) (outbox.Inbox, *sql.DB) {
			return newInbox(t, d)
		}})
	})
}

func newInbox(t *testing.T, d driverCase) (*sqlite.Inbox, *sql.DB) {
	db := open(t, d, dbFile(t), sqlite.DSNParams)
	in, err := sqlite.NewInbox(db, "final_svc_inbox")
	require.NoError(t, err)
	require.NoError(t, in.Migrate(context.Background()))
	return in, db
}

// The dialect is recognised from either driver's *sql.DB.
func TestDialectRecognisedFromTheDriver(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		db := open(t, d, dbFile(t), "")
		require.Equal(t, d.pkg, dialects.DriverPackage(db))
		got, err := dialects.For(db)
		require.NoError(t, err)
		require.Equal(t, sqlite.Dialect, got)
		require.Equal(t, "sqlite", got.Name())
	})
}

func TestHostileTableNamesRefused(t *testing.T) {
	db := open(t, drivers[0], dbFile(t), sqlite.DSNParams)
	for _, name := range []string{"", `x"; DROP TABLE users; --`, "a b", "name'quote", "t\x00", strings.Repeat("a", 129), "sqlite_master", "SQLITE_x"} {
		_, err := sqlite.New(db, name, sqlite.Options{})
		require.ErrorIs(t, err, outbox.ErrInvalidIdentifier, "name %q", name)
		_, err = sqlite.NewInbox(db, name)
		require.ErrorIs(t, err, outbox.ErrInvalidIdentifier, "name %q", name)
	}
	s, err := sqlite.New(db, "final_order-svc.v2_outbox", sqlite.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(context.Background()))
	_, err = s.Insert(context.Background(), nil, outbox.Row{Body: []byte("x")})
	require.NoError(t, err)
}

// Migrate refuses a database without WAL or without a busy timeout, and
// says what to add to the DSN.
func TestMigrateRefusesAnUnsetDatabase(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		for _, c := range []struct {
			dsn  string
			want []string
		}{
			// modernc.org/sqlite has no busy timeout by default; ncruces
			// has one of a minute unless the DSN sets _pragma.
			{"file:" + dbFile(t), []string{`journal_mode is "delete"`}},
			{"file:" + dbFile(t) + "?_pragma=journal_mode(WAL)", []string{"busy_timeout is 0"}},
			{"file:" + dbFile(t) + "?_pragma=busy_timeout(0)", []string{`journal_mode is "delete"`, "busy_timeout is 0"}},
			{":memory:", []string{`journal_mode is "memory"`}},
		} {
			db, err := sql.Open(d.driver, c.dsn)
			require.NoError(t, err)
			defer db.Close()
			s, err := sqlite.New(db, table, sqlite.Options{})
			require.NoError(t, err)
			err = s.Migrate(context.Background())
			require.ErrorIs(t, err, sqlite.ErrSetup, c.dsn)
			for _, w := range c.want {
				require.Contains(t, err.Error(), w, c.dsn)
			}
			require.Contains(t, err.Error(), sqlite.DSNParams)
			in, err := sqlite.NewInbox(db, "final_svc_inbox")
			require.NoError(t, err)
			require.ErrorIs(t, in.Migrate(context.Background()), sqlite.ErrSetup, c.dsn)
		}
	})
}

// Several processes starting at once on one file: each migrates through a
// handle of its own, the migration is done once, and recorded.
func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		path := dbFile(t)
		// The file exists, in WAL mode, before the starters open it: handles
		// that open a brand-new file at the same instant race to switch it
		// to WAL, and with ncruces the loser's _pragma fails with "database
		// is locked" before this package's code runs (SQLite does not apply
		// the busy timeout to that switch). WAL mode stays with the file.
		require.NoError(t, open(t, d, path, sqlite.DSNParams).Ping())
		const starters = 6
		errs := make(chan error, starters)
		for i := 0; i < starters; i++ {
			db := open(t, d, path, sqlite.DSNParams)
			go func() {
				s, err := sqlite.New(db, table, sqlite.Options{})
				if err == nil {
					err = s.Migrate(context.Background())
				}
				if err == nil {
					in, _ := sqlite.NewInbox(db, "final_svc_inbox")
					err = in.Migrate(context.Background())
				}
				errs <- err
			}()
		}
		for i := 0; i < starters; i++ {
			require.NoError(t, <-errs)
		}
		db := open(t, d, path, sqlite.DSNParams)
		var n, v int
		require.NoError(t, db.QueryRow(`SELECT COUNT(*), MAX(version) FROM final_schema_migrations WHERE table_name = ?`, table).Scan(&n, &v))
		require.Equal(t, sqlite.SchemaVersion(), v)
		require.Equal(t, sqlite.SchemaVersion(), n, "each migration recorded once")
		require.NoError(t, db.QueryRow(`SELECT MAX(version) FROM final_schema_migrations WHERE table_name = 'final_svc_inbox'`).Scan(&v))
		require.Equal(t, sqlite.InboxSchemaVersion(), v)

		// A table dropped by hand is created again.
		_, err := db.Exec(`DROP TABLE ` + table)
		require.NoError(t, err)
		s := migrated(t, db)
		_, err = s.Insert(context.Background(), nil, outbox.Row{Body: []byte("x")})
		require.NoError(t, err)
	})
}

func TestCorruptRowIsReportedNotFatal(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		s, db := newStore(t, d)
		_, err := db.Exec(`INSERT INTO `+table+` (message, create_at, available_at) VALUES (?, 0, 0), (NULL, 0, 0)`, []byte{0xc1, 0xff, 0x00})
		require.NoError(t, err)
		recs, err := s.Claim(context.Background(), "me", 10, 0, time.Minute)
		require.NoError(t, err)
		require.Len(t, recs, 2)
		for _, r := range recs {
			require.Nil(t, r.Message)
			require.ErrorIs(t, r.Err, message.ErrDecode)
		}
	})
}

// Ids are never reused: a deleted row's id, even the highest, does not
// come back for a new row, so a late Delete of it cannot touch another.
func TestIDsAreNotReused(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		s, _ := newStore(t, d)
		ctx := context.Background()
		a, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("a")})
		require.NoError(t, err)
		require.NoError(t, s.Delete(ctx, []int64{a}))
		b, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("b")})
		require.NoError(t, err)
		require.Greater(t, b, a)
	})
}

// Batches larger than one statement's are done whole.
func TestLargeBatches(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		s, db := newStore(t, d)
		ctx := context.Background()
		tx, err := db.Begin()
		require.NoError(t, err)
		var ids []int64
		for i := 0; i < 1203; i++ {
			id, err := s.Insert(ctx, outbox.SQLTx(tx), outbox.Row{Body: []byte("x")})
			require.NoError(t, err)
			ids = append(ids, id)
		}
		require.NoError(t, tx.Commit())
		left, err := s.Remaining(ctx, ids)
		require.NoError(t, err)
		require.Len(t, left, len(ids))
		require.NoError(t, s.Fail(ctx, "", ids, "down"))
		var failed int
		require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM `+table+` WHERE attempts = 1`).Scan(&failed))
		require.Equal(t, len(ids), failed)
		require.NoError(t, s.Delete(ctx, ids))
		n, err := s.Len(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

// The backoff doubles from RetryBase with each failure, up to RetryMax.
func TestFailBackoffDoublesUpToMax(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		db := open(t, d, dbFile(t), sqlite.DSNParams)
		s, err := sqlite.New(db, table, sqlite.Options{RetryBase: time.Second, RetryMax: 5 * time.Second})
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, s.Migrate(ctx))
		id, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("x")})
		require.NoError(t, err)
		for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
			before := time.Now().UnixMicro()
			require.NoError(t, s.Fail(ctx, "", []int64{id}, "down"))
			after := time.Now().UnixMicro()
			var at int64
			require.NoError(t, db.QueryRow(`SELECT available_at FROM `+table+` WHERE id = ?`, id).Scan(&at))
			require.GreaterOrEqual(t, at, before+want.Microseconds())
			require.LessOrEqual(t, at, after+want.Microseconds())
		}
		var lastError string
		require.NoError(t, s.Fail(ctx, "", []int64{id}, strings.Repeat("é", 600)))
		require.NoError(t, db.QueryRow(`SELECT last_error FROM `+table+` WHERE id = ?`, id).Scan(&lastError))
		require.Len(t, lastError, 1024, "cut to 1024 bytes at a character boundary")
	})
}

// A write that finds the database locked past the busy timeout fails with
// outbox.ErrTransient, for either driver's error.
func TestBusyIsTransient(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		path := dbFile(t)
		s, db := newStoreAt(t, d, path)
		ctx := context.Background()
		id, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("x")})
		require.NoError(t, err)

		// Another handle without a busy timeout, as a misconfigured
		// process would have.
		impatient, err := sqlite.New(open(t, d, path, "_pragma=busy_timeout(0)"), table, sqlite.Options{})
		require.NoError(t, err)

		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE")
		require.NoError(t, err)
		for name, call := range map[string]func() error{
			"Delete":  func() error { return impatient.Delete(ctx, []int64{id}) },
			"Fail":    func() error { return impatient.Fail(ctx, "", []int64{id}, "x") },
			"Release": func() error { return impatient.Release(ctx, "o", []int64{id}) },
			"Claim":   func() error { _, err := impatient.Claim(ctx, "o", 1, 0, time.Minute); return err },
			"Insert": func() error {
				_, err := impatient.Insert(ctx, nil, outbox.Row{Body: []byte("y")})
				return err
			},
		} {
			err := call()
			require.ErrorIs(t, err, outbox.ErrTransient, name)
		}
		_, err = conn.ExecContext(ctx, "ROLLBACK")
		require.NoError(t, err)
		require.NoError(t, impatient.Delete(ctx, []int64{id}), "once the lock is gone")

		// A missing table is not transient.
		_, err = db.Exec(`DROP TABLE ` + table)
		require.NoError(t, err)
		err = s.Delete(ctx, []int64{id})
		require.Error(t, err)
		require.False(t, errors.Is(err, outbox.ErrTransient), "%v", err)
	})
}

// patient is DSNParams with a busy timeout of a minute, for the tests
// where many writers queue for the lock: the race detector slows
// modernc.org/sqlite's transpiled C many times over, and SQLite's busy
// wait, which polls, lets a writer wait behind many others in turn.
const patient = "_pragma=busy_timeout(60000)&_pragma=journal_mode(WAL)"

func newStoreAt(t testing.TB, d driverCase, path string) (*sqlite.Store, *sql.DB) {
	db := open(t, d, path, sqlite.DSNParams)
	return migrated(t, db), db
}

// Several handles on one file, as several processes would have, claim
// concurrently: no row is claimed twice, every row is claimed.
func TestHandlesOnOneFileClaimDisjoint(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		path := dbFile(t)
		s, db := newStoreAt(t, d, path)
		ctx := context.Background()
		const rows, handles = 2000, 4
		tx, err := db.Begin()
		require.NoError(t, err)
		for i := 0; i < rows; i++ {
			key := ""
			if i%2 == 0 {
				key = fmt.Sprint(i % 40)
			}
			_, err := s.Insert(ctx, outbox.SQLTx(tx), outbox.Row{Body: []byte("x"), OrderKey: outbox.OrderKey("t", key)})
			require.NoError(t, err)
		}
		require.NoError(t, tx.Commit())

		var (
			mu   sync.Mutex
			seen = map[int64]string{}
			dups int
			wg   sync.WaitGroup
		)
		stores := make([]*sqlite.Store, handles)
		for h := range stores {
			stores[h] = migrated(t, open(t, d, path, patient))
		}
		for h, store := range stores {
			owner := fmt.Sprint("relay-", h)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					recs, err := store.Claim(ctx, owner, 25, 0, time.Hour)
					if errors.Is(err, outbox.ErrTransient) {
						continue // SQLite's busy wait is not fair: a claimer can starve; the relay tries again too
					}
					if err != nil {
						t.Errorf("Claim: %v", err)
						return
					}
					if len(recs) == 0 {
						return
					}
					mu.Lock()
					for _, r := range recs {
						if _, ok := seen[r.ID]; ok {
							dups++
						}
						seen[r.ID] = owner
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		// Keyed rows behind another owner's are held back; the rest of
		// each key is claimed by its owner's next claims, which the loop
		// above ended before. So: no duplicates, and every unkeyed row.
		require.Zero(t, dups)
		unkeyed := 0
		for id := range seen {
			var key sql.NullInt64
			require.NoError(t, db.QueryRow(`SELECT order_key FROM `+table+` WHERE id = ?`, id).Scan(&key))
			if !key.Valid {
				unkeyed++
			}
		}
		require.Equal(t, rows/2, unkeyed)
		var leased int
		require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM `+table+` WHERE claimed_by IS NOT NULL`).Scan(&leased))
		require.Equal(t, len(seen), leased)
	})
}

// Many goroutines on two handles insert at once, in transactions and on
// their own, while a relay claims and deletes: with WAL and a busy timeout
// none fails with SQLITE_BUSY.
func TestConcurrentInsertsWait(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driverCase) {
		path := dbFile(t)
		db1, db2 := open(t, d, path, patient), open(t, d, path, patient)
		s1, s2 := migrated(t, db1), migrated(t, db2)
		ctx := context.Background()
		const writers, each = 16, 40
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := 0; w < writers; w++ {
			s, db := s1, db1
			if w%2 == 1 {
				s, db = s2, db2
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					if i%4 == 0 {
						_, err := s.Insert(ctx, nil, outbox.Row{Body: []byte("lone")})
						errs <- err
						continue
					}
					tx, err := db.Begin()
					if err != nil {
						errs <- err
						continue
					}
					if _, err := s.Insert(ctx, outbox.SQLTx(tx), outbox.Row{Body: []byte("tx")}); err != nil {
						tx.Rollback()
						errs <- err
						continue
					}
					errs <- tx.Commit()
				}
			}()
		}
		stop := make(chan struct{})
		relayed := make(chan int)
		go func() {
			n := 0
			defer func() { relayed <- n }()
			for {
				// Whether every writer had committed before this claim
				// began: a claim that began earlier may miss the last
				// commits, so only an empty claim after that ends the loop.
				var stopped bool
				select {
				case <-stop:
					stopped = true
				default:
				}
				recs, err := s2.Claim(ctx, "relay", 50, 0, time.Hour)
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				ids := make([]int64, len(recs))
				for i, r := range recs {
					ids[i] = r.ID
				}
				if err := s2.Delete(ctx, ids); err != nil {
					t.Errorf("Delete: %v", err)
					return
				}
				n += len(recs)
				if stopped && len(recs) == 0 {
					return
				}
			}
		}()
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		close(stop)
		require.Equal(t, writers*each, <-relayed)
		left, err := s1.Len(ctx)
		require.NoError(t, err)
		require.Zero(t, left)
	})
}
