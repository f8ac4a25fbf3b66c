//go:build vpp

package vpp

import (
	"bytes"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"go.fd.io/govpp/adapter"
	"go.fd.io/govpp/adapter/statsclient"
)

// SACounterName is the stats-segment entry VPP keeps IPsec SA counters
// in: a combined (packets, bytes) counter vector indexed by the SA's
// stat_index, one vector per thread.
const SACounterName = "/net/ipsec/sa"

// Counter is one SA's packets and bytes summed over VPP's threads.
type Counter struct {
	Packets, Bytes uint64
}

// statsReader reads every SA's counters in one pass. Its real
// implementation is GoVPP's statsclient over VPP's stats socket.
type statsReader interface {
	// SACounters returns the counters of every stat index VPP has.
	SACounters() ([]Counter, error)
	Close() error
}

type segmentStats struct {
	sc  *statsclient.StatsClient
	dir *adapter.StatDir
}

func openStats(socket string, timeout time.Duration) (*segmentStats, error) {
	sc := statsclient.NewStatsClient(socket, statsclient.SetSocketRetryTimeout(timeout),
		statsclient.SetSocketRetryPeriod(timeout/20+time.Millisecond))
	if err := sc.Connect(); err != nil {
		sc.Disconnect()
		return nil, err
	}
	return &segmentStats{sc: sc}, nil
}

// errSegmentRemapped: a read touched the stats segment after it was
// unmapped under it.
var errSegmentRemapped = errors.New("the stats segment was unmapped during the read (VPP's stats socket was replaced)")

// SACounters reads under guardFault: the stats client remaps the segment
// on its own when VPP's stats socket file is removed (its fsnotify
// monitor), and its lock does not cover the directory it handed out, whose
// entry names point into the old mapping. A read that lands in the
// unmapped segment is an error to retry later, not a crash.
func (s *segmentStats) SACounters() (cs []Counter, err error) {
	err = guardFault(func() error {
		cs, err = s.saCounters()
		return err
	})
	if errors.Is(err, errSegmentRemapped) {
		s.dir = nil
	}
	return cs, err
}

// guardFault runs f with faults on unexpected addresses turned into
// panics (debug.SetPanicOnFault, made for memory-mapped reads) and such a
// panic into errSegmentRemapped. Any other panic goes on.
func guardFault(f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if _, fault := r.(interface{ Addr() uintptr }); fault {
			err = fmt.Errorf("read %s: %w", SACounterName, errSegmentRemapped)
			return
		}
		panic(r)
	}()
	return f()
}

func (s *segmentStats) saCounters() ([]Counter, error) {
	var err error
	for range 5 {
		if s.dir == nil {
			s.dir, err = s.sc.PrepareDir("^" + SACounterName + "$")
			if err == nil {
				// The names point into the mapping; keep copies, so a
				// later UpdateDir compares against Go memory.
				for i := range s.dir.Entries {
					s.dir.Entries[i].Name = bytes.Clone(s.dir.Entries[i].Name)
				}
			}
		} else {
			err = s.sc.UpdateDir(s.dir)
		}
		switch {
		case err == nil:
			return countersOf(s.dir)
		case errors.Is(err, adapter.ErrStatsDirStale):
			// VPP grew or moved the directory: prepare it again.
			s.dir = nil
		case errors.Is(err, adapter.ErrStatsDataBusy), errors.Is(err, adapter.ErrStatsAccessFailed):
			// VPP was writing the segment; read again.
			time.Sleep(time.Millisecond)
		default:
			s.dir = nil
			return nil, err
		}
	}
	return nil, fmt.Errorf("read %s: %w", SACounterName, err)
}

func countersOf(dir *adapter.StatDir) ([]Counter, error) {
	for _, e := range dir.Entries {
		if string(e.Name) != SACounterName {
			continue
		}
		cs, ok := e.Data.(adapter.CombinedCounterStat)
		if !ok {
			return nil, fmt.Errorf("stats entry %s has type %T, want a combined counter", SACounterName, e.Data)
		}
		return sumThreads(cs), nil
	}
	// No SA was ever added since VPP started: the vector does not exist.
	return nil, nil
}

func sumThreads(cs adapter.CombinedCounterStat) []Counter {
	n := 0
	for _, th := range cs {
		n = max(n, len(th))
	}
	out := make([]Counter, n)
	for _, th := range cs {
		for i, c := range th {
			out[i].Packets += c.Packets()
			out[i].Bytes += c.Bytes()
		}
	}
	return out
}

func (s *segmentStats) Close() error { return s.sc.Disconnect() }
