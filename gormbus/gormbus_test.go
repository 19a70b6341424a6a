package gormbus_test

import (
	"path/filepath"
	"testing"

	"github.com/ncruces/go-sqlite3/gormlite"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/finalbus/final/gormbus"
	"github.com/finalbus/final/outbox/sqlite"
)

// SQLTx finds the *sql.Tx in every gorm mode, and says clearly when there
// is none.
func TestGormSQLTx(t *testing.T) {
	open := func(prepare bool) *gorm.DB {
		gdb, err := gorm.Open(gormlite.Open("file:"+filepath.Join(t.TempDir(), "app.db")+"?"+sqlite.DSNParams+"&_txlock=immediate"), &gorm.Config{Logger: logger.Discard, PrepareStmt: prepare})
		require.NoError(t, err)
		db, err := gdb.DB()
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		return gdb
	}
	plain, prepared := open(false), open(true)

	t.Run("in a transaction", func(t *testing.T) {
		for _, begin := range []func() *gorm.DB{
			func() *gorm.DB { return plain.Begin() },
			func() *gorm.DB { return prepared.Begin() },
			func() *gorm.DB { return plain.Begin().Session(&gorm.Session{PrepareStmt: true}) },
			func() *gorm.DB { // a PreparedStmtTX in a PreparedStmtTX
				return prepared.Begin().Session(&gorm.Session{PrepareStmt: true})
			},
		} {
			gtx := begin()
			tx, err := gormbus.SQLTx(gtx)
			require.NoError(t, err, "%T", gtx.Statement.ConnPool)
			require.NotNil(t, tx)
			var one int
			require.NoError(t, tx.QueryRow("SELECT 1").Scan(&one)) // the transaction's own connection
			require.NoError(t, gtx.Rollback().Error)
		}
	})
	t.Run("in gorm's Transaction", func(t *testing.T) {
		require.NoError(t, prepared.Transaction(func(gtx *gorm.DB) error {
			_, err := gormbus.SQLTx(gtx)
			return err
		}))
	})

	type otherPool struct{ gorm.ConnPool }
	closed := open(false)
	db, err := closed.DB()
	require.NoError(t, err)
	require.NoError(t, db.Close())
	other := &gorm.DB{Config: plain.Config, Statement: &gorm.Statement{ConnPool: otherPool{}}}
	for _, c := range []struct {
		name string
		gdb  *gorm.DB
		want string
	}{
		{"nil", nil, "nil gorm DB"},
		{"not in a transaction", plain, "not in a transaction (its connection is a *sql.DB)"},
		{"PrepareStmt, not in a transaction", prepared, "not in a transaction (its connection is a *gorm.PreparedStmtDB)"},
		{"Begin failed", closed.Begin(), "sql: database is closed"},
		{"unknown connection", other, "gormbus_test.otherPool"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tx, err := gormbus.SQLTx(c.gdb)
			require.ErrorIs(t, err, gormbus.ErrNoTx)
			require.ErrorContains(t, err, c.want)
			require.Nil(t, tx)
		})
	}
}
