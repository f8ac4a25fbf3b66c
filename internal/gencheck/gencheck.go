// Package gencheck tells, without running stringer, whether the String
// methods stringer generated for a package are stale: every constant of a
// //go:generate'd type must be in the generated file (stringer lists them
// in its compile-time index check), with its line comment among the
// generated names when -linecomment is used. A test per package calls
// Stringers, so a constant added without `go generate` fails `go test`.
package gencheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	generateLine = regexp.MustCompile(`^//go:generate .*stringer\S* (.*)$`)
	typeFlag     = regexp.MustCompile(`-type=(\S+)`)
	outputFlag   = regexp.MustCompile(`-output=(\S+)`)
	indexEntry   = regexp.MustCompile(`x\[(\w+)-`)
)

// Stringers checks every stringer //go:generate directive of the package
// in dir against the file it generated.
func Stringers(t testing.TB, dir string) {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") || strings.HasSuffix(n, "_string.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	checked := 0
	consts := constsByType(files)
	for _, f := range files {
		for _, cg := range f.Comments {
			for _, c := range cg.List {
				m := generateLine.FindStringSubmatch(c.Text)
				if m == nil {
					continue
				}
				types := strings.Split(typeFlag.FindStringSubmatch(m[1])[1], ",")
				out := outputFlag.FindStringSubmatch(m[1])
				if out == nil {
					t.Fatalf("%s: give stringer an explicit -output", c.Text)
				}
				gen, err := os.ReadFile(filepath.Join(dir, out[1]))
				if err != nil {
					t.Fatalf("generated file: %v (run go generate)", err)
				}
				listed := map[string]bool{}
				for _, e := range indexEntry.FindAllStringSubmatch(string(gen), -1) {
					listed[e[1]] = true
				}
				lineComment := strings.Contains(m[1], "-linecomment")
				for _, typ := range types {
					for _, k := range consts[typ] {
						checked++
						if !listed[k.name] {
							t.Errorf("%s: constant %s (%s) is not in %s: run go generate", dir, k.name, typ, out[1])
						}
						if lineComment && k.comment != "" && !strings.Contains(string(gen), k.comment) {
							t.Errorf("%s: name %q of %s is not in %s: run go generate", dir, k.comment, k.name, out[1])
						}
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatalf("%s: no stringer directive with constants found", dir)
	}
}

type constant struct{ name, comment string }

// constsByType collects the constants of each named type, following the
// implicit repetition of a const block's last type.
func constsByType(files []*ast.File) map[string][]constant {
	out := map[string][]constant{}
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			typ := ""
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				switch {
				case vs.Type != nil:
					if id, ok := vs.Type.(*ast.Ident); ok {
						typ = id.Name
					} else {
						typ = ""
					}
				case len(vs.Values) > 0:
					typ = "" // an untyped or differently typed value restarts
				}
				if typ == "" {
					continue
				}
				comment := ""
				if vs.Comment != nil {
					comment = strings.TrimSpace(vs.Comment.Text())
				}
				for _, n := range vs.Names {
					if n.Name != "_" && !slices.ContainsFunc(out[typ], func(c constant) bool { return c.name == n.Name }) {
						out[typ] = append(out[typ], constant{n.Name, comment})
					}
				}
			}
		}
	}
	return out
}
