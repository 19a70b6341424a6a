package mqtest

import (
	"strconv"
	"testing"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// testBroadcast: three instances of a service start one after the other,
// and each receives every broadcast message published after it started
// (Init returned), and none published before; a message of the topic the
// instances compete for, beside, reaches one of them.
func testBroadcast(t *testing.T, h Harness) {
	svc := h.Service(t)
	fan, work := svc+".fan", svc+".work"
	pub := start(t, h, h.Service(t))
	const perRound = 5
	var (
		instances []<-chan mq.Delivery
		round     = map[string]int{} // the round a broadcast message was published in
	)
	for i := 0; i < 3; i++ {
		p := startConfig(t, h, mq.Config{Service: svc, Topics: []string{work}, Broadcast: []string{fan}})
		instances = append(instances, consume(t, p))
		for j := 0; j < perRound; j++ {
			m := message.New(fan, []byte(strconv.Itoa(i)+"/"+strconv.Itoa(j)))
			round[m.UUID] = i
			publish(t, pub, m)
		}
	}
	publish(t, pub, message.New(work, []byte("once")))
	last := message.New(fan, []byte("last"))
	publish(t, pub, last)

	works := 0
	for i, ch := range instances {
		want := (len(instances)-i)*perRound + 1 // its rounds, and last
		got := map[string]bool{}
		deadline := time.After(wait)
		for len(got) < want {
			var d mq.Delivery
			select {
			case d = <-ch:
			case <-deadline:
				t.Fatalf("instance %d got %d of the %d broadcast messages published since it started", i, len(got), want)
			}
			m := decode(t, d)
			switch r, ok := round[m.UUID]; {
			case m.Topic == work:
				works++
			case m.UUID != last.UUID && (!ok || r < i):
				t.Fatalf("instance %d, started in round %d, received %q, published in round %d", i, i, m.Payload, r)
			case got[m.UUID]:
				t.Fatalf("instance %d received %q twice", i, m.Payload)
			case m.UUID == last.UUID && len(got) < want-1:
				t.Fatalf("instance %d received the last message before %d of the earlier ones", i, want-1-len(got))
			default:
				got[m.UUID] = true
			}
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for works == 0 {
		select {
		case d := <-instances[0]:
			_ = d.Ack()
			works++
		case d := <-instances[1]:
			_ = d.Ack()
			works++
		case d := <-instances[2]:
			_ = d.Ack()
			works++
		case <-time.After(wait):
			t.Fatal("the competing message never arrived")
		}
	}
	if works != 1 {
		t.Fatalf("the competing message arrived %d times", works)
	}
}
