package nokernel

import (
	"testing"

	"github.com/keyplane/keyplane/kernelops"
)

// FuzzReplayWindow checks the anti-replay bitmap against a plain set of
// seen sequence numbers: accept exactly the unseen numbers above the
// window's bottom.
func FuzzReplayWindow(f *testing.F) {
	f.Add(uint16(32), []byte{1, 2, 3, 2, 100, 60, 69, 69, 68})
	f.Add(uint16(100), []byte{200, 1, 150, 149, 51, 50, 255, 155})
	f.Add(uint16(1), []byte{5, 5, 4, 6})
	f.Fuzz(func(t *testing.T, window uint16, seqs []byte) {
		w := uint32(window%512) + 1
		r := kernelops.ReplayState{Window: w, Bitmap: make([]uint32, (w+31)/32)}
		seen := map[uint64]bool{}
		var top uint64
		for i, b := range seqs {
			// Spread the bytes so jumps both inside and past the window occur.
			seq := uint64(b) * uint64(1+i%3)
			want := seq != 0 && !seen[seq] && (seq > top || top-seq < uint64(w))
			if got := replayAccept(&r, seq); got != want {
				t.Fatalf("window %d, seq %d after %v (top %d): accept=%v, want %v", w, seq, seqs[:i], top, got, want)
			}
			if want {
				seen[seq] = true
				top = max(top, seq)
			}
			if r.Seq != top {
				t.Fatalf("highest %d, want %d", r.Seq, top)
			}
		}
	})
}
