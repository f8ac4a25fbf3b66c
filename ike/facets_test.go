package ike

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"

	"github.com/keyplane/keyplane/kernelops"
)

// facetsPending are the kernelops facets the engine does not use yet,
// each with the decision that says why. A facet leaves this table the
// day the engine uses it (the test fails until it does).
var facetsPending = map[string]string{}

// facetUsers are kernelops helpers that use a facet for the engine: a
// call to one counts as a use of that facet. kernelops.Apply sends its
// operations through Batcher where the dataplane has it (the HA restore
// installs its batches that way; negotiated children still go one by one).
var facetUsers = map[string]string{"Apply": "Batcher"}

// TestFacetsUsed: every facet of kernelops.Facets is either named by the
// engine's own (non-test) code or listed in facetsPending with a reason,
// never both — so no facet goes unused without a decision written here.
func TestFacetsUsed(t *testing.T) {
	used := map[string]bool{}
	fset := token.NewFileSet()
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files++
		ast.Inspect(f, func(x ast.Node) bool {
			if s, ok := x.(*ast.SelectorExpr); ok {
				if id, ok := s.X.(*ast.Ident); ok && id.Name == "kernelops" {
					used[s.Sel.Name] = true
					if f, ok := facetUsers[s.Sel.Name]; ok {
						used[f] = true
					}
				}
			}
			return true
		})
	}
	if files < 10 || !used["SAD"] {
		t.Fatalf("implausible: %d files, kernelops names %v", files, used)
	}
	facets := map[string]bool{}
	for _, f := range kernelops.Facets() {
		name := f.Type.Name()
		facets[name] = true
		why, pending := facetsPending[name]
		switch {
		case used[name] && pending:
			t.Errorf("the engine uses kernelops.%s: remove it from facetsPending (%q)", name, why)
		case !used[name] && !pending:
			t.Errorf("the engine never uses kernelops.%s: use it, or write why not in facetsPending", name)
		case pending:
			t.Logf("pending: %s — %s", name, why)
		default:
			t.Logf("used: %s", name)
		}
	}
	for name := range facetsPending {
		if !facets[name] {
			t.Errorf("facetsPending lists %s, which is not a kernelops facet", name)
		}
	}
}
