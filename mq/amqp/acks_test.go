package amqp

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// frames records what acks writes, and checks as it goes what RabbitMQ
// would: no tag settled twice, and a multiple ack only over tags that were
// meant to be acknowledged (a multiple ack over a delivery still in a
// handler, or one given back, would lose it).
type frames struct {
	t  *testing.T
	mu sync.Mutex
	// acked are the tags the test acknowledged, nacked those it gave back;
	// settled those the frames settled.
	acked, nacked, settled map[uint64]bool
	writes, multiples      int
	// gate, when set, holds every Ack until it is closed.
	gate chan struct{}
}

// isSettled reports whether a frame has settled tag.
func (f *frames) isSettled(tag uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.settled[tag]
}

// eventually polls cond until it holds, failing t with what after 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

// closeSoon closes a as the session does, waiting at most closeTimeout.
func closeSoon(a *acks) { a.close(time.Now().Add(closeTimeout)) }

func newFrames(t *testing.T) *frames {
	return &frames{t: t, acked: map[uint64]bool{}, nacked: map[uint64]bool{}, settled: map[uint64]bool{}}
}

func (f *frames) meant(tag uint64, ack bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ack {
		f.acked[tag] = true
	} else {
		f.nacked[tag] = true
	}
}

func (f *frames) Ack(tag uint64, multiple bool) error {
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	from := tag
	if multiple {
		f.multiples++
		from = 1
	}
	for x := from; x <= tag; x++ {
		if f.settled[x] {
			if x == tag {
				f.t.Errorf("tag %d acknowledged twice", x)
			}
			continue
		}
		if !f.acked[x] {
			f.t.Errorf("ack up to %d (multiple %v) covers tag %d, which was not acknowledged", tag, multiple, x)
		}
		f.settled[x] = true
	}
	return nil
}

func (f *frames) Nack(tag uint64, multiple, requeue bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if multiple || f.settled[tag] || !f.nacked[tag] {
		f.t.Errorf("nack of %d (multiple %v) not meant, or settled already", tag, multiple)
	}
	f.settled[tag] = true
	return nil
}

