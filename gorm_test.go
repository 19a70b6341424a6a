package final_test

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3/gormlite"
	"github.com/stretchr/testify/require"
	gormmysql "gorm.io/driver/mysql"
	gormpostgres "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/finalbus/final"
	"github.com/finalbus/final/gormbus"
	"github.com/finalbus/final/internal/dialects"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/mysql"
	"github.com/finalbus/final/outbox/postgres"
	"github.com/finalbus/final/outbox/sqlite"
)

type bizRow struct {
	ID  int64
	Ref string
}

// gormDB is a way to open gorm on one of the databases, and the dialect
// the bus must recognise from the *sql.DB that gorm wraps.
type gormDB struct {
	name    string
	open    func(t *testing.T) gorm.Dialector
	dialect outbox.Dialect
}

// sqliteDSN is a fresh SQLite file set up for the bus (outbox/sqlite).
func sqliteDSN(t *testing.T) string {
	return "file:" + filepath.Join(t.TempDir(), "app.db") + "?" + sqlite.DSNParams + "&_txlock=immediate"
}

var gormDBs = []gormDB{
	{"mysql", func(t *testing.T) gorm.Dialector {
		testenv.DB(t) // MariaDB answers
		return gormmysql.Open(testenv.MySQLDSN())
	}, mysql.Dialect},
	{"postgres", func(t *testing.T) gorm.Dialector {
		testenv.Postgres(t) // PostgreSQL answers
		// gorm's PostgreSQL dialector opens the DSN with pgx/v5/stdlib.
		return gormpostgres.Open(testenv.PostgresDSN())
	}, postgres.Dialect},
	// gormlite, gorm's dialector of github.com/ncruces/go-sqlite3: pure
	// Go, on its own driver...
	{"sqlite-ncruces", func(t *testing.T) gorm.Dialector {
		return gormlite.Open(sqliteDSN(t))
	}, sqlite.Dialect},
	// ...or on a *sql.DB of modernc.org/sqlite.
	{"sqlite-modernc", func(t *testing.T) gorm.Dialector {
		db, err := sql.Open("sqlite", sqliteDSN(t))
		require.NoError(t, err)
		return gormlite.OpenDB(db)
	}, sqlite.Dialect},
}

// gorm users hand the bus gorm's *sql.Tx (gormbus.SQLTx): the business row
// and the message commit or roll back together, on every database, in
// gorm's plain and PrepareStmt modes; the bus recognises the database from
// the *sql.DB gorm wraps.
func TestGormTransaction(t *testing.T) {
	url := testenv.AMQP(t)
	for _, g := range gormDBs {
		for _, prepare := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/PrepareStmt=%v", g.name, prepare), func(t *testing.T) {
				gormRoundTrip(t, url, g, prepare)
			})
		}
	}
}

func gormRoundTrip(t *testing.T, url string, g gormDB, prepare bool) {
	gdb, err := gorm.Open(g.open(t), &gorm.Config{Logger: logger.Discard, PrepareStmt: prepare})
	require.NoError(t, err)
	db, err := gdb.DB()
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	d, err := dialects.For(db)
	require.NoError(t, err)
	require.Equal(t, g.dialect, d)

	svc := testenv.Service(t, nil) // its queues are deleted when t ends
	testenv.DropQueues(t, amqp.Queues(mq.Config{Service: svc})...)
	table, outboxTable := "biz_"+svc, "final_"+svc+"_outbox"
	require.NoError(t, gdb.Table(table).AutoMigrate(&bizRow{}))
	t.Cleanup(func() {
		_ = gdb.Migrator().DropTable(table, outboxTable)
		gdb.Exec("DELETE FROM final_schema_migrations WHERE table_name = ?", outboxTable)
		gdb.Exec("DELETE FROM final_topology WHERE outbox_table = ?", outboxTable)
	})

	topic := svc + ".t"
	rec := newRecorder()
	b := final.New(svc, db, amqp.NewProvider(url), testOptions(t)) // no Dialect set
	b.Subscribe(topic).Handler(rec.handle)
	require.NoError(t, b.Start())
	t.Cleanup(func() { require.NoError(t, b.Shutdown()) })

	write := func(ref string, fail error) error {
		gtx := gdb.Begin()
		require.NoError(t, gtx.Error)
		if prepare {
			require.IsType(t, &gorm.PreparedStmtTX{}, gtx.Statement.ConnPool)
		}
		tx, err := gormbus.SQLTx(gtx)
		if err != nil {
			gtx.Rollback()
			return err
		}
		return b.Transaction(tx, func(txBus *final.TxBus) error {
			if err := gtx.Table(table).Create(&bizRow{Ref: ref}).Error; err != nil {
				return err
			}
			if err := txBus.Publish(topic, []byte(ref)); err != nil {
				return err
			}
			return fail
		})
	}
	committed := []string{"gorm-ok-1", "gorm-ok-2"}
	require.NoError(t, write(committed[0], nil))
	boom := errors.New("rejected")
	require.ErrorIs(t, write("gorm-rolled", boom), boom)
	require.NoError(t, write(committed[1], nil))

	rec.waitAll(t, committed, 30*time.Second)
	require.Zero(t, rec.count("gorm-rolled"))
	var refs []string
	require.NoError(t, gdb.Table(table).Pluck("ref", &refs).Error)
	require.ElementsMatch(t, committed, refs)
	testenv.Eventually(t, 20*time.Second, func() bool {
		var n int64
		require.NoError(t, gdb.Table(outboxTable).Count(&n).Error)
		return n == 0
	}, "outbox empty")
}
