#!/usr/bin/env bash
# The Debian package, as an operator meets it: built from this tree (cpack), linted,
# installed with dpkg, its service's command run the way the unit runs it (user nfm,
# the unit's capabilities, no new privileges: systemd is not PID 1 here, so setpriv
# does what systemd would), against a guest whose QEMU runs as another unprivileged
# user. Frames must arrive in /var/lib/nfm; without CAP_SYS_PTRACE the VM gets a clear
# permission error and the daemon keeps running. Then the package is purged.
#
#   test_package.sh BUILD_DIR NFM_LAB      (root; exits 77, skipped, otherwise)
set -euo pipefail
build=$(cd "$1" && pwd)
lab=$2
src=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: installing a package, adding users and granting capabilities need root"
  exit 77
fi

work=$(mktemp -d /tmp/nfm-package-XXXXXX)
chmod 755 "$work"
lab_pid="" daemon_pid=""
own_policy=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null || true
  [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
  [ -n "$lab_pid" ] && kill "$lab_pid" 2>/dev/null && wait "$lab_pid" 2>/dev/null || true
  dpkg --purge nfm >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
step() { echo "== $*"; }

step "build the package (cpack in $build)"
(cd "$build" && cpack -G DEB -B "$work/deb" >"$work/cpack.log" 2>&1) || {
  cat "$work/cpack.log"
  fail "cpack"
}
deb=$(ls "$work"/deb/nfm_*.deb)
dpkg-deb --field "$deb" Package Version Depends Recommends

step "lintian: no errors"
# The tree is a test build (sanitizers, debug info): lintian judges the packaging.
lintian --fail-on error --tag-display-limit 0 "$deb" | tee "$work/lintian.txt" ||
  fail "lintian reports errors"

step "install"
# On a host where systemd runs, the package would start the real service (all VMs,
# port 9464): policy-rc.d tells deb-systemd-invoke not to start anything.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  own_policy=1
fi
dpkg --purge nfm >/dev/null 2>&1 || true
dpkg -i "$deb" || fail "dpkg -i"
for f in /usr/bin/nfm /lib/systemd/system/nfm-crawl.service /etc/nfm/crawl.conf \
  /usr/share/man/man1/nfm.1.gz /usr/share/man/man1/nfm-crawl.1.gz \
  /usr/share/bash-completion/completions/nfm /usr/share/doc/nfm/copyright \
  /usr/share/nfm/grafana/nfm.json /usr/share/nfm/prometheus/nfm.rules.yml; do
  [ -e "$f" ] || fail "$f not installed"
done
getent passwd nfm >/dev/null || fail "no user nfm"
[ "$(stat -c %U:%a /var/lib/nfm)" = "nfm:750" ] || fail "/var/lib/nfm is $(stat -c %U:%a /var/lib/nfm)"
grep -qx /etc/nfm/crawl.conf /var/lib/dpkg/info/nfm.conffiles || fail "crawl.conf is no conffile"
zcat /usr/share/man/man1/nfm-crawl.1.gz | grep -q -- 'print\\-config' ||
  fail "nfm-crawl(1) does not document --print-config"
completion=$(bash -c 'source /usr/share/bash-completion/completions/nfm
  COMP_WORDS=(nfm cr); COMP_CWORD=1; _nfm; echo "${COMPREPLY[*]}"
  COMP_WORDS=(nfm crawl --print-c); COMP_CWORD=2; _nfm; echo "${COMPREPLY[*]}"')
[ "$completion" = $'crawl\n--print-config' ] || fail "bash completion gave: $completion"
/usr/bin/nfm crawl --config /etc/nfm/crawl.conf --print-config | grep -qx \
  'emit = \["sqlite:/var/lib/nfm/frames.db", "prometheus:127.0.0.1:9464"\]' ||
  fail "the installed configuration does not read back"

step "the unit: exposure score (goal <= 3.0)"
unit=/lib/systemd/system/nfm-crawl.service
systemd-analyze security --offline=true "$unit" >"$work/security.txt" 2>&1 || true
score=$(sed -n 's/.*Overall exposure level for nfm-crawl.service: \([0-9.]*\).*/\1/p' "$work/security.txt")
echo "systemd-analyze security: $score"
[ -n "$score" ] || { cat "$work/security.txt"; fail "no exposure score"; }
awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }' || { cat "$work/security.txt"; fail "exposure $score > 3.0"; }

# What the unit runs and grants, read from the unit itself.
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
caps=$(sed -n 's/^AmbientCapabilities=//p' "$unit" | tr 'A-Z' 'a-z' | sed 's/cap_//g; s/ /,+/g')
user=$(sed -n 's/^User=//p' "$unit")
environment=$(sed -n 's/^Environment=//p' "$unit")
[ "$caps" = "sys_ptrace" ] || fail "the unit grants '$caps', the documented set is sys_ptrace"

step "a guest whose QEMU runs as another unprivileged user"
getent passwd nfm-guest >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin nfm-guest
"$lab" run --kernel 5.10 --ram 384 --name pkg-guest --run-as nfm-guest >"$work/lab.log" 2>&1 &
lab_pid=$!
for _ in $(seq 300); do
  grep -q '^ready in' "$work/lab.log" && break
  kill -0 "$lab_pid" 2>/dev/null || { cat "$work/lab.log"; fail "the guest did not boot"; }
  sleep 1
done
grep -q '^ready in' "$work/lab.log" || fail "the guest was not ready in 300 s"
qemu_pid=$(sed -n 's/^qemu pid: *//p' "$work/lab.log")
[ "$(ps -o user= -p "$qemu_pid")" = nfm-guest ] ||
  fail "QEMU runs as $(ps -o user= -p "$qemu_pid"), not nfm-guest"
echo "QEMU $qemu_pid runs as $(ps -o user= -p "$qemu_pid")"

# The unit's ExecStart, as the unit's user with only the unit's capabilities. --match
# keeps it to this test's guest (the command line wins over crawl.conf), --log logfmt
# to a file instead of the journal.
run_daemon() {  # CAPS LOG
  local grant=$1 log=$2
  # shellcheck disable=SC2086 # the unit's words
  setpriv --reuid="$user" --regid="$user" --init-groups --no-new-privs \
    --inh-caps="-all${grant:+,+$grant}" --ambient-caps="-all${grant:+,+$grant}" \
    --bounding-set="-all${grant:+,+$grant}" \
    env -i PATH=/usr/bin:/bin HOME=/var/lib/nfm $environment \
    $exec_start --match pkg-guest --log logfmt --no-libvirt >"$log" 2>&1 &
  daemon_pid=$!
}
# Read-only: root must not create the store before the daemon does.
store() {
  [ -e /var/lib/nfm/frames.db ] && sqlite3 -readonly /var/lib/nfm/frames.db "$1" 2>/dev/null
}
frames_of_guest() {
  store "select count(*) from frames where vm = 'pkg-guest'" || echo 0
}

step "the service's command, as $user with CAP_SYS_PTRACE only"
run_daemon "$caps" "$work/daemon.log"
for _ in $(seq 120); do
  [ "$(frames_of_guest)" -ge 3 ] && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log"; fail "the daemon exited"; }
  sleep 1
done
[ "$(frames_of_guest)" -ge 3 ] || { cat "$work/daemon.log"; fail "no frames in /var/lib/nfm/frames.db"; }
status=/proc/$daemon_pid/status
uid=$(awk '/^Uid:/ { print $2 }' "$status")
[ "$uid" = "$(id -u "$user")" ] && [ "$uid" != 0 ] || fail "the daemon runs as uid $uid"
cap_eff=$(awk '/^CapEff:/ { print $2 }' "$status")
[ "$cap_eff" = 0000000000080000 ] || fail "effective capabilities $cap_eff, not CAP_SYS_PTRACE alone"
grep -q '^NoNewPrivs:.*1' "$status" || fail "no_new_privs is not set"
echo "frames: $(frames_of_guest), uid $uid, CapEff $cap_eff"
# The stored frame is the guest's: its kernel and its processes.
store "select kernel_release from frames where vm = 'pkg-guest' limit 1" |
  grep -q '^5\.10\.' || fail "the frames are not of the 5.10 guest"

step "Prometheus endpoint: the dashboard's and the rules' metrics are served"
metrics=""
for _ in $(seq 30); do
  metrics=$(curl -sf http://127.0.0.1:9464/metrics || true)
  grep -q '^nfm_process_cpu_seconds_total' <<<"$metrics" && break
  sleep 1
done
printf '%s\n' "$metrics" >"$work/metrics.txt"
grep -q '^nfm_vm_host_cpu_seconds_total{vm="pkg-guest"}' "$work/metrics.txt" ||
  fail "no %HOST metric for the guest"
python3 "$src/tests/package/check_dashboard.py" /usr/share/nfm/grafana/nfm.json \
  /usr/share/nfm/prometheus/nfm.rules.yml --metrics "$work/metrics.txt" ||
  fail "the dashboard or the rules use metrics nfm does not serve"

step "SIGHUP: an edited crawl.conf is read again, frames go on"
# The administrator's edit: fewer features. Frames after the reload must have them only
# (before it, with features = "all", they have the processes).
# frames.sections names each section the frame has (its rows are row versions).
store "select sections from frames where vm = 'pkg-guest' order by id desc limit 1" |
  jq -e 'has("processes")' >/dev/null || fail "a frame before the reload has no processes"
sed -i 's/^features = "all"$/features = "uname,uptime"/' /etc/nfm/crawl.conf
grep -qx 'features = "uname,uptime"' /etc/nfm/crawl.conf || fail "crawl.conf has no features line to edit"
last=$(store "select max(id) from frames")
kill -HUP "$daemon_pid"
new_frames() { store "select count(*) from frames where vm = 'pkg-guest' and id > $last" || echo 0; }
for _ in $(seq 60); do
  grep -q 'event=config_reloaded' "$work/daemon.log" && [ "$(new_frames)" -ge 3 ] && break
  sleep 1
done
grep -q 'event=config_reloaded' "$work/daemon.log" || { cat "$work/daemon.log"; fail "no config_reloaded"; }
[ "$(new_frames)" -ge 3 ] || fail "frames stopped after the reload"
newest=$(store "select sections from frames where vm = 'pkg-guest' order by id desc limit 1")
jq -e 'has("uptime") and (has("processes") | not)' <<<"$newest" >/dev/null ||
  fail "the frames after the reload do not follow the edited features"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || fail "the daemon exited $? on SIGTERM"
daemon_pid=""

step "without CAP_SYS_PTRACE: a permission error for the VM, and the daemon goes on"
run_daemon "" "$work/noptrace.log"
for _ in $(seq 60); do
  grep -q 'event=vm_attach_failed.*vm=pkg-guest' "$work/noptrace.log" && break
  sleep 1
done
line=$(grep -m1 'event=vm_attach_failed.*vm=pkg-guest' "$work/noptrace.log" || true)
echo "$line"
[ -n "$line" ] || { cat "$work/noptrace.log"; fail "no vm_attach_failed event for the guest"; }
grep -q 'CAP_SYS_PTRACE' <<<"$line" || fail "the error does not say what is missing: $line"
sleep 5
kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/noptrace.log"; fail "the daemon exited"; }
kill -TERM "$daemon_pid"
wait "$daemon_pid" || fail "the daemon exited $? on SIGTERM"
daemon_pid=""

step "purge"
dpkg --purge nfm >/dev/null
[ ! -e /usr/bin/nfm ] && [ ! -e /var/lib/nfm ] || fail "purge left files"
echo "package: all checks passed"
