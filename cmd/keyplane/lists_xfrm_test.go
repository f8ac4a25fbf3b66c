//go:build linux && !no_xfrm

package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyplane/keyplane/internal/lab"
)

// sa list and policy list on a real kernel, in text and JSON: the
// identifiers in the CLI's one format. Policies on the host (its kernel
// has XFRM policies); SAs need ESP, so the VM lab.
func TestDataplaneListsXfrm(t *testing.T) {
	for _, withSAs := range []bool{false, true} {
		name := "policies"
		if withSAs {
			name = "SAs"
		}
		t.Run(name, func(t *testing.T) {
			if withSAs {
				lab.RequireVM(t, "ESP SAs")
			}
			ns := lab.NewNS(t)
			leaveOwned(t, ns, withSAs, 1)
			flags := []string{"--backend", "xfrm", "--param", "netns=" + ns.Name}
			code, out, errs := runCLI(t, append([]string{"policy", "list", "-json"}, flags...)...)
			require.Equal(t, 0, code, errs)
			pols := jsonArray(t, out)
			reqids := 0
			for _, p := range pols {
				tmpls, _ := p["Templates"].([]any)
				for _, x := range tmpls {
					assert.Equal(t, "0x4b500001", x.(map[string]any)["ReqID"])
					reqids++
				}
			}
			assert.Positive(t, reqids, "no template in\n%s", out)
			code, out, _ = runCLI(t, append([]string{"policy", "list"}, flags...)...)
			require.Equal(t, 0, code)
			assert.Contains(t, out, "reqid 0x4b500001")
			if !withSAs {
				return
			}
			code, out, errs = runCLI(t, append([]string{"sa", "list", "-json", "--stream"}, flags...)...)
			require.Equal(t, 0, code, errs)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			require.Len(t, lines, 2)
			for _, l := range lines {
				m := jsonObject(t, l)
				assert.Regexp(t, `^0xc10001\d\d$`, m["ID"].(map[string]any)["SPI"])
				assert.Equal(t, "0x4b500001", m["ReqID"])
			}
			code, out, _ = runCLI(t, append([]string{"sa", "list"}, flags...)...)
			require.Equal(t, 0, code)
			assert.Contains(t, out, "esp 0xc1000100")
			assert.Contains(t, out, "0x4b500001")
			assert.Contains(t, out, "2 SAs")
		})
	}
}
