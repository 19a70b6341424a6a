package final

// DispatcherBytes returns the bytes of messages b's dispatcher holds
// (queued for the fast path, being published, or parked behind their key)
// and the most it ever held.
func DispatcherBytes(b *Bus) (now, peak int64) { return b.disp.bytes.held() }

// ConsumingStopped reports whether b's subscriber stopped taking
// deliveries (Shutdown began).
func ConsumingStopped(b *Bus) bool { return b.subscriber != nil && b.subscriber.stopped() }