// Deliveries settled from many goroutines in any order, some given back,
// some acknowledged synchronously: each is settled once, as meant. (How
// many share a frame here depends on the scheduler; TestAcksWriteARunInOneFrame
// checks the sharing.)
func TestAcksSettleEachDeliveryOnceAsMeant(t *testing.T) {
	f := newFrames(t)
	closed := make(chan *amqp.Error)
	a := newAcks(f, closed, DefaultAckBatch)
	const n = 5000
	tags := make(chan uint64, n)
	for _, tag := range rand.Perm(n) {
		tags <- uint64(tag + 1)
	}
	close(tags)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tag := range tags {
				switch tag % 10 {
				case 0:
					f.meant(tag, false)
					if err := a.nack(tag, true); err != nil {
						t.Error(err)
					}
				case 1:
					f.meant(tag, true)
					if err := a.ack(tag, true); err != nil {
						t.Error(err)
					}
					if !f.isSettled(tag) {
						t.Errorf("synchronous ack of %d returned before it was written", tag)
					}
				default:
					f.meant(tag, true)
					if err := a.ack(tag, false); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	closeSoon(a) // writes what lingers
	f.mu.Lock()
	defer f.mu.Unlock()
	for tag := uint64(1); tag <= n; tag++ {
		if !f.settled[tag] {
			t.Errorf("tag %d never settled", tag)
		}
	}
	close(closed)
}

// Acks settled while a write is under way go out together, as one
// multiple ack for the run, not a frame each.
func TestAcksWriteARunInOneFrame(t *testing.T) {
	f := newFrames(t)
	f.gate = make(chan struct{}) // the broker takes no frame for now
	a := newAcks(f, make(chan *amqp.Error), DefaultAckBatch)
	defer closeSoon(a)
	open := sync.OnceFunc(func() { close(f.gate) })
	defer open() // before closeSoon: a failure with the gate shut must not hold it
	f.meant(1, true)
	if err := a.ack(1, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the flush did not take the first ack", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.writing == 1
	})
	const run = DefaultAckBatch // one being written and the rest queued: none waits
	for tag := uint64(2); tag <= run; tag++ {
		f.meant(tag, true)
		if err := a.ack(tag, false); err != nil {
			t.Fatal(err)
		}
	}
	open()
	eventually(t, "the run was not written within 5 s", func() bool { return f.isSettled(run) })
	f.mu.Lock()
	defer f.mu.Unlock()
	for tag := uint64(1); tag <= run; tag++ {
		if !f.settled[tag] {
			t.Errorf("tag %d not settled", tag)
		}
	}
	if f.writes != 2 {
		t.Errorf("%d frames for the first ack and a run of %d behind it, want 2", f.writes, run-1)
	}
}

// A delivery still in a handler holds back the multiple ack: the ones
// after it go alone, never covering it.
func TestAcksNeverCoverAnUnsettledDelivery(t *testing.T) {
	f := newFrames(t)
	a := newAcks(f, make(chan *amqp.Error), DefaultAckBatch)
	defer closeSoon(a)
	for tag := uint64(2); tag <= 40; tag++ { // 1 is still being handled
		f.meant(tag, true)
		if err := a.ack(tag, true); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	if f.settled[1] || f.multiples != 0 {
		t.Fatalf("tag 1 settled %v, %d multiple acks, while it was in a handler", f.settled[1], f.multiples)
	}
	f.mu.Unlock()
	f.meant(1, true)
	if err := a.ack(1, true); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.settled[1] {
		t.Fatal("tag 1 not settled")
	}
}

// Once the channel is closed, an ack fails instead of waiting forever, and
// a synchronous one waiting then is released.
func TestAcksFailOnceTheChannelCloses(t *testing.T) {
	f := newFrames(t)
	closed := make(chan *amqp.Error, 1)
	a := newAcks(f, closed, DefaultAckBatch)
	closed <- &amqp.Error{Code: 320, Reason: "CONNECTION_FORCED"}
	close(closed)
	<-a.done
	if err := a.ack(1, true); err == nil {
		t.Fatal("ack on a closed channel succeeded")
	}
	if err := a.ack(2, false); err == nil {
		t.Fatal("asynchronous ack on a closed channel succeeded")
	}
}

// An asynchronous ack goes out on its own after the linger, with no
// close to push it.
func TestAcksWriteALingeringAckUnprompted(t *testing.T) {
	f := newFrames(t)
	a := newAcks(f, make(chan *amqp.Error), DefaultAckBatch)
	defer closeSoon(a)
	f.meant(1, true)
	if err := a.ack(1, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the ack was not written within 5 s", func() bool { return f.isSettled(1) })
}

// An ack or a nack of a delivery settled already writes nothing (the
// broker would close the channel over an unknown tag).
func TestAcksSettleOnce(t *testing.T) {
	f := newFrames(t)
	a := newAcks(f, make(chan *amqp.Error), DefaultAckBatch)
	defer closeSoon(a)
	f.meant(1, false)
	if err := a.nack(1, true); err != nil {
		t.Fatal(err)
	}
	f.meant(2, true)
	for range 2 {
		if err := a.ack(2, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.ack(1, true); err != nil { // after its requeue
		t.Fatal(err)
	}
	if err := a.nack(2, true); err != nil { // after its ack
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.writes != 2 {
		t.Fatalf("%d frames for two deliveries", f.writes)
	}
}

// Past most asynchronous acks waiting unwritten, an ack waits for its
// write: a consumer that dies loses at most most acks beyond those of the
// deliveries in its handlers (the duplicate bound of WithAckBatch).
func TestAcksBoundWhatWaitsUnwritten(t *testing.T) {
	f := newFrames(t)
	f.gate = make(chan struct{}) // the broker takes no frame for now
	const most = 4
	a := newAcks(f, make(chan *amqp.Error), most)
	defer closeSoon(a)
	for tag := uint64(1); tag <= most; tag++ {
		f.meant(tag, true)
		if err := a.ack(tag, false); err != nil { // returns with its frame held
			t.Fatal(err)
		}
	}
	// Let the flush take the four (it then waits on the gate), so that the
	// bound counts those being written, not only those queued.
	eventually(t, "the flush did not take the acks", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.writing == most
	})
	f.meant(most+1, true)
	returned := make(chan error, 1)
	go func() { returned <- a.ack(most+1, false) }()
	eventually(t, "the ack past the bound did not wait for its write", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		_, waits := a.waiting[most+1]
		return waits
	})
	select {
	case err := <-returned:
		t.Fatalf("ack %d returned (%v) while its frame was held", most+1, err)
	default:
	}
	close(f.gate)
	if err := <-returned; err != nil {
		t.Fatal(err)
	}
	// Written, they no longer count: later acks return at once again.
	a.mu.Lock()
	left := a.pending + a.writing
	a.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d asynchronous acks still counted after their writes", left)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for tag := uint64(1); tag <= most+1; tag++ {
		if !f.settled[tag] {
			t.Errorf("tag %d not settled", tag)
		}
	}
}

// With WithAckBatch(0) every ack returns once written, from any number of
// goroutines: a dying consumer loses none beyond those in its handlers.
func TestAcksWithNoBatchReturnOnceWritten(t *testing.T) {
	f := newFrames(t)
	a := newAcks(f, make(chan *amqp.Error), 0)
	defer closeSoon(a)
	const n = 800
	tags := make(chan uint64, n)
	for tag := uint64(1); tag <= n; tag++ {
		tags <- tag
	}
	close(tags)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tag := range tags {
				f.meant(tag, true)
				if err := a.ack(tag, false); err != nil {
					t.Error(err)
				}
				if !f.isSettled(tag) {
					t.Errorf("ack of %d returned before it was written", tag)
				}
			}
		}()
	}
	wg.Wait()
}
