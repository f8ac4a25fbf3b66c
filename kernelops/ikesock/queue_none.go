//go:build !linux && !freebsd && !netbsd && !openbsd && !darwin

package ikesock

import (
	"errors"

	"github.com/keyplane/keyplane/kernelops"
)

var errNoQueue = errors.New("receive buffer: not implemented on this OS")

func setRecvBuffer(int, int) error { return errNoQueue }

func queueStats(int) (kernelops.IKEQueueStats, error) { return kernelops.IKEQueueStats{}, errNoQueue }
