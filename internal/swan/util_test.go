package swan

import (
	"time"

	"github.com/keyplane/keyplane/internal/lab"
)

// timeoutScale stretches a timeout in the VM lab, where software
// emulation runs charon several times slower.
func timeoutScale(d time.Duration) time.Duration {
	if lab.InVM() {
		return 4 * d
	}
	return d
}
