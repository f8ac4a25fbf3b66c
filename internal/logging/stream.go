package logging

import (
	"io"
	"sync"
	"sync/atomic"
)

// Stream is the daemon's log output that can also be followed (`keyplane
// log`): every line written goes to the underlying writer and to each
// subscriber's queue. A subscriber that falls behind never holds up the
// log: lines its full queue cannot take are dropped and counted.
type Stream struct {
	w    io.Writer
	mu   sync.Mutex
	subs map[*LogSub]struct{}
}

// Bounds of one subscriber: queued lines, and bytes kept of one line.
const (
	StreamQueue   = 1024
	StreamLineMax = 8 << 10
)

// NewStream returns a Stream writing to w.
func NewStream(w io.Writer) *Stream { return &Stream{w: w, subs: map[*LogSub]struct{}{}} }

// LogSub is one follower of a Stream.
type LogSub struct {
	s       *Stream
	c       chan string
	dropped atomic.Uint64
}

// Write writes p (one log line: slog's handlers write a record at once)
// and queues it for the subscribers.
func (s *Stream) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.subs) == 0 {
		return n, err
	}
	line := p
	if len(line) > 0 && line[len(line)-1] == '\n' {
		line = line[:len(line)-1]
	}
	if len(line) > StreamLineMax {
		line = line[:StreamLineMax]
	}
	text := string(line)
	for sub := range s.subs {
		select {
		case sub.c <- text:
		default:
			sub.dropped.Add(1)
		}
	}
	return n, err
}

// Subscribe starts following the lines written from now on.
func (s *Stream) Subscribe() *LogSub {
	sub := &LogSub{s: s, c: make(chan string, StreamQueue)}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	return sub
}

// Lines delivers the lines; it is closed by Close.
func (sub *LogSub) Lines() <-chan string { return sub.c }

// Dropped returns the lines dropped since the last call and resets the
// count.
func (sub *LogSub) Dropped() uint64 { return sub.dropped.Swap(0) }

// Close stops the subscription.
func (sub *LogSub) Close() {
	sub.s.mu.Lock()
	defer sub.s.mu.Unlock()
	if _, ok := sub.s.subs[sub]; ok {
		delete(sub.s.subs, sub)
		close(sub.c)
	}
}
