package main

import "time"

// result is what peerbench prints: one JSON object.
type result struct {
	System   string            `json:"system"`
	DB       string            `json:"db"`
	Versions map[string]string `json:"versions"`
	Setup    string            `json:"setup"`  // how the peer is configured
	Config   string            `json:"config"` // the load
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`

	Commit *phaseResult  `json:"commit"`
	Paced  *phaseResult  `json:"paced,omitempty"` // the commit phase held to -rate
	Drain  *drainResult  `json:"drain,omitempty"`
	Sweep  []sweepPoint  `json:"sweep,omitempty"`
	Totals deliveryTotal `json:"totals"` // every phase's messages
}

// phaseResult is a commit phase, at full load or paced.
type phaseResult struct {
	Producers  int     `json:"producers"`
	FailedTx   int64   `json:"failed_tx"`           // transactions that returned an error (not counted as committed)
	CommitTx   float64 `json:"commit_tx_per_s"`     // transactions committed per second while producing
	E2ETx      float64 `json:"e2e_tx_per_s"`        // transactions per second until the last message was in
	LoadMsgs   float64 `json:"load_msgs_per_s"`     // messages delivered per second while the producers ran
	Latency    latency `json:"latency_ms"`          // commit to delivery, of the messages delivered
	Committed  int64   `json:"committed"`           // messages committed
	Delivered  int64   `json:"delivered"`           // distinct committed messages delivered
	Lost       int64   `json:"lost"`                // committed, never delivered
	LostNote   string  `json:"lost_note,omitempty"` // where the lost messages are, when the peer can tell
	Duplicates int64   `json:"duplicates"`          // deliveries of a message already delivered
	Phantoms   int64   `json:"phantoms"`            // distinct messages delivered that no committed transaction published
	Complete   bool    `json:"all_delivered"`       // false when the phase stopped waiting (-grace, -max-wait)
	WaitedS    float64 `json:"waited_after_s"`      // from the producers' stop until the last message or the give-up
}

// drainResult is the backlog drain.
type drainResult struct {
	Messages   int64   `json:"messages"`
	MsgPerS    float64 `json:"msg_per_s"` // from starting the relay until the last message was delivered
	Delivered  int64   `json:"delivered"`
	Lost       int64   `json:"lost"`
	LostNote   string  `json:"lost_note,omitempty"`
	Duplicates int64   `json:"duplicates"`
	Phantoms   int64   `json:"phantoms"`
}

// sweepPoint is a commit phase of a third of -d at one producer count.
type sweepPoint struct {
	Producers  int     `json:"producers"`
	CommitTx   float64 `json:"commit_tx_per_s"`
	E2ETx      float64 `json:"e2e_tx_per_s"`
	Committed  int64   `json:"committed"`
	Lost       int64   `json:"lost"`
	Duplicates int64   `json:"duplicates"`
	Phantoms   int64   `json:"phantoms"`
}

type deliveryTotal struct {
	Committed  int64 `json:"committed"`
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	Phantoms   int64 `json:"phantoms"`
}

// total adds up every phase's accounting.
func (r *result) total() {
	t := &r.Totals
	for _, p := range []*phaseResult{r.Commit, r.Paced} {
		if p != nil {
			t.Committed += p.Committed
			t.Lost += p.Lost
			t.Duplicates += p.Duplicates
			t.Phantoms += p.Phantoms
		}
	}
	if d := r.Drain; d != nil {
		t.Committed += d.Messages
		t.Lost += d.Lost
		t.Duplicates += d.Duplicates
		t.Phantoms += d.Phantoms
	}
	for _, s := range r.Sweep {
		t.Committed += s.Committed
		t.Lost += s.Lost
		t.Duplicates += s.Duplicates
		t.Phantoms += s.Phantoms
	}
}
