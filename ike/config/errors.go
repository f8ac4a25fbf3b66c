package config

import (
	"cmp"
	"slices"
	"strings"
)

// MaxErrors bounds the errors one Parse or Validate reports: a file of
// garbage gets a readable answer, not one line per byte.
const MaxErrors = 100

// Errors is every error found in one pass over a configuration, in the
// order of the file's lines. Parse and Validate return it (never empty);
// errors.As(err, &e) with e a *Error finds the first.
type Errors []*Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap gives errors.Is and errors.As every error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortErrors orders errors by line, keeping the order of discovery
// within one line (a connection's errors without a line of their own
// stay after the ones with).
func sortErrors(es []*Error) {
	slices.SortStableFunc(es, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
}
