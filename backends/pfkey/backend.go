//go:build linux || freebsd || netbsd || darwin

package pfkey

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/keyplane/keyplane/backends/pfkey/sadb"
	"github.com/keyplane/keyplane/kernelops"
	"github.com/keyplane/keyplane/kernelops/ikesock"
	"golang.org/x/sys/unix"
)

// driver translates kernelops calls into PF_KEY v2 messages; Open puts
// the kernelops front end in front of it.
type driver struct {
	env  *kernelops.Env
	opts kernelops.Options
	log  *slog.Logger
	os   *osInfo
	x    *xlate
	ns   *netns
	pid  uint32
	caps kernelops.Capabilities
	pool *pool

	mu     sync.Mutex
	closed bool
	larval map[larvalKey]time.Time       // SPIs AllocSPI handed out, not yet filled
	known  map[spiKey]knownSA            // SAs installed here, for NAT mapping events
	traps  map[kernelops.PolicyID]bool   // policies installed as ActionTrap
	index  map[kernelops.PolicyID]uint32 // kernel policy index, for SPDGET
	holes  []kernelops.PolicyID          // pass policies OpenHoles installed
	ev     *eventLoop
	socks  ikesock.Group // the IKE sockets, closed by Close
}

type larvalKey struct {
	dst   string
	proto kernelops.Proto
	spi   uint32
}

type spiKey struct {
	spi   uint32
	proto kernelops.Proto
}

type knownSA struct {
	id    kernelops.SAID
	reqid uint32
}

// Params the backend takes (Options.Params).
const (
	// ParamNetns names a network namespace file (e.g. /run/netns/NAME)
	// whose SAD and SPD the backend manages (Linux); by default, the
	// namespace of the thread calling Open.
	ParamNetns = "netns"
	// ParamReqIDBase is the kernel reqid the first owned reqid maps to
	// (decimal or 0x hex, 1..0x3fff); see DefaultReqIDBase.
	ParamReqIDBase = "reqid-base"
)

// Open opens the PF_KEY dataplane of the running kernel, behind the
// kernelops front end.
func Open(ctx context.Context, opts kernelops.Options) (kernelops.Backend, error) {
	return kernelops.NewHandle(ctx, Name, opts, func(ctx context.Context, env *kernelops.Env) (kernelops.Driver, error) {
		return open(ctx, env)
	})
}

func open(ctx context.Context, env *kernelops.Env) (*driver, error) {
	const op = "open"
	opts := env.Options
	if err := opts.CheckParams(Name, ParamNetns, ParamReqIDBase); err != nil {
		return nil, err
	}
	base := uint64(DefaultReqIDBase)
	if s, ok := opts.Params[ParamReqIDBase]; ok {
		v, err := strconv.ParseUint(s, 0, 32)
		if err != nil {
			return nil, kernelops.Invalid("", "", "", "Params."+ParamReqIDBase, "%q: %v", s, err)
		}
		base = v
	}
	rq, err := newReqIDMap(opts.ReqIDMin, opts.ReqIDMax, uint32(base), host.saReqIDMax)
	if err != nil {
		return nil, kernelops.Invalid("", "", "", "Params."+ParamReqIDBase, "%v", err)
	}
	ns, err := newNetns(opts.Params[ParamNetns])
	if err != nil {
		return nil, &kernelops.Error{Object: opts.Params[ParamNetns], Err: kernelops.ErrInvalid,
			Detail: err.Error()}
	}
	b := &driver{
		env:    env,
		opts:   opts,
		log:    env.Log,
		os:     host,
		x:      &xlate{os: host, d: host.dialect, rq: rq},
		ns:     ns,
		pid:    uint32(os.Getpid()),
		larval: map[larvalKey]time.Time{},
		known:  map[spiKey]knownSA{},
		traps:  map[kernelops.PolicyID]bool{},
		index:  map[kernelops.PolicyID]uint32{},
	}
	b.pool = newPool(16, b.openSock)
	// SADB_REGISTER with SA type UNSPEC lists the algorithms without
	// registering the socket for acquires (RFC 2367 §3.1.7; af_key's
	// pfkey_register, KAME's key_register).
	reply, err := b.request(ctx, "", &sadb.Msg{Header: sadb.Header{Type: sadb.MsgRegister}})
	if err != nil {
		b.Close()
		return nil, err
	}
	var extra kernelops.Cap
	extraNotes := map[kernelops.Cap]string{}
	if host.dialect.MsgMigrate != 0 {
		extra |= kernelops.CapMigrate
		if ns.initial() {
			extra |= kernelops.CapMigrateEvents
		} else {
			extraNotes[kernelops.CapMigrateEvents] = "af_key broadcasts SADB_X_MIGRATE to the initial network namespace only " +
				"(pfkey_send_migrate uses &init_net); this backend runs in another one"
		}
	}
	b.caps = host.capabilities(supportedAlgorithms(host.dialect, reply), opts, extra, extraNotes)
	return b, nil
}

// openSock opens a PF_KEY socket in the backend's namespace.
func (b *driver) openSock() (*sock, error) {
	var fd int
	err := b.ns.do(func() error {
		var err error
		fd, err = unix.Socket(b.os.family, unix.SOCK_RAW, sadb.Version)
		return err
	})
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && (errno == syscall.EAFNOSUPPORT || errno == syscall.EPROTONOSUPPORT) {
			e := kernelops.FromErrno(Name, "open PF_KEY socket", "", errno, host.missing)
			e.Err = kernelops.ErrNotSupported // a kernel without PF_KEY, not a bad argument
			return nil, e
		}
		return nil, err
	}
	return newSock(fd)
}

func (b *driver) Capabilities() kernelops.Capabilities { return b.caps }

// Close releases the sockets and ends every subscription. It leaves the
// kernel's SAs and policies in place.
func (b *driver) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	ev := b.ev
	b.ev = nil
	b.mu.Unlock()
	if ev != nil {
		ev.stop()
	}
	b.socks.Close()
	b.pool.close()
	return b.ns.close()
}

func (b *driver) String() string { return fmt.Sprintf("pfkey(%s)", b.os.name) }

var (
	_ kernelops.Driver       = (*driver)(nil)
	_ kernelops.SAD          = (*driver)(nil)
	_ kernelops.SPD          = (*driver)(nil)
	_ kernelops.Batcher      = (*driver)(nil)
	_ kernelops.EventStarter = (*driver)(nil)
	_ kernelops.Sockets      = (*driver)(nil)
	_ kernelops.AddrSelector = (*driver)(nil)
	_ kernelops.Holes        = (*driver)(nil)
	_ kernelops.Migrator     = (*driver)(nil)
)
