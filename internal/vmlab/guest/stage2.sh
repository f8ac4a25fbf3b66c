# keyplane VM lab, stage 2: PID 1 on the overlay root (the host's files).
# Gives the guest its own /run, /dev/pts and /dev/shm, runs the host-written
# script $2 with KEYPLANE_VM=1, prints the exit marker and powers off.
# Its stdin is /dev/null, or the console when $3 is "console" (vmlab shell).
B=/.keyplane-lab/busybox
nonce="$1"
run="$2"
stdin=/dev/null
[ "$3" = console ] && stdin=/dev/console

$B mount -t tmpfs -o mode=0755 tmpfs /run
$B mkdir -p /run/netns /run/lock /dev/pts /dev/shm
$B mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
$B mount -t tmpfs -o mode=1777 tmpfs /dev/shm
[ -e /dev/fd ] || $B ln -s /proc/self/fd /dev/fd
$B hostname keyplane-lab
# No fallback tunnel devices (ip_vti0, ip6tnl0, ...) in the namespaces tests
# create: a new namespace holds only lo, as on the host.
echo 2 >/proc/sys/net/core/fb_tunnels_only_for_init_net
$B ip link set lo up

export KEYPLANE_VM=1
export HOME=/root
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

echo "keyplane-lab: stage command (guest clock $($B date -u +%Y-%m-%dT%H:%M:%SZ))"
/bin/sh "$run" <"$stdin"
rc=$?
echo "KEYPLANE-LAB-EXIT $nonce $rc"
$B sync
$B poweroff -f
$B sleep 60
