package vmlab

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readmeInstalls returns the README's section "What `make test` installs".
func readmeInstalls(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, sec, ok := strings.Cut(string(b), "\n## What `make test` installs\n")
	require.True(t, ok, "README has no section \"What `make test` installs\"")
	sec, _, _ = strings.Cut(sec, "\n## ")
	return sec
}

// tableRows returns the cells of the rows of the markdown table whose
// header row is header, without the header and separator rows.
func tableRows(t *testing.T, text, header string) [][]string {
	t.Helper()
	_, rest, ok := strings.Cut(text, "\n"+header+"\n")
	require.True(t, ok, "no table with header %q", header)
	var rows [][]string
	for i, line := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		if i == 0 { // |---|---|
			continue
		}
		var cells []string
		for c := range strings.SplitSeq(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		rows = append(rows, cells)
	}
	return rows
}

var backticked = regexp.MustCompile("`([^`]+)`")

func codeSpans(s string) []string {
	var out []string
	for _, m := range backticked.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestReadmeListsPackages: the README lists exactly PackageGroups, group by
// group, in the same order.
func TestReadmeListsPackages(t *testing.T) {
	rows := tableRows(t, readmeInstalls(t), "| for | Debian packages |")
	require.Len(t, rows, len(PackageGroups), "one README row per package group")
	for i, g := range PackageGroups {
		require.Len(t, rows[i], 2)
		assert.Equal(t, g.Packages, codeSpans(rows[i][1]), "README row %d (%s)", i+1, rows[i][0])
	}
}

// TestReadmeListsModules: the README's table of Go modules names exactly
// go.mod's direct requirements.
func TestReadmeListsModules(t *testing.T) {
	var readme []string
	for _, r := range tableRows(t, readmeInstalls(t), "| module | for |") {
		require.Len(t, codeSpans(r[0]), 1, "module cell %q", r[0])
		readme = append(readme, codeSpans(r[0])[0])
	}
	gomod, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	direct := directRequirements(string(gomod))
	require.NotEmpty(t, direct)
	assert.ElementsMatch(t, direct, readme, "go.mod's direct requirements against the README's")
}

// directRequirements returns the module paths go.mod requires without
// "// indirect", in require blocks or on require lines.
func directRequirements(gomod string) []string {
	var mods []string
	block := false
	for line := range strings.Lines(gomod) {
		line = strings.TrimSpace(line)
		switch {
		case line == "require (":
			block = true
			continue
		case block && line == ")":
			block = false
			continue
		case strings.HasPrefix(line, "require "):
			line = strings.TrimPrefix(line, "require ")
		case !block:
			continue
		}
		if f := strings.Fields(line); len(f) >= 2 && !strings.Contains(line, "// indirect") {
			mods = append(mods, f[0])
		}
	}
	return mods
}

func TestDirectRequirements(t *testing.T) {
	got := directRequirements("module m\n\ngo 1.26\n\nrequire a.b/c v1.0.0\n\nrequire (\n\td.e/f v0.1.0\n\tg.h/i v1.2.3 // indirect\n)\n\nrequire (\n\tj.k/l v2.0.0 // indirect\n\tm.n/o v0.0.1\n)\n")
	assert.Equal(t, []string{"a.b/c", "d.e/f", "m.n/o"}, got)
}

// TestPackages: the host's packages are a subset of all, every package is
// listed once, and the groups name what they are for.
func TestPackages(t *testing.T) {
	all, host := Packages(false), Packages(true)
	assert.Subset(t, all, host)
	assert.Contains(t, host, "strongswan-charon", "the host interop tests need charon")
	assert.NotContains(t, host, "qemu-system-x86", "only the VM lab needs qemu")
	seen := map[string]bool{}
	for _, p := range all {
		assert.False(t, seen[p], "%s listed twice", p)
		seen[p] = true
	}
	for _, g := range PackageGroups {
		assert.NotEmpty(t, g.For)
		assert.NotEmpty(t, g.Packages)
	}
}
