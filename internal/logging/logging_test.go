package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/ike/config"
	"github.com/keyplane/keyplane/kernelops"
)

func lines(b *bytes.Buffer) []string {
	s := strings.TrimSpace(b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// The engine logged its IKE messages under "msg" once (it uses "message"
// now): in JSON that made two "msg" keys in one object. Other code in the
// daemon may still do it.
func TestNoDuplicateMsgKey(t *testing.T) {
	var b bytes.Buffer
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelDebug)
	log := slog.New(New(&b, Options{Format: config.LogJSON, Level: lv}))
	log.With("ike", "west", "msg", "bound").Debug("sending request", "msg", "IKE_SA_INIT request #0 [ SA KE No ]", "time", "t", "level", 3)
	log.WithGroup("g").Info("grouped", "msg", "nested")
	ls := lines(&b)
	require.Len(t, ls, 2)
	assert.Equal(t, 1, strings.Count(ls[0], `"msg":`), ls[0])
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(ls[0]), &m))
	assert.Equal(t, "sending request", m["msg"])
	assert.Equal(t, "IKE_SA_INIT request #0 [ SA KE No ]", m["message"])
	assert.Equal(t, "t", m["time_attr"])
	assert.EqualValues(t, 3, m["level_attr"])
	assert.Equal(t, "DEBUG", m["level"])
	// Inside a group the key is nested: left alone.
	require.NoError(t, json.Unmarshal([]byte(ls[1]), &m))
	assert.Equal(t, map[string]any{"msg": "nested"}, m["g"])

	b.Reset()
	slog.New(New(&b, Options{Level: lv})).Debug("received", "msg", "x")
	assert.Equal(t, 1, strings.Count(b.String(), "msg="), b.String())
	assert.Contains(t, b.String(), "message=x")
}

func TestPerConnectionLevels(t *testing.T) {
	var b bytes.Buffer
	lv := new(slog.LevelVar) // info
	h := New(&b, Options{Level: lv})
	h.SetConnLevels(map[string]slog.Level{"noisy": slog.LevelDebug, "quiet": slog.LevelError})
	log := slog.New(h)
	log.With("ike", "noisy").Debug("noisy debug")        // bound by With
	log.Debug("noisy initiating", "connection", "noisy") // by a record attribute
	log.With("child", "c", "ike", "other").Debug("other debug")
	log.With("ike", "quiet").Warn("quiet warning")
	log.With("ike", "quiet").Error("quiet error")
	log.Info("global info")
	log.Debug("global debug")
	got := b.String()
	for _, want := range []string{"noisy debug", "noisy initiating", "quiet error", "global info"} {
		assert.Contains(t, got, want)
	}
	for _, not := range []string{"other debug", "quiet warning", "global debug"} {
		assert.NotContains(t, got, not)
	}
	// A reload changes them.
	b.Reset()
	h.SetConnLevels(nil)
	log.With("ike", "noisy").Debug("noisy debug")
	assert.Empty(t, b.String())
	assert.Equal(t, map[string]slog.Level{"a": slog.LevelDebug}, ConnLevels(&config.Config{Connections: []*config.Connection{
		{Name: "a", LogLevel: ptr(slog.LevelDebug)}, {Name: "b"}}}))
}

func ptr[T any](v T) *T { return &v }

// The hook counts warnings and errors even when the level hides them.
func TestHookSeesFilteredRecords(t *testing.T) {
	var b bytes.Buffer
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelError + 4)
	type seen struct {
		level slog.Level
		ops   []string
	}
	var got []seen
	log := slog.New(New(&b, Options{Level: lv, Hook: func(l slog.Level, errs []error) {
		s := seen{level: l}
		for _, err := range errs {
			var ke *kernelops.Error
			if errors.As(err, &ke) {
				s.ops = append(s.ops, ke.Op)
			}
		}
		got = append(got, s)
	}}))
	log.Warn("delete policy failed", "err", &kernelops.Error{Backend: "nokernel", Op: "delete policy", Err: kernelops.ErrNotFound})
	log.Error("plain", "err", errors.New("x"))
	log.Info("not seen")
	assert.Empty(t, b.String())
	require.Len(t, got, 2)
	assert.Equal(t, []string{"delete policy"}, got[0].ops)
	assert.Equal(t, slog.LevelError, got[1].level)
	assert.Empty(t, got[1].ops)
}

// countingValuer counts how often a handler formats it.
type countingValuer struct{ n *int }

func (v countingValuer) LogValue() slog.Value { *v.n++; return slog.StringValue("v") }

// WithAttrs notes attributes and formats them at the first record written:
// the output is what slog's own handler writes with the same chain, and a
// logger that writes nothing formats nothing.
func TestWithAttrsLazy(t *testing.T) {
	chain := func(l *slog.Logger, v countingValuer) *slog.Logger {
		return l.With("ike", "west", "ike-id", 7).With("msg", "bound", "spis", v)
	}
	for _, format := range []config.LogFormat{config.LogText, config.LogJSON} {
		var got, want bytes.Buffer
		n := 0
		lv := new(slog.LevelVar)
		lv.Set(slog.LevelWarn)
		ours := chain(slog.New(New(&got, Options{Format: format, Level: lv})), countingValuer{&n})
		ours.Info("not written")
		ours.With("more", 2).Debug("not written either")
		require.Zero(t, n, "%v: attributes formatted for records below the level", format)

		ours.Warn("written", "x", 3)
		ours.WithGroup("g").With("a", 1).Error("again", "y", 4)
		require.Equal(t, 1, n, "%v: bound attributes formatted once, at the first record", format)

		ho := &slog.HandlerOptions{Level: slog.LevelWarn, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}
		var inner slog.Handler = slog.NewTextHandler(&want, ho)
		if format == config.LogJSON {
			inner = slog.NewJSONHandler(&want, ho)
		}
		m := 0
		ref := slog.New(inner).With("ike", "west", "ike-id", 7).With("message", "bound", "spis", countingValuer{&m})
		ref.Warn("written", "x", 3)
		ref.WithGroup("g").With("a", 1).Error("again", "y", 4)
		// Our lines carry a time: compare from the level on.
		gl, wl := lines(&got), lines(&want)
		require.Len(t, gl, 2)
		for i := range gl {
			cut := strings.Index(gl[i], "level=")
			if format == config.LogJSON {
				cut = strings.Index(gl[i], `"level":`)
				wl[i] = "{" + wl[i][1:]
				gl[i] = "{" + gl[i][cut:]
			} else {
				gl[i] = gl[i][cut:]
			}
		}
		assert.Equal(t, wl, gl, "%v", format)
	}
}
