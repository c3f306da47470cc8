#!/usr/bin/env bash
# Installs, from Debian's packages, what the integration and browser tests need and this machine
# lacks (STYLE.md "Tests"): socat (pty pairs), Mosquitto (upstream broker), InfluxDB 1.6.7
# (influxd), Chromium (dashboard tests), a CJK font (DESIGN.md: without one Chinese renders as
# empty boxes) and libfaketime (the clock-step test steps a gateway's wall clock). Quiet when
# everything is present; one line per package it installs.
#
# The tests start their own brokers and databases on free ports: a system service that a package's
# postinst would start (mosquitto on 1883, influxdb on 8086) is kept from starting and disabled.
#
# Usage: bash scripts/test-deps.sh [--dry-run]
#   --dry-run         print what would be installed, change nothing (exit 0)
#   TEST_DEPS_PATH    directories searched for the commands (default: $PATH plus the sbin
#                     directories, since mosquitto lives in /usr/sbin); used to test this script
#   TEST_DEPS_ROOT    prefix for the file checks (default: none); used to test this script
set -euo pipefail

dry_run=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test-deps: unknown argument: $arg (usage: test-deps.sh [--dry-run])" >&2; exit 2 ;;
  esac
done

search_path="${TEST_DEPS_PATH:-$PATH:/usr/local/sbin:/usr/sbin:/sbin}"
root="${TEST_DEPS_ROOT:-}"
chromium_bin="$root/usr/bin/chromium"
font_file="$root/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"

has_cmd() { PATH="$search_path" command -v "$1" >/dev/null 2>&1; }

has_cjk_font() {
  [ -e "$font_file" ] && return 0
  # Only ask fontconfig about the real system; a test of this script sets TEST_DEPS_ROOT.
  [ -z "$root" ] && has_cmd fc-list && fc-list 2>/dev/null | grep -qi 'WenQuanYi Micro Hei' && return 0
  return 1
}

missing=()
has_cmd socat || missing+=(socat)
has_cmd mosquitto || missing+=(mosquitto)
has_cmd mosquitto_pub || missing+=(mosquitto-clients)
has_cmd influxd || missing+=(influxdb)
has_cmd faketime || missing+=(faketime)
[ -x "$chromium_bin" ] || missing+=(chromium)
has_cjk_font || missing+=(fonts-wqy-microhei)

[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$dry_run" -eq 1 ]; then
  echo "test-deps: would install: ${missing[*]}"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  {
    echo "test-deps: the tests need Debian packages that are missing: ${missing[*]}"
    echo "test-deps: install them as root, then run the tests again:"
    echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
  } >&2
  exit 1
fi

log=$(mktemp -t gridedge-test-deps.XXXXXX)
# Keep postinst scripts from starting services (Debian's policy-rc.d convention, honoured by
# invoke-rc.d and deb-systemd-invoke). An existing policy is the administrator's: leave it alone.
policy=/usr/sbin/policy-rc.d
policy_marker='# gridedge test-deps: temporary'
created_policy=0
cleanup() {
  if [ "$created_policy" -eq 1 ] && grep -qF "$policy_marker" "$policy" 2>/dev/null; then rm -f "$policy"; fi
  rm -f "$log"
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n%s\nexit 101\n' "$policy_marker" >"$policy"
  chmod 755 "$policy"
  created_policy=1
fi

# System daemons: mosquitto/influxd running with the packaged config under /etc, which is how a
# postinst or init script starts them. Instances that tests start (config in a temp dir) are
# never matched, so a test run in parallel is left alone; daemons running before are not ours.
daemon_pids() {
  local d comm cmdline
  for d in /proc/[0-9]*; do
    comm=$(cat "$d/comm" 2>/dev/null) || continue
    case "$comm" in mosquitto | influxd) ;; *) continue ;; esac
    cmdline=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) || continue
    case "$cmdline" in *" /etc/mosquitto/"* | *" /etc/influxdb/"*) echo "${d#/proc/}" ;; esac
  done
}
before=" $(daemon_pids | tr '\n' ' ') "

if ! apt-get update -qq >"$log" 2>&1 ||
  ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
  cat "$log" >&2
  echo "test-deps: apt-get failed installing: ${missing[*]}" >&2
  exit 1
fi

systemd_running=0
[ -d /run/systemd/system ] && systemd_running=1

# Stop and disable a service the install registered, so that nothing listens on 1883/8086 now or
# after a reboot. Only for packages this run installed.
quiet_service() {
  local svc=$1
  [ -e "/lib/systemd/system/$svc.service" ] || [ -e "/etc/init.d/$svc" ] || return 0
  if [ "$systemd_running" -eq 1 ]; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  else
    if [ -x "/etc/init.d/$svc" ]; then "/etc/init.d/$svc" stop >/dev/null 2>&1 || true; fi
    if command -v update-rc.d >/dev/null 2>&1; then update-rc.d "$svc" disable >/dev/null 2>&1 || true; fi
  fi
  echo "service $svc disabled"
}

for pkg in "${missing[@]}"; do
  note=""
  case "$pkg" in
    mosquitto) note=$(quiet_service mosquitto) ;;
    influxdb) note=$(quiet_service influxdb) ;;
  esac
  echo "test-deps: installed $pkg${note:+ ($note)}"
done

# Belt and braces: a daemon that started anyway (e.g. no policy-rc.d support) is stopped by its PID.
for pid in $(daemon_pids); do
  case "$before" in *" $pid "*) continue ;; esac
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || echo daemon)
  kill "$pid" 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  echo "test-deps: stopped $comm (pid $pid) started by the install"
done
exit 0
