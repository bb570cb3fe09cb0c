#!/bin/busybox sh
# /init of the nfm test guest: mounts, modules, network, known files, then becomes
# nfm-init (pid 1 forever), which starts the workload and the reporter.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /run
hostname nfm-guest
echo nfm.test >/proc/sys/kernel/domainname
# No IPv6 duplicate address detection: addresses are usable (not "tentative") at once.
echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad
echo 0 >/proc/sys/net/ipv6/conf/all/accept_dad

# Modules, in dependency order (written by build-initramfs.sh): "FILE ARGS...".
while read -r ko args; do
  [ -n "$ko" ] && insmod "/lib/modules/$ko" $args 2>/dev/null
done </etc/nfm-modules

ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip -6 addr add fd00::15/64 dev eth0
ip route add default via 10.0.2.2
ip link set dummy0 up
ip addr add 192.168.77.1/24 dev dummy0
# A second NIC on a LAN between lab guests (testing/lab/lan.h): "nfm.lan=V4/LEN,V6/LEN".
lan=$(sed -n 's/.*nfm\.lan=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$lan" ] && [ -e /sys/class/net/eth1 ]; then
  ip link set eth1 up
  ip addr add "${lan%%,*}" dev eth1
  case "$lan" in *,*) ip -6 addr add "${lan#*,}" dev eth1 ;; esac
fi

# Known files (their content is in testing/lab/workload.h).
printf 'nfm known file\nline 2\n' >/etc/nfm-known.txt
dd if=/dev/zero of=/tmp/nfm-data.bin bs=1024 count=8 2>/dev/null

# A crowded guest, for measuring what a frame costs (never in a test's workload):
# nfm.crowd=N starts N daemon-like processes first (nfm-work crowd).
crowd=$(sed -n 's/.*nfm\.crowd=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "$crowd" ]; then /bin/nfm-work crowd "$crowd"; fi

exec /bin/nfm-init
