package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"slices"
	"strings"
	"time"

	"github.com/finalbus/final/outbox"
)

// Claim implements outbox.Store, with the same rules as the MySQL store:
// a key's rows in id order, first available first otherwise, and the
// maxBytes budget counted on length(message).
//
// The claim runs in a BEGIN IMMEDIATE transaction: it holds SQLite's write
// lock from its first read to its commit, so no other claim, in this
// process or another, reads or changes the rows meanwhile, and what it
// reads needs no locking row by row. The rows it takes are leased
// (claimed_by, available_at) and their messages read back by one UPDATE …
// RETURNING. A claim waits for the write lock up to the busy timeout, for
// instance behind a business transaction that inserted into the outbox.
func (s *Store) Claim(ctx context.Context, owner string, limit, maxBytes int, lease time.Duration) ([]outbox.Record, error) {
	if limit <= 0 {
		return nil, nil
	}
	var recs []outbox.Record
	err := immediate(ctx, s.db, func(c *sql.Conn) error {
		var err error
		recs, err = s.claim(ctx, c, owner, limit, maxBytes, lease)
		return err
	})
	if err != nil {
		return nil, wrapError("claim", err)
	}
	slices.SortFunc(recs, func(a, b outbox.Record) int { return cmp.Compare(a.ID, b.ID) })
	for i := range recs { // decoded once, for the rows claimed only
		recs[i].Decode()
	}
	return recs, nil
}

// claim does Claim's work inside its transaction.
func (s *Store) claim(ctx context.Context, c *sql.Conn, owner string, limit, maxBytes int, lease time.Duration) ([]outbox.Record, error) {
	// Taken once the write lock is held: no claim can have leased a row
	// after this instant, whatever the wait for the lock.
	now := time.Now().UnixMicro()
	var (
		recs  []outbox.Record
		taken []int64 // ids leased by an earlier pass
		bytes int
		seen  []int64 // order keys handled by an earlier pass
	)
	enough := func() bool { return maxBytes > 0 && bytes >= maxBytes }
	// Rows of a key held back by an earlier row stay at the head of the
	// scan; the next pass looks past the keys seen so far, so that a key
	// stuck behind a failing row does not stall the others.
	for pass := 0; pass < maxClaimPasses && len(recs) < limit && !enough(); pass++ {
		cands, err := s.candidates(ctx, c, now, limit-len(recs), seen, taken)
		if err != nil {
			return nil, err
		}
		if len(cands) == 0 {
			break
		}
		ok, keys, held, err := s.inOrder(ctx, c, now, owner, cands)
		if err != nil {
			return nil, err
		}
		// Cut at maxBytes in id order: what a key loses is the end of its
		// run, so the rows taken still keep the key's order.
		slices.SortFunc(ok, func(a, b candidate) int { return cmp.Compare(a.id, b.id) })
		n := 0
		for n < len(ok) && !enough() {
			bytes += ok[n].size
			n++
		}
		if ok = ok[:n]; len(ok) > 0 {
			leased, err := s.lease(ctx, c, now, owner, ok, lease)
			if err != nil {
				return nil, err
			}
			recs = append(recs, leased...)
			for _, r := range leased {
				taken = append(taken, r.ID)
			}
		}
		if !held {
			break // no key was held back: the scan is complete
		}
		seen = append(seen, keys...)
	}
	return recs, nil
}

// candidate is a row a claim may take: what the claim decides on, without
// the message, which is read for the rows taken only.
type candidate struct {
	id, key int64 // key: the order key, 0 for none
	size    int   // bytes of the stored message
}

// maxClaimPasses bounds the scans of one claim that look past held-back
// keys.
const maxClaimPasses = 4

// maxOrderScan bounds the rows a claim reads to put a key's rows in order,
// per candidate.
const maxOrderScan = 8

