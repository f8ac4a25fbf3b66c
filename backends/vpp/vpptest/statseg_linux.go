//go:build vpp

package vpptest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// statSegment is a fake VPP stats segment (layout version 2) in a memfd,
// holding one entry: the combined counter vector /net/ipsec/sa, one
// thread, one (packets, bytes) pair per stat index. It is what GoVPP's
// statsclient maps when it connects to the stats socket, so the backend's
// real stats reader runs against it unchanged.
//
// Layout (all pointers are offsets: the header's base is 0):
//
//	0      header: version=2, base=0, epoch, in_progress, directory_vector, error_vector=0
//	248    u64 length of the directory vector (1)
//	256    directory entry: type=3 (combined counters), data pointer, name[128]
//	1016   u64 length of the per-thread vector (1)
//	1024   u64 pointer to thread 0's counters
//	2040   u64 length of the counter vector (slots)
//	2048   slots * {packets u64, bytes u64}
type statSegment struct {
	file  *os.File
	mem   []byte
	slots int
	mu    sync.Mutex
}

const (
	segDirVec       = 256
	segThreadVec    = 1024
	segCounterVec   = 2048
	dirTypeCombined = 3
)

func newStatSegment(slots int) (*statSegment, error) {
	fd, err := unix.MemfdCreate("vpptest-stats", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "vpptest-stats")
	size := segCounterVec + slots*16
	size = (size + 4095) &^ 4095
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return nil, err
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("mmap: %w", err)
	}
	s := &statSegment{file: f, mem: mem, slots: slots}
	le := binary.LittleEndian
	le.PutUint64(mem[0:], 2)           // version
	le.PutUint64(mem[8:], 0)           // base: pointers are offsets
	le.PutUint64(mem[16:], 1)          // epoch
	le.PutUint64(mem[24:], 0)          // in_progress
	le.PutUint64(mem[32:], segDirVec)  // directory vector
	le.PutUint64(mem[40:], 0)          // no error vector (the v2 type numbering)
	le.PutUint64(mem[segDirVec-8:], 1) // one directory entry
	le.PutUint32(mem[segDirVec:], dirTypeCombined)
	le.PutUint64(mem[segDirVec+8:], segThreadVec)
	copy(mem[segDirVec+16:segDirVec+16+128], "/net/ipsec/sa")
	le.PutUint64(mem[segThreadVec-8:], 1) // one thread
	le.PutUint64(mem[segThreadVec:], segCounterVec)
	le.PutUint64(mem[segCounterVec-8:], uint64(slots))
	return s, nil
}

func (s *statSegment) word(off int) *uint64 {
	return (*uint64)(unsafe.Pointer(&s.mem[off]))
}

// add advances a slot's counters, as a VPP worker does.
func (s *statSegment) add(slot uint32, packets, bytes uint64) {
	if int(slot) >= s.slots {
		return
	}
	off := segCounterVec + int(slot)*16
	atomic.AddUint64(s.word(off), packets)
	atomic.AddUint64(s.word(off+8), bytes)
}

// zero resets a slot, as VPP does when it hands the index to a new SA.
func (s *statSegment) zero(slot uint32) {
	if int(slot) >= s.slots {
		return
	}
	off := segCounterVec + int(slot)*16
	atomic.StoreUint64(s.word(off), 0)
	atomic.StoreUint64(s.word(off+8), 0)
}

func (s *statSegment) read(slot uint32) (packets, bytes uint64) {
	if int(slot) >= s.slots {
		return 0, 0
	}
	off := segCounterVec + int(slot)*16
	return atomic.LoadUint64(s.word(off)), atomic.LoadUint64(s.word(off + 8))
}

func (s *statSegment) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mem != nil {
		unix.Munmap(s.mem)
		s.mem = nil
		s.file.Close()
	}
}

// serveStats answers each connection on the stats socket (a SOCK_SEQPACKET
// unix socket, as VPP's) with one message carrying the segment's fd.
func serveStats(ln *net.UnixListener, seg func() *statSegment) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if s := seg(); s != nil {
			c.WriteMsgUnix([]byte{0}, unix.UnixRights(int(s.file.Fd())), nil)
		}
		c.Close()
	}
}
