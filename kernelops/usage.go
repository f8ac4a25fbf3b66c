package kernelops

import (
	"context"
	"iter"
)

// ReadUsage streams every SA's usage in one bulk pass: through the
// backend's UsageReader when it offers one, else from its SAD dump.
func ReadUsage(ctx context.Context, b Backend) iter.Seq2[Usage, error] {
	if ur, err := As[UsageReader](b); err == nil {
		return ur.Usage(ctx)
	}
	sad, err := As[SAD](b)
	if err != nil {
		return func(yield func(Usage, error) bool) { yield(Usage{}, err) }
	}
	return func(yield func(Usage, error) bool) {
		for e, err := range sad.SAs(ctx) {
			if err != nil {
				yield(Usage{}, err)
				return
			}
			if !yield(UsageOf(e), nil) {
				return
			}
		}
	}
}

// UsageOf extracts the usage of an SA entry.
func UsageOf(e *SAEntry) Usage {
	return Usage{ID: e.ID, ReqID: e.ReqID, Bytes: e.Counters.Bytes, Packets: e.Counters.Packets,
		AddTime: e.Counters.AddTime, LastUsed: e.Counters.LastUsed}
}
