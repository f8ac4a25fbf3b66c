package kernelops

import (
	"context"
	"iter"
)

// ReadUsage streams every SA's usage in one bulk pass: through the
// backend's UsageReader when it has one, else from its SAD dump.
func ReadUsage(ctx context.Context, b Backend) iter.Seq2[Usage, error] {
	if ur, ok := b.(UsageReader); ok {
		return ur.Usage(ctx)
	}
	sad, ok := b.(SAD)
	if !ok {
		return func(yield func(Usage, error) bool) {
			yield(Usage{}, NotSupported(b.Name(), "read usage", "backend has no SAD"))
		}
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
