package final_test

import (
	"database/sql"
	"database/sql/driver"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/mq/amqp"
	"github.com/finalbus/final/outbox/mysql"
)

// tracingDriver wraps go-sql-driver/mysql as a tracing wrapper (otelsql)
// does: the bus cannot tell the database from its type.
type tracingDriver struct{ driver.Driver }

var registerTracing sync.Once

func wrappedDB(t *testing.T) *sql.DB {
	registerTracing.Do(func() { sql.Register("final-test-tracing-mysql", tracingDriver{gomysql.MySQLDriver{}}) })
	testenv.DB(t) // skips or fails as the other tests do when MariaDB is away
	db, err := sql.Open("final-test-tracing-mysql", testenv.MySQLDSN())
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// The dialect is recognised from the *sql.DB's driver; a driver the bus
// does not know fails Start with what to set, and Options.Dialect names it.
func TestDialectOfAWrappedDriverIsSetExplicitly(t *testing.T) {
	e := newEnv(t)
	db := wrappedDB(t)
	topic := e.svc + ".t"
	b := final.New(e.svc, db, amqp.NewProvider(e.url), testOptions(t))
	err := b.Start()
	require.ErrorIs(t, err, final.ErrInvalidOption)
	require.ErrorContains(t, err, "Dialect")
	require.ErrorContains(t, err, "tracingDriver")

	rec := newRecorder()
	b = final.New(e.svc, db, amqp.NewProvider(e.url), testOptions(t).WithDialect(mysql.Dialect))
	b.Subscribe(topic).Handler(rec.handle)
	require.NoError(t, b.Start())
	t.Cleanup(func() { require.NoError(t, b.Shutdown()) })
	require.NoError(t, b.Publish(topic, []byte("through the wrapped driver")))
	rec.waitAll(t, []string{"through the wrapped driver"}, 20*time.Second)
}
