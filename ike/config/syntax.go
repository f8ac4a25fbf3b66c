package config

import (
	"fmt"
	"strconv"
	"strings"
)

// The file syntax is strongSwan's settings syntax (swanctl.conf,
// strongswan.conf): sections `name { ... }`, settings `key = value` one per
// line, `#` comments. A value runs to the end of the line and may be
// double-quoted ("..." with \" \\ \n \t escapes) to keep spaces or a '#'.

// section is one `name { ... }` block of the file, or the file itself.
type section struct {
	name     string
	line     int
	settings []setting
	sections []*section
}

type setting struct {
	key, value string
	line       int
}

func (s *section) get(key string) (setting, bool) {
	for _, kv := range s.settings {
		if kv.key == key {
			return kv, true
		}
	}
	return setting{}, false
}

func (s *section) sub(name string) *section {
	for _, c := range s.sections {
		if c.name == name {
			return c
		}
	}
	return nil
}

// syntaxError is a parse failure at a line.
type syntaxError struct {
	line int
	msg  string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// parseSyntax reads the section tree. A key or section name may hold
// letters, digits and - _ . / ; settings and sections of one name may
// appear once per section. It goes on after an error (skipping the rest
// of the line, or the duplicate section's contents) so that one pass
// reports every syntax error, at most MaxErrors of them.
func parseSyntax(src []byte) (*section, []*syntaxError) {
	root := &section{line: 1}
	stack := []*section{root}
	var errs []*syntaxError
	fail := func(line int, format string, args ...any) {
		if len(errs) < MaxErrors {
			errs = append(errs, &syntaxError{line, fmt.Sprintf(format, args...)})
		}
	}
	lines := strings.Split(string(src), "\n")
	for i, raw := range lines {
		ln := i + 1
		line := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		for line != "" {
			cur := stack[len(stack)-1]
			switch {
			case line[0] == '#':
				line = ""
				continue
			case line[0] == '}':
				if len(stack) == 1 {
					fail(ln, "'}' without an open section")
				} else {
					stack = stack[:len(stack)-1]
				}
				line = strings.TrimSpace(line[1:])
				continue
			}
			n := 0
			for n < len(line) && isNameByte(line[n]) {
				n++
			}
			if n == 0 {
				fail(ln, "unexpected %q: want a name, '}' or a comment", line[0])
				line = ""
				continue
			}
			name := line[:n]
			rest := strings.TrimSpace(line[n:])
			switch {
			case strings.HasPrefix(rest, "{"):
				s := &section{name: name, line: ln}
				switch {
				case cur.sub(name) != nil:
					fail(ln, "section %q appears twice", name)
				case hasSetting(cur, name):
					fail(ln, "%q is both a setting and a section", name)
				default:
					cur.sections = append(cur.sections, s)
				}
				// A refused section is still read (its braces count),
				// but belongs to nothing.
				stack = append(stack, s)
				line = strings.TrimSpace(rest[1:])
			case strings.HasPrefix(rest, "="):
				v, err := parseValue(strings.TrimSpace(rest[1:]))
				switch {
				case err != nil:
					fail(ln, "%s: %v", name, err)
				case hasSetting(cur, name):
					fail(ln, "setting %q appears twice", name)
				default:
					cur.settings = append(cur.settings, setting{key: name, value: v, line: ln})
				}
				line = ""
			default:
				fail(ln, "%q must be followed by '=' or '{'", name)
				line = ""
			}
		}
	}
	for len(stack) > 1 {
		open := stack[len(stack)-1]
		fail(open.line, "section %q is never closed", open.name)
		stack = stack[:len(stack)-1]
	}
	return root, errs
}

func hasSetting(s *section, key string) bool {
	_, ok := s.get(key)
	return ok
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '/'
}

// parseValue reads a value: quoted, or bare up to a '#' comment.
func parseValue(s string) (string, error) {
	if strings.HasPrefix(s, `"`) {
		end := 1
		for end < len(s) {
			if s[end] == '\\' {
				end += 2
				continue
			}
			if s[end] == '"' {
				break
			}
			end++
		}
		if end >= len(s) {
			return "", fmt.Errorf("unterminated quoted value")
		}
		v, err := strconv.Unquote(s[:end+1])
		if err != nil {
			return "", fmt.Errorf("bad quoted value: %v", err)
		}
		if tail := strings.TrimSpace(s[end+1:]); tail != "" && tail[0] != '#' {
			return "", fmt.Errorf("text after the quoted value: %q", tail)
		}
		return v, nil
	}
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s), nil
}
