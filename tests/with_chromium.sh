#!/usr/bin/env bash
# Usage: tests/with_chromium.sh CMD [ARGS...]
#
# Makes sure headless Chromium (/usr/bin/chromium, Debian's `chromium` package) is installed, then runs CMD
# (exec, so CMD's status is this script's). tests/test_interactive.py opens the interactive report in it.
# Installing takes about 15 s. Where it cannot be done (not root, no package) it says so in one line and
# runs CMD anyway: the Chromium test then skips (it fails under CI=true).
set -euo pipefail

say() { echo "with_chromium: $*" >&2; }

if [[ $# -eq 0 ]]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

if [[ ! -x /usr/bin/chromium ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        say "not root, cannot install Chromium; the headless-browser test will be skipped"
    else
        say "installing Chromium (apt-get install chromium)"
        t0=$(date +%s)
        if DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 \
                chromium >/dev/null 2>&1; then
            say "installed Chromium in $(($(date +%s) - t0))s"
        else
            say "could not install Chromium; the headless-browser test will be skipped"
        fi
    fi
fi

exec "$@"
