package memory

import "github.com/finalbus/final/mq"

// queueLimit bounds a queue: a publish that would overfill one is nacked.
const queueLimit = 1 << 16

// queue is a FIFO of messages. A message given back (requeued, or returned
// by Close) goes to its head, where RabbitMQ puts it too: its place, for a
// queue with one consumer.
type queue struct {
	items []item
	// single allows one delivery out at a time: an Ordered topic's shard.
	single    bool
	out       int // deliveries handed out and not settled
	consumers int // Consume loops taking from it
}

type item struct {
	body        []byte
	redelivered bool
}

// ready reports whether a delivery can be taken from q now.
func (q *queue) ready() bool { return len(q.items) > 0 && (!q.single || q.out == 0) }

func (q *queue) pop() item {
	it := q.items[0]
	q.items[0] = item{}
	q.items = q.items[1:]
	return it
}

func (q *queue) push(it item) { q.items = append(q.items, it) }

// pushFront puts its at the head of q, in their order.
func (q *queue) pushFront(its ...item) {
	q.items = append(append(make([]item, 0, len(its)+len(q.items)), its...), q.items...)
}

// service is what a service declared on the broker. It outlives the
// service's providers, as durable queues do.
type service struct {
	queue  *queue              // the service queue of its plain topics; nil once none is left
	topics map[string]bool     // the plain topics bound to queue
	shards map[string][]*queue // the shard queues of each Ordered topic
	dead   []DeadLetter
}

func newService() *service {
	return &service{queue: &queue{}, topics: map[string]bool{}, shards: map[string][]*queue{}}
}

func newShards() []*queue {
	shards := make([]*queue, mq.OrderShards)
	for i := range shards {
		shards[i] = &queue{single: true}
	}
	return shards
}

// shardOf returns the shard of a message key; unkeyed messages go to shard
// 0, as with mq/amqp.
func shardOf(key string) int {
	if key == "" {
		return 0
	}
	return mq.Shard(key)
}
