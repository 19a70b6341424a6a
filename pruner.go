package final

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/finalbus/final/outbox"
)

// pruner deletes inbox records older than InboxRetention, at start and then
// every InboxRetention/24 (at least a minute, at most an hour).
type pruner struct {
	inbox outbox.Inbox
	keep  time.Duration
	every time.Duration
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newPruner(in outbox.Inbox, o Options) *pruner {
	ctx, cancel := context.WithCancel(context.Background())
	return &pruner{
		inbox: in, keep: o.InboxRetention, log: o.Logger,
		every: min(max(o.InboxRetention/24, time.Minute), time.Hour),
		ctx:   ctx, cancel: cancel,
	}
}

func (p *pruner) start() {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-p.ctx.Done():
				return
			case <-t.C:
			}
			if n, err := p.inbox.Prune(p.ctx, p.keep); err != nil && p.ctx.Err() == nil {
				p.log.Warn("final: inbox prune failed", "err", err)
			} else if n > 0 {
				p.log.Debug("final: inbox pruned", "rows", n)
			}
			t.Reset(p.every)
		}
	}()
}

func (p *pruner) stop() {
	p.cancel()
	p.wg.Wait()
}
