package final

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/finalbus/final/outbox"
)

// The overflow remembers up to overflowPerQueued rows per row of the
// dispatch queue, and at least minOverflow: 131,072 ids by default, about
// 5 MiB. A small DispatchQueueSize bounds the messages held, not the ids.
const (
	overflowPerQueued = 16
	minOverflow       = 1 << 16
)

// overflow remembers, by id, the committed rows the fast path had no room
// for (DispatchQueueSize, DispatchQueueBytes) and reads them back into the
// dispatcher, oldest first, once it has room for a batch (outbox.Reader):
// a burst then waits for the broker, not for the relay's
// OutboxScanAgoTime. It holds ids, not messages, so it remembers many more
// rows than the dispatch queue holds (see overflowPerQueued).
//
// A row is read back only in the first half of its fast-path window
// (leftRow.readBy, the row's outgoing.sendBy: fastPathSendBy), and the
// dispatcher starts its publish no later: the relays may claim it only
// once the whole window has passed, so its confirm and its delete
// (AckLinger is capped at the other half) have that half to land before a
// relay could send it again. Left to the relay, as before: rows past
// readBy, rows beyond the bound, keyed rows (keyOrder holds their key
// behind the rows the relay brings), the rows of a read that failed, and
// every row when the store has no outbox.Reader.
//
// While it holds rows or reads a batch, newer unkeyed committed rows join
// it rather than the dispatch queue, so that they go out in about commit
// order and none waits behind a stream of newer ones.
type overflow struct {
	reader  outbox.Reader
	disp    *dispatcher
	log     *slog.Logger
	batch   int   // rows per read
	max     int   // rows remembered
	maxRead int64 // bytes per read: half DispatchQueueBytes

	mu      sync.Mutex
	rows    []leftRow // rows[head:] are remembered, oldest first
	head    int
	pending atomic.Int64  // len(rows) - head, read without mu
	reading atomic.Bool   // a batch is being read back and queued
	stopped atomic.Bool   // stop was called: remember nothing more
	wake    chan struct{} // a token when rows arrive

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// leftRow is a committed row the dispatch queue had no room for.
type leftRow struct {
	id     int64
	size   int64
	readBy time.Time // zero: no limit
}

// newOverflow returns the overflow of d, or nil when s cannot read rows by
// id: then every row the queue cannot take is left to the relay.
func newOverflow(s outbox.Store, d *dispatcher, o Options) *overflow {
	reader, ok := s.(outbox.Reader)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &overflow{
		reader:  reader,
		disp:    d,
		log:     o.Logger,
		batch:   int(o.OutboxScanOffset),
		max:     max(o.DispatchQueueSize*overflowPerQueued, minOverflow),
		maxRead: max(int64(o.DispatchQueueBytes)/2, 1),
		wake:    make(chan struct{}, 1),
		ctx:     ctx,
		cancel:  cancel,
	}
}

func (f *overflow) start() {
	if f == nil {
		return
	}
	f.wg.Add(1)
	go f.run()
}

// stop ends the loop and waits for it. The rows it still remembers are in
// the table, where the relay finds them.
func (f *overflow) stop() {
	if f == nil {
		return
	}
	f.stopped.Store(true)
	f.cancel()
	f.wg.Wait()
}

// join remembers o, an unkeyed committed row, if rows wait to be read back
// already: o goes behind them rather than into the dispatch queue.
func (f *overflow) join(o outgoing) bool {
	if f == nil || f.pending.Load() == 0 && !f.reading.Load() {
		return false
	}
	return f.add(o)
}

// add remembers o, an unkeyed committed row; false means o is left to the
// relay (no reader, a keyed row, the bound is reached, or the bus is
// stopping).
func (f *overflow) add(o outgoing) bool {
	if f == nil || o.key != 0 || f.stopped.Load() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.rows)-f.head >= f.max {
		return false
	}
	read := o
	read.read = true // its size once read back: payloads sliced from its body
	f.rows = append(f.rows, leftRow{id: o.id, size: read.size(), readBy: o.sendBy})
	f.pending.Add(1)
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return true
}

// next removes and returns the oldest rows that may still be read back:
// at most f.batch rows and, past the first, maxBytes of messages. Rows past
// readBy are dropped on the way: the relay has them.
func (f *overflow) next(now time.Time, maxBytes int64) []leftRow {
	f.mu.Lock()
	defer f.mu.Unlock()
	var (
		out  []leftRow
		size int64
		late int
	)
	for f.head < len(f.rows) && len(out) < f.batch {
		r := f.rows[f.head]
		if !r.readBy.IsZero() && now.After(r.readBy) {
			f.head++
			late++
			continue
		}
		if len(out) > 0 && size+r.size > maxBytes {
			break
		}
		out = append(out, r)
		size += r.size
		f.head++
	}
	f.compact()
	if late > 0 {
		f.log.Debug("final: rows the dispatch queue had no room for waited too long to be read back; left to the relay", "rows", late)
	}
	return out
}

// dropAll forgets every remembered row: the relay has them.
func (f *overflow) dropAll() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.rows) - f.head
	f.head = len(f.rows)
	f.compact()
	return n
}

// compact reuses the slice's front once it is half consumed, and lets a
// large array go once it is empty; f.mu is held.
func (f *overflow) compact() {
	f.pending.Store(int64(len(f.rows) - f.head))
	switch {
	case f.head == len(f.rows) && cap(f.rows) > 4096:
		f.rows, f.head = nil, 0
	case f.head == len(f.rows):
		f.rows, f.head = f.rows[:0], 0
	case f.head > len(f.rows)/2:
		n := copy(f.rows, f.rows[f.head:])
		f.rows, f.head = f.rows[:n], 0
	}
}

func (f *overflow) run() {
	defer f.wg.Done()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.wake:
		}
		f.reading.Store(true)
		for f.ctx.Err() == nil {
			rows := f.next(time.Now(), f.maxRead)
			if len(rows) == 0 {
				break
			}
			if err := f.readBack(rows); err != nil {
				if f.ctx.Err() != nil {
					break
				}
				n := f.dropAll()
				f.log.Warn("final: could not read back rows the dispatch queue had no room for; the relay sends them",
					"rows", len(rows)+n, "err", err)
			}
		}
		f.reading.Store(false)
	}
}

// readBack waits until the dispatcher has room for rows, reads them from
// the table and queues them. A row no longer in the table was deleted by
// someone else (Purge, an operator); an undecodable one is left to the
// relay, which records it.
func (f *overflow) readBack(rows []leftRow) error {
	ids := make([]int64, len(rows))
	readBy := make(map[int64]time.Time, len(rows))
	var size int64
	for i, r := range rows {
		ids[i] = r.id
		readBy[r.id] = r.readBy
		size += r.size
	}
	if err := f.disp.bytes.waitRoom(f.ctx, size); err != nil {
		return err
	}
	recs, err := f.reader.Read(f.ctx, ids)
	if err != nil {
		return err
	}
	f.log.Debug("final: rows the dispatch queue had no room for read back", "rows", len(recs), "messages", messagesIn(recs))
	for i, rec := range recs {
		recs[i] = outbox.Record{} // once handed on, the dispatcher alone holds it
		if rec.Err != nil || rec.OrderKey != 0 {
			continue
		}
		// sendBy is readBy: the dispatcher starts no publish past it.
		o := outgoingOf(rec)
		o.sendBy = readBy[rec.ID]
		if err := f.disp.submit(f.ctx, o); err != nil {
			return err
		}
	}
	return nil
}
