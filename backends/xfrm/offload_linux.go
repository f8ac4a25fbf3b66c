package xfrm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/keyplane/keyplane/kernelops"
	"github.com/safchain/ethtool"
)

// Ethtool feature strings of IPsec offload (NETIF_F_HW_ESP and
// NETIF_F_HW_ESP_TX_CSUM). Packet offload has no feature bit: only an
// install attempt tells.
const (
	featESP       = "esp-hw-offload"
	featESPTxCsum = "esp-tx-csum-hw-offload"
)

// OffloadSupport implements kernelops.Offloader from the device's ethtool
// features, read inside the backend's namespace.
func (b *driver) OffloadSupport(ctx context.Context, ifname string) (kernelops.OffloadSupport, error) {
	if ifname == "" {
		return kernelops.OffloadSupport{}, kernelops.Invalid("", "", "", "ifname", "empty interface name")
	}
	var feats map[string]bool
	err := b.ns.do(func() error {
		e, err := ethtool.NewEthtool()
		if err != nil {
			return err
		}
		defer e.Close()
		feats, err = e.Features(ifname)
		return err
	})
	if err != nil {
		if errors.Is(err, syscall.ENODEV) {
			return kernelops.OffloadSupport{}, &kernelops.Error{Object: ifname, Err: kernelops.ErrNotFound, Errno: syscall.ENODEV}
		}
		return kernelops.OffloadSupport{}, b.kerr(ifname, err)
	}
	s := kernelops.OffloadSupport{Crypto: feats[featESP]}
	s.Detail = fmt.Sprintf("%s=%s %s=%s; packet offload has no ethtool feature and is found by trying",
		featESP, onOff(feats[featESP]), featESPTxCsum, onOff(feats[featESPTxCsum]))
	if !b.k.packetOffload() {
		s.Detail = fmt.Sprintf("%s=%s %s=%s; packet offload needs Linux 6.2 (running %s)",
			featESP, onOff(feats[featESP]), featESPTxCsum, onOff(feats[featESPTxCsum]), b.k.Release)
	}
	return s, nil
}

func onOff(v bool) string {
	if v {
		return "on"
	}
	return "off"
}

// installSA adds or updates sa according to its offload request.
func (b *driver) installSA(ctx context.Context, sa *kernelops.SA, update bool) error {
	switch sa.Offload.Mode {
	case kernelops.OffloadNone:
		err := b.addOrFill(ctx, sa, update, nil)
		if err == nil {
			sa.Offload.Active = kernelops.OffloadNone
		}
		return err
	case kernelops.OffloadCrypto, kernelops.OffloadPacket:
		return b.installOffloaded(ctx, sa, update, sa.Offload.Mode, false)
	case kernelops.OffloadAuto:
		// Packet, then crypto, then software; only a refusal of the
		// offload moves on, any other error (the SA exists, ...) is final.
		for _, mode := range []kernelops.OffloadMode{kernelops.OffloadPacket, kernelops.OffloadCrypto} {
			if mode == kernelops.OffloadPacket && !b.k.packetOffload() {
				continue
			}
			// A crypto request the kernel quietly installs in software is
			// exactly auto's last step, so that SA is kept.
			err := b.installOffloaded(ctx, sa, update, mode, mode == kernelops.OffloadCrypto)
			if err == nil {
				return nil
			}
			if !errors.Is(err, kernelops.ErrOffload) {
				return err
			}
			b.log.Debug("offload refused, trying the next mode", "sa", sa.ID, "device", sa.Offload.Device, "mode", mode, "err", err)
		}
		err := b.addOrFill(ctx, sa, update, nil)
		if err == nil {
			sa.Offload.Active = kernelops.OffloadNone
		}
		return err
	}
	return kernelops.Invalid("", "", sa.ID.String(), "Offload.Mode", "unknown offload mode %d", sa.Offload.Mode)
}

// installOffloaded installs sa with XFRMA_OFFLOAD_DEV in mode. The kernel
// may accept a crypto-offload request and quietly install the SA in
// software (a device without IPsec offload ops); that is read back and
// treated as the refusal it is: the SA is removed again and the error
// names the device and mode — unless keepSoftware, when the SA stays as
// the software fallback.
func (b *driver) installOffloaded(ctx context.Context, sa *kernelops.SA, update bool, mode kernelops.OffloadMode, keepSoftware bool) error {
	dev := sa.Offload.Device
	refused := func(reason string, errno syscall.Errno) error {
		return &kernelops.Error{Object: sa.ID.String(),
			Err:   &kernelops.OffloadError{Device: dev, Mode: mode, Reason: reason},
			Errno: errno, Detail: reason}
	}
	idx, err := b.linkIndex(dev)
	if err != nil {
		return refused(fmt.Sprintf("no such device in namespace %s: %v", b.ns, err), syscall.ENODEV)
	}
	req := &offloadReq{IfIndex: idx}
	if sa.ID.Dst.Is6() {
		req.Flags |= xfrmOffloadIPv6
	}
	if b.inbound(sa) {
		req.Flags |= xfrmOffloadInbound
	}
	if mode == kernelops.OffloadPacket {
		req.Flags |= xfrmOffloadPacket
	}
	err = b.addOrFill(ctx, sa, update, req)
	if err != nil {
		var ke *kernelops.Error
		if errors.As(err, &ke) && offloadRefusal(ke) {
			reason := ke.Detail
			if reason == "" {
				reason = ke.Errno.Error()
			}
			return refused(reason, ke.Errno)
		}
		return err
	}
	got, gerr := b.GetSA(ctx, sa.ID)
	if gerr != nil {
		return gerr
	}
	if got.Offload.Active == mode {
		sa.Offload.Active = mode
		return nil
	}
	if keepSoftware {
		sa.Offload.Active = kernelops.OffloadNone
		return nil
	}
	// Accepted but not offloaded: undo, unless this was an update of an
	// SA that existed before (then it stays as it was installed).
	if !update {
		if derr := b.DeleteSA(ctx, sa.ID); derr != nil {
			b.log.Warn("could not remove SA after a silent offload fallback", "sa", sa.ID, "err", derr)
		}
	}
	return refused(fmt.Sprintf("the kernel installed the SA without %s offload (the device has no IPsec offload for it; ethtool %s is off or the driver declined)", mode, featESP), 0)
}

// offloadRefusal tells an offload refusal from errors that are not about
// offload at all (the SA exists, is missing, the caller lacks rights).
func offloadRefusal(e *kernelops.Error) bool {
	switch {
	case errors.Is(e, kernelops.ErrExists), errors.Is(e, kernelops.ErrNotFound) && e.Errno == syscall.ESRCH,
		errors.Is(e, kernelops.ErrPermission):
		return false
	}
	return e.Errno != 0 || strings.Contains(strings.ToLower(e.Detail), "offload")
}

// inbound reports whether sa receives: its recorded direction, else
// whether its SPI came from AllocSPI (only inbound SPIs are allocated).
func (b *driver) inbound(sa *kernelops.SA) bool {
	switch sa.Dir {
	case kernelops.DirIn:
		return true
	case kernelops.DirOut:
		return false
	}
	return b.isLarval(sa.ID)
}
