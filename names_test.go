package final_test

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
)

// longestService is a service name New accepts that makes the longest
// names: final.MaxServiceNameLen characters, all but one of them '.' or
// '-', which MySQL writes in file names as five characters each. They
// are drawn at random, so that the name is the test's own.
func longestService() string {
	var b [final.MaxServiceNameLen - 1]byte
	_, _ = rand.Read(b[:])
	name := []byte("t")
	for _, c := range b {
		name = append(name, ".-"[c&1])
	}
	return string(name)
}

// A bus of the longest service name starts, creates its outbox and inbox
// tables with identifiers MySQL takes (at most 64 characters) and runs a
// message through an Inbox subscription. outbox/mysql's
// TestNamesFitMySQLForTheLongestService checks the lock names too.
func TestLongestServiceNameRunsEndToEnd(t *testing.T) {
	e := newEnv(t)
	svc := longestService()
	tables := []string{"final_" + svc + "_outbox", "final_" + svc + "_inbox"}
	t.Cleanup(func() {
		testenv.DropService(t, e.db, svc)
		for _, table := range tables {
			_, _ = e.db.Exec("DROP TABLE IF EXISTS `" + table + "`")
			_, _ = e.db.Exec("DELETE FROM final_schema_migrations WHERE table_name = ?", table)
		}
	})
	topic := e.svc + ".t"
	handled := make(chan string, 1)
	b := e.start(svc, e.url, testOptions(t), func(b *final.Bus) {
		b.Subscribe(topic).Inbox().Handler(func(c *final.Context) error {
			handled <- c.Message.UUID
			return nil
		})
	})
	m := message.New(topic, []byte("x"))
	require.NoError(t, b.PublishMessage(m))
	select {
	case got := <-handled:
		require.Equal(t, m.UUID, got)
	case <-time.After(20 * time.Second):
		t.Fatal("not delivered")
	}

	rows, err := e.db.Query(`SELECT TABLE_NAME, INDEX_NAME FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (?, ?)`, tables[0], tables[1])
	require.NoError(t, err)
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var table, index string
		require.NoError(t, rows.Scan(&table, &index))
		require.LessOrEqual(t, len(table), 64, "table %q", table)
		require.LessOrEqual(t, len(index), 64, "index %q of %q", index, table)
		seen[table] = true
	}
	require.NoError(t, rows.Err())
	require.Len(t, seen, 2, "both tables exist")
}
