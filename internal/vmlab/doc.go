// Package vmlab boots Debian's packaged Linux kernel under qemu and runs a
// command in it, with the host's filesystem as the guest's root.
//
// Why: the host kernel on the project's machines has XFRM but no ESP, AH,
// IPcomp, af_key or xfrm interfaces, so no real SA can be installed on it.
// Debian's kernel has all of them as modules and boots under qemu's software
// emulation (TCG) in a few seconds. keyplane's kernel backends and the IKE
// engine are tested for real inside that guest (`make vmtest`).
//
// How a run goes:
//
//  1. Prerequisites (Prepare): missing Debian packages are installed with
//     apt-get (PackageGroups: qemu-system-x86, busybox-static, iproute2,
//     iputils-ping, the strongSwan packages the IKE interop tests use,
//     nftables and conntrack for their NAT; InstallPackages alone is
//     `make deps`). The kernel package named
//     by `apt-cache depends linux-image-amd64` is fetched with
//     `apt-get download` and unpacked with `dpkg -x` into the cache
//     (/var/cache/keyplane-lab by default), one directory per kernel
//     package version; a new kernel replaces the old directory.
//  2. Modules: the unpacked tree has no modules.dep, so the lab reads each
//     module's .modinfo ELF section (name=, depends=) and orders the closure
//     of Modules (virtio, 9p, overlay, veth, dummy, XFRM, ESP/AH/IPcomp,
//     af_key, xfrm interfaces and the crypto templates ESP needs) so that
//     dependencies load first.
//  3. Initramfs: a newc cpio with a static busybox, those modules and an init
//     script, cached next to the kernel under a hash of its contents.
//  4. Boot (Run): qemu with 2 vCPUs and 2 GiB, TCG by default (KVM hangs on
//     these machines; KEYPLANE_LAB_ACCEL=kvm tries it). The init script loads
//     the modules with insmod, mounts the host's / over 9p read-only with a
//     tmpfs overlay on top, gives the guest fresh /proc, /sys, /dev, /run,
//     switches root and runs the command with KEYPLANE_VM=1 in the caller's
//     working directory. The console streams to the caller; the guest prints
//     an exit marker with a per-run nonce, which becomes Run's result. A guest
//     that outlives its timeout is killed and reported with the console tail.
//
// RunTests builds test binaries on the host (`go test -c`), runs them all in
// one boot and reports per-package results.
package vmlab
