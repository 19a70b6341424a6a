package final_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

func TestSyncAndAsyncSendReturnTheBrokersVerdict(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	rec := newRecorder()
	b := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })
	ctx := context.Background()

	require.NoError(t, b.PublishSync(ctx, message.New(topic, []byte("sync"))))
	err := b.PublishSync(ctx, message.New(e.svc+".nobody", []byte("x")))
	require.ErrorIs(t, err, mq.ErrUnroutable)
	require.ErrorIs(t, b.PublishSync(ctx, message.New(topic, nil, message.WithDelay(time.Second))), final.ErrInvalidPolicy)

	verdicts := make(chan error, 2)
	require.NoError(t, b.PublishAsync(ctx, message.New(topic, []byte("async")), func(err error) { verdicts <- err }))
	require.NoError(t, b.PublishAsync(ctx, message.New(e.svc+".nobody", nil), func(err error) { verdicts <- err }))
	var got []error
	for i := 0; i < 2; i++ {
		got = append(got, <-verdicts)
	}
	require.True(t, (got[0] == nil && errors.Is(got[1], mq.ErrUnroutable)) || (got[1] == nil && errors.Is(got[0], mq.ErrUnroutable)),
		"verdicts %v", got)
	require.ErrorIs(t, b.PublishAsync(ctx, message.New(topic, nil), nil), final.ErrNilHandler)

	rec.waitAll(t, []string{"sync", "async"}, 10*time.Second)
	require.Zero(t, e.outboxRows(), "direct sends do not touch the outbox")
	require.NoError(t, b.Shutdown())
	require.ErrorIs(t, b.PublishAsync(ctx, message.New(topic, nil), func(error) {}), final.ErrClosed)
}
