package mysql_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
)

// A backlog of 1 MiB messages is claimed a few MiB at a time, not a batch
// of rows at a time: each claim holds at most its byte bound plus one row,
// and the claims together take every row once, a row whose message is NULL
// included (it counts 0 bytes and is reported undecodable).
func TestClaimOfLargeRowsIsBoundedInBytes(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	const rows, size, bound = 20, 1 << 20, 3 << 20
	for i := 0; i < rows; i++ {
		body, err := message.Marshal(message.New("big", make([]byte, size)))
		require.NoError(t, err)
		_, err = s.Insert(ctx, nil, outbox.Row{Body: body})
		require.NoError(t, err)
	}
	_, err := db.Exec("INSERT INTO `" + s.Table() + "` (message, status, create_at) VALUES (NULL, 0, NOW(3))")
	require.NoError(t, err)

	seen := map[int64]bool{}
	claims, undecodable := 0, 0
	for {
		recs, err := s.Claim(ctx, "me", 500, bound, time.Hour)
		require.NoError(t, err)
		if len(recs) == 0 {
			break
		}
		claims++
		held := 0
		for i, r := range recs {
			if i > 0 {
				require.Less(t, held, bound, "row %d claimed after the bound was reached", r.ID)
			}
			held += len(r.Body)
			require.False(t, seen[r.ID], "row %d claimed twice", r.ID)
			seen[r.ID] = true
			if r.Err != nil {
				undecodable++
			}
		}
		require.LessOrEqual(t, len(recs), 4, "a claim of 1 MiB rows under 3 MiB")
	}
	require.Len(t, seen, rows+1)
	require.Equal(t, 1, undecodable)
	require.GreaterOrEqual(t, claims, rows/4)
}

// One claim over small messages, which its scan reads along, and larger
// ones, which it reads for the rows taken: every record carries its own
// row's message, a NULL message included (undecodable).
func TestClaimReadsSmallAndLargeMessages(t *testing.T) {
	s, db := newStore(t)
	ctx := context.Background()
	want := map[int64][]byte{}
	for i := 0; i < 12; i++ {
		payload := make([]byte, 100+i)
		if i%3 == 0 {
			payload = make([]byte, 10000+i) // larger than the scan reads along
		}
		payload[0] = byte(i)
		body, err := message.Marshal(message.New("mixed", payload))
		require.NoError(t, err)
		id, err := s.Insert(ctx, nil, outbox.Row{Body: body})
		require.NoError(t, err)
		want[id] = body
	}
	res, err := db.Exec("INSERT INTO `" + s.Table() + "` (message, status, create_at) VALUES (NULL, 0, NOW(3))")
	require.NoError(t, err)
	nullID, err := res.LastInsertId()
	require.NoError(t, err)

	recs, err := s.Claim(ctx, "me", 500, 0, time.Hour)
	require.NoError(t, err)
	require.Len(t, recs, len(want)+1)
	for i, r := range recs {
		if i > 0 {
			require.Less(t, recs[i-1].ID, r.ID, "records in id order")
		}
		if r.ID == nullID {
			require.Nil(t, r.Body)
			require.Error(t, r.Err)
			continue
		}
		require.Equal(t, want[r.ID], r.Body, "row %d", r.ID)
		require.NoError(t, r.Err)
		require.Equal(t, "mixed", r.Message.Topic)
	}
}
