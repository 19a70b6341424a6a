package final_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/mq/amqp"
)

type order struct {
	ID    int64
	Items []string
	Total float64
}

func TestTypedRoundTripAndWrongTypeDeadLettered(t *testing.T) {
	for _, codec := range []final.Codec{final.MsgpackCodec, final.JSONCodec} {
		t.Run(codec.Name(), func(t *testing.T) {
			e := newEnv(t)
			topic, wrong := e.svc+".order", e.svc+".wrong"
			got := make(chan order, 1)
			var wrongCalls atomic.Int64
			b := e.start(e.svc, e.url, testOptions(t), func(b *final.Bus) {
				b.Subscribe(topic).Handler(final.Typed(codec, func(ctx context.Context, o order) error {
					got <- o
					return nil
				}))
				b.Subscribe(wrong).Handler(final.Typed(codec, func(ctx context.Context, o order) error {
					wrongCalls.Add(1)
					return nil
				}))
			})
			want := order{ID: 42, Items: []string{"book", "lamp"}, Total: 31.5}
			tx, err := e.db.Begin()
			require.NoError(t, err)
			require.NoError(t, b.Transaction(tx, func(txBus *final.TxBus) error {
				return final.PublishValue(context.Background(), txBus, codec, topic, want)
			}))
			select {
			case o := <-got:
				require.Equal(t, want, o)
			case <-time.After(10 * time.Second):
				t.Fatal("typed message not delivered")
			}

			// A string where an order is expected: dead-lettered at once.
			require.NoError(t, final.PublishValue(context.Background(), b, codec, wrong, "not an order"))
			var dead []amqp091.Delivery
			testenv.Eventually(t, 10*time.Second, func() bool { dead = append(dead, e.deadLetters()...); return len(dead) == 1 }, "dead-lettered")
			reason := fmt.Sprint(dead[0].Headers[amqp.HeaderDeadReason])
			require.True(t, strings.Contains(reason, "decode") && strings.Contains(reason, "handler failed 1 times"), "reason %q", reason)
			require.Zero(t, wrongCalls.Load())
		})
	}
}

func TestPermanentErrorIsNotRetried(t *testing.T) {
	e := newEnv(t)
	topic := e.svc + ".t"
	var calls atomic.Int64
	b := e.start(e.svc, e.url, testOptions(t).WithRetryCount(5), func(b *final.Bus) {
		b.Subscribe(topic).Handler(func(c *final.Context) error {
			calls.Add(1)
			return final.Permanent(errors.New("invalid order"))
		})
	})
	require.NoError(t, b.Publish(topic, []byte("x")))
	var dead []amqp091.Delivery
	testenv.Eventually(t, 10*time.Second, func() bool { dead = append(dead, e.deadLetters()...); return len(dead) == 1 }, "dead-lettered")
	require.EqualValues(t, 1, calls.Load())
	require.Nil(t, final.Permanent(nil))
}

// A typed handler's payload comes from the broker: one that claims
// millions of entries or bytes in a few bytes is refused before msgpack
// allocates what it claims, and a valid one still decodes.
func TestMsgpackCodecDoesNotAllocateWhatThePayloadClaims(t *testing.T) {
	claim := []byte{0x01, 0x00, 0x00, 0x00} // 16,777,216
	inputs := map[string]struct {
		data []byte
		into func() any
	}{
		"map":        {append([]byte{0xdf}, claim...), func() any { return new(map[string]string) }},
		"array":      {append([]byte{0xdd}, claim...), func() any { return new([]int64) }},
		"binary":     {append([]byte{0xc6}, claim...), func() any { return new([]byte) }},
		"string":     {append([]byte{0xdb}, claim...), func() any { return new(string) }},
		"in a field": {append([]byte{0x81, 0xa5, 'I', 't', 'e', 'm', 's', 0xdd}, claim...), func() any { return new(order) }},
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			v := in.into()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := final.MsgpackCodec.Unmarshal(in.data, v)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatalf("Unmarshal of %d bytes claiming 16 MiB succeeded", len(in.data))
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Fatalf("decoding %d bytes allocated %d bytes (%v)", len(in.data), grew, err)
			}
		})
	}
	want := order{ID: 7, Items: []string{"a", "b"}, Total: 2.5}
	b, err := final.MsgpackCodec.Marshal(want)
	require.NoError(t, err)
	var got order
	require.NoError(t, final.MsgpackCodec.Unmarshal(b, &got))
	require.Equal(t, want, got)
}
