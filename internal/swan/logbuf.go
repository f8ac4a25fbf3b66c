package swan

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"sync"
)

// logBuf collects charon's stderr as it is written, so that Log shows the
// log live, and copies it to a file for people who keep the test directory.
type logBuf struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	file io.Writer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if l.file != nil {
		_, _ = l.file.Write(p) // the file is a convenience; the buffer is the record
	}
	return len(p), nil
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	if n <= 0 {
		return ""
	}
	s = strings.TrimRight(s, "\n")
	i := len(s)
	for ; n > 0; n-- {
		i = strings.LastIndexByte(s[:i], '\n')
		if i < 0 {
			return s
		}
	}
	return s[i+1:]
}

// viciChatter matches the lines charon logs (cfg level 2) for every vici
// client: the rig's own polling writes several per 50 ms.
var viciChatter = regexp.MustCompile(`\[CFG\] vici client \d+ (connected|disconnected|registered for|unregistered for|requests: (list-sas|version))`)

// withoutChatter drops the rig's vici polling lines from a log.
func withoutChatter(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if !viciChatter.MatchString(line) {
			b.WriteString(line)
		}
	}
	return b.String()
}
