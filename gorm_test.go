package final_test

import (
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/finalbus/final"
)

type bizRow struct {
	ID  int64
	Ref string
}

// gorm users hand the bus gorm's *sql.Tx: the business row and the message
// commit or roll back together.
func TestGormTransaction(t *testing.T) {
	e := newEnv(t)
	table := e.business()
	topic := e.svc + ".t"
	rec := newRecorder()
	b := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })
	gdb, err := gorm.Open(gormmysql.New(gormmysql.Config{Conn: e.db}), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)

	write := func(ref string, fail error) error {
		gtx := gdb.Begin()
		require.NoError(t, gtx.Error)
		return b.Transaction(gtx.Statement.ConnPool.(*sql.Tx), func(txBus *final.TxBus) error {
			if err := gtx.Table(table).Create(&bizRow{Ref: ref}).Error; err != nil {
				return err
			}
			if err := txBus.Publish(topic, []byte(ref)); err != nil {
				return err
			}
			return fail
		})
	}
	require.NoError(t, write("gorm-ok", nil))
	boom := errors.New("rejected")
	require.ErrorIs(t, write("gorm-rolled", boom), boom)
	require.NoError(t, write("gorm-marker", nil))

	rec.waitAll(t, []string{"gorm-ok", "gorm-marker"}, 10*time.Second)
	require.Zero(t, rec.count("gorm-rolled"))
	require.ElementsMatch(t, []string{"gorm-ok", "gorm-marker"}, e.committedRefs(table))
}
