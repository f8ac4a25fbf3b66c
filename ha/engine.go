package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/keyplane/keyplane/ike"
	"github.com/keyplane/keyplane/kernelops"
)

// Record keys under the state prefix: one per IKE SA (by our SPI) and
// one per child (by its inbound SPI).
func ikeKey(spi uint64) string   { return fmt.Sprintf("ike/%016x", spi) }
func childKey(spi uint32) string { return fmt.Sprintf("child/%08x", spi) }

// Sink is the engine's ike.StateSink on a Store: each state change
// becomes a sealed record write (coalesced per record while etcd is
// slower than the engine). It never blocks the engine; a record the
// store refuses (too large, backlog full) is counted and logged.
type Sink struct {
	st      *Store
	ctr     *Counters // nil: no counter sync
	log     *slog.Logger
	refused atomic.Uint64
}

// NewSink writes to st.
func NewSink(st *Store, log *slog.Logger) *Sink {
	if log == nil {
		log = slog.Default()
	}
	return &Sink{st: st, log: log}
}

var _ ike.RestoreSink = (*Sink)(nil)

// WithCounters makes the sink start and stop counter sync for each
// child it sees installed and removed.
func (s *Sink) WithCounters(c *Counters) *Sink {
	s.ctr = c
	return s
}

// Refused counts records the store refused.
func (s *Sink) Refused() uint64 { return s.refused.Load() }

func (s *Sink) put(key string, v any) {
	b, err := json.Marshal(v)
	if err == nil {
		err = s.st.Put(key, b)
	}
	clear(b) // it holds keys in clear
	if err != nil {
		s.refused.Add(1)
		s.log.Error("ha: state record refused", "record", key, "err", err)
	}
}

func (s *Sink) del(key string) {
	if err := s.st.Delete(key); err != nil {
		s.refused.Add(1)
		s.log.Error("ha: state record removal refused", "record", key, "err", err)
	}
}

// IKEChanged implements ike.StateSink.
func (s *Sink) IKEChanged(st *ike.HAIKE) {
	s.put(ikeKey(localSPI(st)), st)
	zeroIKE(st)
}

// IKEGone implements ike.StateSink.
func (s *Sink) IKEGone(spi uint64) { s.del(ikeKey(spi)) }

// ChildChanged implements ike.StateSink.
func (s *Sink) ChildChanged(st *ike.HAChild) {
	s.put(childKey(st.InSPI), st)
	zeroChild(st)
	if s.ctr != nil {
		s.ctr.Watch(st.InSPI,
			kernelops.SAID{Src: st.Remote, Dst: st.Local, SPI: st.InSPI, Proto: kernelops.ProtoESP},
			kernelops.SAID{Src: st.Local, Dst: st.Remote, SPI: st.OutSPI, Proto: kernelops.ProtoESP})
	}
}

// ChildRestored implements ike.RestoreSink: a child this node took over
// from its record as it stands; the record is not written again (a
// takeover of thousands of children would rewrite them all), its
// counters are followed from now on.
func (s *Sink) ChildRestored(spi uint32, in, out kernelops.SAID) {
	if s.ctr != nil {
		s.ctr.Watch(spi, in, out)
	}
}

// ChildGone implements ike.StateSink.
func (s *Sink) ChildGone(spi uint32) {
	s.del(childKey(spi))
	if s.ctr != nil {
		s.ctr.Forget(spi)
	}
}

func localSPI(st *ike.HAIKE) uint64 {
	if st.Initiator {
		return st.SPIi
	}
	return st.SPIr
}

func zeroIKE(st *ike.HAIKE) {
	k := &st.Keys
	for _, b := range [][]byte{k.SKd, k.SKai, k.SKar, k.SKei, k.SKer, k.SKpi, k.SKpr} {
		clear(b)
	}
}

func zeroChild(st *ike.HAChild) {
	k := &st.Keys
	for _, b := range [][]byte{k.EncrI, k.IntegI, k.EncrR, k.IntegR} {
		clear(b)
	}
}

// TakeoverResult says what a takeover restored.
type TakeoverResult struct {
	IKESAs, Children int
	// Failed are the IKE SAs and children that could not be restored,
	// each with its error (*ike.RestoreError, or a record that does not
	// decode).
	Failed []error
	// Stats says where the restore's time went.
	Stats ike.RestoreStats
}

// Restore resumes in e every IKE SA the mirror holds, with the children
// its record lists. An IKE SA that fails is rolled back and reported in
// Failed, so is a child that fails (alone: its IKE SA and the other
// children go on); the others still go in. Call it once this node leads.
func Restore(ctx context.Context, e *ike.Engine, m *Mirror, o ike.RestoreOptions) TakeoverResult {
	var res TakeoverResult
	o.Stats = &res.Stats
	for key, b := range m.Records("ike/") {
		var st ike.HAIKE
		err := json.Unmarshal(b, &st)
		clear(b)
		if err != nil {
			res.Failed = append(res.Failed, fmt.Errorf("ha: record %s: %w", key, err))
			continue
		}
		var children []*ike.HAChild
		for _, spi := range st.Children {
			cb, ok := m.Get(childKey(spi))
			if !ok {
				continue // removed after the IKE record was written
			}
			var cs ike.HAChild
			err := json.Unmarshal(cb, &cs)
			clear(cb)
			if err != nil {
				res.Failed = append(res.Failed, fmt.Errorf("ha: record %s: %w", childKey(spi), err))
				continue
			}
			children = append(children, &cs)
		}
		err = e.Restore(ctx, &st, children, o)
		zeroIKE(&st)
		for _, cs := range children {
			zeroChild(cs)
		}
		var ce *ike.ChildrenError
		switch {
		case errors.As(err, &ce):
			for _, cerr := range ce.Errs {
				res.Failed = append(res.Failed, cerr)
			}
		case err != nil:
			res.Failed = append(res.Failed, err)
		}
	}
	res.IKESAs, res.Children = res.Stats.IKESAs, res.Stats.Children
	return res
}
