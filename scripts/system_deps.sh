#!/usr/bin/env bash
# What the tests need from the host beyond Python 3.11, installed from Debian's packages.
# `make test` runs this first; `make run` needs none of it. Idempotent: when everything is
# present it installs nothing and does not touch apt.
#
#   scripts/system_deps.sh            the test set (below)
#   scripts/system_deps.sh wrk        named packages only (make bench-serving)
#
# Test set and why:
#   bubblewrap  the sandbox's stronger isolation (the seccomp fallback is tested beside it)
#   prometheus  promtool checks the alert rules and dashboards; a real Prometheus scrapes the service
#   postgresql  the production-profile test runs Dagster and MLflow on a throwaway cluster
#   chromium    the live tests drive the Dagster UI in it (Playwright, from PyPI, launches
#               Debian's browser: its own browser download is not needed)
set -euo pipefail

# package -> how to tell it is installed
present() {
  case "$1" in
    bubblewrap) command -v bwrap >/dev/null ;;
    prometheus) command -v prometheus >/dev/null && command -v promtool >/dev/null ;;
    postgresql) compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ;;
    chromium) command -v chromium >/dev/null ;;
    wrk) command -v wrk >/dev/null ;;
    *) echo "system_deps: unknown package '$1'" >&2; exit 2 ;;
  esac
}

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(bubblewrap prometheus postgresql chromium)

missing=()
for package in "${wanted[@]}"; do
  present "$package" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system-deps: present: ${wanted[*]}"
  exit 0
fi

echo "system-deps: installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  as_root=(none)
fi
if [ "${as_root[*]-}" = none ] || ! command -v apt-get >/dev/null; then
  cat >&2 <<EOF
system-deps: cannot install ${missing[*]}: this needs apt-get (Debian/Ubuntu) and root or
passwordless sudo. Install them yourself, then run make test again:
    sudo apt-get install -y ${missing[*]}
(on another distribution: the same packages by their names there; make run needs none of them)
EOF
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for package in "${missing[@]}"; do
  present "$package" || { echo "system-deps: $package installed but not found" >&2; exit 1; }
done
echo "system-deps: installed: ${missing[*]}"