// candidates returns up to limit rows available at now, first available
// first, leaving out the order keys in skip and the rows in taken (a lease
// of zero leaves a row taken by this claim available at now).
func (s *Store) candidates(ctx context.Context, c *sql.Conn, now int64, limit int, skip, taken []int64) ([]candidate, error) {
	query := `SELECT id, COALESCE(length(message), 0), order_key FROM ` + s.t.q + ` WHERE available_at <= ?`
	args := []any{now}
	if len(skip) > 0 {
		in, keyArgs := inList(skip)
		query += ` AND (order_key IS NULL OR order_key NOT IN ` + in + `)`
		args = append(args, keyArgs...)
	}
	if len(taken) > 0 {
		in, idArgs := inList(taken)
		query += ` AND id NOT IN ` + in
		args = append(args, idArgs...)
	}
	query += ` ORDER BY available_at, id LIMIT ?`
	rows, err := c.QueryContext(ctx, query, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cands []candidate
	for rows.Next() {
		var (
			cand candidate
			key  sql.NullInt64
		)
		if err := rows.Scan(&cand.id, &cand.size, &key); err != nil {
			return nil, err
		}
		cand.key = key.Int64
		cands = append(cands, cand)
	}
	return cands, rows.Err()
}

// inOrder returns the rows of cands the claim may take, in their place the
// rows that keep each key in order, the order keys among cands, and
// whether any of those keys yielded nothing.
//
// The scan finds rows first available first, but a key's rows must go in
// id order. So for each key among cands, the claim takes the key's first
// rows by id instead, as many as it has candidates, up to the first one
// that is not available. Rows still leased to owner are passed over: owner
// is sending them already, ahead of these. The claim holds the write lock,
// so what this reads is what it leases.
func (s *Store) inOrder(ctx context.Context, c *sql.Conn, now int64, owner string, cands []candidate) (ok []candidate, keys []int64, held bool, err error) {
	perKey := map[int64]int{}    // candidates by key
	highest := map[int64]int64{} // highest candidate id by key
	for _, cand := range cands {
		if cand.key == 0 {
			ok = append(ok, cand)
			continue
		}
		if perKey[cand.key] == 0 {
			keys = append(keys, cand.key)
		}
		perKey[cand.key]++
		highest[cand.key] = max(highest[cand.key], cand.id)
	}
	if len(keys) == 0 {
		return ok, nil, false, nil
	}

	// Each key's rows up to its highest candidate, in id order, with
	// whether each is available and whether owner leased it already: one
	// index range per key.
	// The keys are a VALUES list joined to the (order_key, id) index: one
	// range search per key, where SQLite plans an OR of many ranges
	// slowly.
	var (
		b    strings.Builder
		args = make([]any, 0, 2*len(keys)+3)
	)
	b.WriteString(`WITH k(key, hi) AS (VALUES `)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`(?,?)`)
		args = append(args, k, highest[k])
	}
	b.WriteString(`) SELECT t.order_key, t.id, t.available_at <= ?, t.claimed_by IS ?, COALESCE(length(t.message), 0)
		FROM k CROSS JOIN ` + s.t.q + ` AS t ON t.order_key = k.key AND t.id <= k.hi`)
	// Rows held back by others can make a key's range long; a truncated
	// range only shortens the runs taken from it.
	b.WriteString(` ORDER BY t.order_key, t.id LIMIT ?`)
	args = append(args, now, owner, maxOrderScan*len(cands))
	rows, err := c.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, nil, false, err
	}
	type head struct {
		candidate
		ready, mine bool
	}
	heads := map[int64][]head{}
	for rows.Next() {
		var h head
		if err := rows.Scan(&h.key, &h.id, &h.ready, &h.mine, &h.size); err != nil {
			rows.Close()
			return nil, nil, false, err
		}
		heads[h.key] = append(heads[h.key], h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, false, err
	}
	// The run of each key: its available rows from the lowest on, passing
	// over those owner is sending already, at most as many as it has
	// candidates.
	for _, k := range keys {
		n := 0
		for _, h := range heads[k] {
			if h.mine && !h.ready {
				continue
			}
			if !h.ready || n == perKey[k] {
				break
			}
			ok = append(ok, h.candidate)
			n++
		}
		if n == 0 {
			held = true
		}
	}
	return ok, keys, held, nil
}

// lease hides the rows taken from other claimers until lease has passed,
// and returns them with their messages.
func (s *Store) lease(ctx context.Context, c *sql.Conn, now int64, owner string, taken []candidate, lease time.Duration) ([]outbox.Record, error) {
	ids := make([]int64, len(taken))
	for i, cand := range taken {
		ids[i] = cand.id
	}
	in, idArgs := inList(ids)
	args := append([]any{now + lease.Microseconds(), owner, now}, idArgs...)
	rows, err := c.QueryContext(ctx, `UPDATE `+s.t.q+` SET available_at = ?, claimed_by = ?, last_send_at = ?
		WHERE id IN `+in+` RETURNING id, message, attempts, COALESCE(order_key, 0)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	recs := make([]outbox.Record, 0, len(taken))
	for rows.Next() {
		var r outbox.Record
		if err := rows.Scan(&r.ID, &r.Body, &r.Attempts, &r.OrderKey); err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, rows.Err()
}
