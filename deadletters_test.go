package final_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
)

// Messages a broken handler dead-lettered can be listed with their reasons
// and, once the handler is fixed, replayed.
func TestDeadLettersListedAndReplayed(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	rec := newRecorder()
	var broken atomic.Bool
	broken.Store(true)
	b := e.start(e.svc, e.url, testOptions(t).WithRetryCount(0), func(b *final.Bus) {
		b.Subscribe(topic).Handler(func(c *final.Context) error {
			if broken.Load() {
				return errors.New("database schema out of date")
			}
			return rec.handle(c)
		})
	})
	ctx := context.Background()
	var refs []string
	for i := 0; i < 5; i++ {
		ref := fmt.Sprintf("d%d", i)
		refs = append(refs, ref)
		require.NoError(t, b.Publish(topic, []byte(ref)))
	}
	var dead []final.DeadLetter
	testenv.Eventually(t, 10*time.Second, func() bool {
		var err error
		dead, err = b.DeadLetters(ctx, 100)
		return err == nil && len(dead) == 5
	}, "five dead letters")
	for _, d := range dead {
		require.NoError(t, d.Err)
		require.Equal(t, topic, d.Topic)
		require.Equal(t, topic, d.Message.Topic)
		require.True(t, strings.Contains(d.Reason, "database schema out of date"), d.Reason)
		require.False(t, d.At.IsZero())
	}

	broken.Store(false)
	n, err := b.ReplayDeadLetters(ctx, 100)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	rec.waitAll(t, refs, 10*time.Second)
	dead, err = b.DeadLetters(ctx, 100)
	require.NoError(t, err)
	require.Empty(t, dead)

	require.NoError(t, b.Shutdown())
	_, err = b.DeadLetters(ctx, 1)
	require.ErrorIs(t, err, final.ErrClosed)
}
