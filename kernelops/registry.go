package kernelops

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/keyplane/keyplane/kernelops/clock"
)

// Options configure a backend at Open.
type Options struct {
	Logger *slog.Logger // nil: slog.Default()
	Clock  clock.Clock  // nil: the real clock; tests pass a fake

	// SPIMin..SPIMax bounds AllocSPI when a request gives no range.
	// Zero: DefaultSPIMin..DefaultSPIMax.
	SPIMin, SPIMax uint32
	// ReqIDMin..ReqIDMax is the reqid range this keyplane owns: flush and
	// crash-restart cleanup touch only SAs and policies in it.
	// Zero: DefaultReqIDMin..DefaultReqIDMax.
	ReqIDMin, ReqIDMax uint32
	// IdleScanInterval is how often IdleWatcher reads usage; zero: 10s.
	IdleScanInterval time.Duration

	// Params holds backend-specific settings by name, e.g. "netns" for
	// xfrm, "socket" and "stats-socket" for vpp. Unknown names are an
	// ErrInvalid error at Open, so a typo does not go unnoticed.
	Params map[string]string
}

// Default ranges. Inbound SPIs 0xc0000000..0xcfffffff follow common IKE
// daemons' habit of a high, recognisable range; the reqid range spells "KP".
const (
	DefaultSPIMin   uint32 = 0xc0000000
	DefaultSPIMax   uint32 = 0xcfffffff
	DefaultReqIDMin uint32 = 0x4b500000
	DefaultReqIDMax uint32 = 0x4b50ffff
)

// WithDefaults returns o with zero fields set to their defaults.
func (o Options) WithDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clock.Real()
	}
	if o.SPIMin == 0 && o.SPIMax == 0 {
		o.SPIMin, o.SPIMax = DefaultSPIMin, DefaultSPIMax
	}
	if o.ReqIDMin == 0 && o.ReqIDMax == 0 {
		o.ReqIDMin, o.ReqIDMax = DefaultReqIDMin, DefaultReqIDMax
	}
	if o.IdleScanInterval == 0 {
		o.IdleScanInterval = 10 * time.Second
	}
	return o
}

// Owns reports whether reqid lies in the owned range (after WithDefaults).
func (o Options) Owns(reqid uint32) bool { return reqid >= o.ReqIDMin && reqid <= o.ReqIDMax }

// CheckParams returns an ErrInvalid *Error naming the first parameter not
// in known, so backends reject typos.
func (o Options) CheckParams(backend string, known ...string) error {
	keys := make([]string, 0, len(o.Params))
	for k := range o.Params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(known, k) {
			return Invalid(backend, "open", "", "Params."+k, "unknown parameter (known: %v)", known)
		}
	}
	return nil
}

// Factory opens a backend. What it returns must be a *Handle or embed
// one (NewHandle): Open refuses anything else, so every backend opened by
// name is checked by the front end.
type Factory func(ctx context.Context, opts Options) (Backend, error)

var (
	regMu    sync.RWMutex
	registry = map[string]Factory{}
)

// Register makes a backend available by name. Backends call it from
// init(); build tags decide which backends a binary carries. Registering a
// name twice panics: it is a build mistake.
func Register(name string, f Factory) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("kernelops: backend %q registered twice", name))
	}
	registry[name] = f
}

// Backends lists the registered backend names, sorted.
func Backends() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Open opens the named backend with opts (defaults filled in) and returns
// its checked front end (a *Handle, or a backend type embedding one).
func Open(ctx context.Context, name string, opts Options) (Backend, error) {
	regMu.RLock()
	f, ok := registry[name]
	regMu.RUnlock()
	if !ok {
		return nil, &Error{Op: "open", Object: name, Err: ErrUnknownBackend,
			Detail: fmt.Sprintf("this binary carries %v", Backends())}
	}
	b, err := f(ctx, opts.WithDefaults())
	if err != nil {
		return nil, err
	}
	if _, ok := b.(interface{ frontEnd() *Handle }); !ok {
		b.Close()
		return nil, &Error{Backend: name, Op: "open", Err: ErrInvalid,
			Detail: fmt.Sprintf("the factory returned %T, not a *kernelops.Handle: backends open their driver with NewHandle", b)}
	}
	return b, nil
}

// frontEnd marks *Handle, and every type embedding one, as checked.
func (h *Handle) frontEnd() *Handle { return h }

// HandleOf returns the *Handle a backend from Open is or embeds (nil for
// any other Backend): wrappers such as ha.Fenced take it to pass every
// facet they do not check through.
func HandleOf(b Backend) *Handle {
	if f, ok := b.(interface{ frontEnd() *Handle }); ok {
		return f.frontEnd()
	}
	return nil
}
