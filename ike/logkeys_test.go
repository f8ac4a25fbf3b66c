package ike

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLogKeysNotReserved: no engine log call names an attribute like one
// of slog's own keys. A "msg" attribute made a second "msg" in a JSON log
// line, which log pipelines reject; the daemon's handler renames such
// keys, but an embedder's handler need not.
func TestLogKeysNotReserved(t *testing.T) {
	reserved := map[string]bool{"msg": true, "time": true, "level": true, "source": true}
	levels := map[string]bool{"Debug": true, "Info": true, "Warn": true, "Error": true, "With": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	calls := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !levels[sel.Sel.Name] {
				return true
			}
			// Debug/Info/Warn/Error(msg, k, v, ...); With(k, v, ...).
			first := 1
			if sel.Sel.Name == "With" {
				first = 0
			}
			calls++
			for i := first; i < len(call.Args); i += 2 {
				lit, ok := call.Args[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				if k, err := strconv.Unquote(lit.Value); err == nil && reserved[k] {
					t.Errorf("%s: log attribute %q is one of slog's own keys", fset.Position(lit.Pos()), k)
				}
			}
			return true
		})
	}
	if calls < 50 {
		t.Fatalf("found only %d log calls in the engine's files; the scan is broken", calls)
	}
}
