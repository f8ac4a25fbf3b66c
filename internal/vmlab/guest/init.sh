#!/bin/busybox sh
# keyplane VM lab, stage 1: PID 1 in the initramfs.
# Loads the kernel modules, mounts the host's / over 9p (read-only) under a
# tmpfs overlay, and switches to it; stage2 then runs the command.
# Lines starting with "keyplane-lab: stage" are timestamps for the host.

/bin/busybox --install -s /bin
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "keyplane-lab: stage init"

# Read what to run from the kernel command line while /proc is ours.
nonce= run= stdin=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	keyplane.nonce=*) nonce="${arg#*=}" ;;
	keyplane.run=*) run="${arg#*=}" ;;
	keyplane.stdin=*) stdin="${arg#*=}" ;;
	esac
done

fail() {
	echo "keyplane-lab: FATAL: $*"
	echo "KEYPLANE-LAB-EXIT $nonce 125"
	poweroff -f
	sleep 60
}

[ -n "$nonce" ] && [ -n "$run" ] || fail "keyplane.nonce= or keyplane.run= missing from the kernel command line"

# Modules, in the dependency order the host computed.
n=0
while read -r m; do
	insmod "/lib/keyplane-lab/modules/$m" || fail "insmod $m failed"
	n=$((n + 1))
done </lib/keyplane-lab/modules.order
echo "keyplane-lab: stage modules ($n loaded)"

mkdir -p /mnt/host /mnt/rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /mnt/host ||
	fail "cannot mount the host's root over 9p"
mount -t tmpfs -o mode=0755 tmpfs /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /newroot ||
	fail "cannot mount the overlay"

mkdir -p /newroot/.keyplane-lab
cp /bin/busybox /lib/keyplane-lab/stage2 /newroot/.keyplane-lab/ || fail "cannot copy stage2"
for d in proc sys dev; do
	mkdir -p "/newroot/$d"
	mount --move "/$d" "/newroot/$d" || fail "cannot move /$d"
done
exec switch_root /newroot /.keyplane-lab/busybox sh /.keyplane-lab/stage2 "$nonce" "$run" "$stdin"
