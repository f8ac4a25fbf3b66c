package logging

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A follower gets the lines the log writes from its subscription on;
// one that does not read loses what its queue cannot hold, counted
// exactly, and the log itself loses nothing.
func TestStream(t *testing.T) {
	var out bytes.Buffer
	s := NewStream(&out)
	log := slog.New(New(s, Options{}))
	log.Info("before anyone follows")
	sub := s.Subscribe()
	log.Info("hello", "n", 1)
	line := <-sub.Lines()
	assert.Contains(t, line, `msg=hello n=1`)
	assert.False(t, strings.HasSuffix(line, "\n"))
	assert.Zero(t, sub.Dropped())

	const n = StreamQueue + 100
	for i := range n {
		log.Info("line", "i", i)
	}
	assert.EqualValues(t, 100, sub.Dropped(), "dropped past the queue")
	assert.Zero(t, sub.Dropped(), "Dropped resets")
	for i := range StreamQueue {
		require.Contains(t, <-sub.Lines(), fmt.Sprintf("i=%d", i))
	}
	assert.Equal(t, n+2, strings.Count(out.String(), "\n"), "the log got every line")

	long := strings.Repeat("x", 2*StreamLineMax)
	log.Info(long)
	assert.Len(t, <-sub.Lines(), StreamLineMax, "a line is cut at StreamLineMax")

	sub.Close()
	sub.Close()
	_, open := <-sub.Lines()
	assert.False(t, open)
	log.Info("after")
	assert.Contains(t, out.String(), "msg=after")
}
