#!/usr/bin/env bash
# Run nova-openvz's checks and tests through tox, after tools/bootstrap.sh.
#
# With no arguments runs "tox -e pep8,zuul,py3,functional". Arguments replace
# that and go to tox as they are, for example:
#   tools/run-tests.sh -e py3
#   tools/run-tests.sh -e py3 -- tests.unit.test_vzconf
#   tools/run-tests.sh -e functional    (as root: chroots and mounts)
# Exits non-zero when anything fails, and ends with one line adding up the
# stestr runs: "stestr: N passed, N failed, N skipped", after the names of
# the tests that failed (a CI log often keeps only its tail).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${NOVA_OPENVZ_VENV:-$ROOT/.venv}

"$ROOT/tools/bootstrap.sh"
cd "$ROOT"

if [[ $# == 0 ]]; then
    set -- -e pep8,zuul,py3,functional
fi

OUT=$(mktemp "${TMPDIR:-/tmp}/nova-openvz-tox.XXXXXX")
trap 'rm -f "$OUT"' EXIT

rc=0
"$VENV/bin/tox" "$@" 2>&1 | tee "$OUT" || rc=${PIPESTATUS[0]}

# Name the failed tests and add up stestr's "Totals" blocks (one per run).
awk '
    / \.\.\. FAILED$/ {
        sub(/^\{[0-9]+\} /, ""); sub(/ (\[[0-9.]+s\] )?\.\.\. FAILED$/, "")
        print "failed: " $0
    }
    /^ - Passed: [0-9]+$/ { passed += $3; runs++ }
    /^ - Expected Fail: [0-9]+$/ { passed += $4 }
    /^ - Failed: [0-9]+$/ { failed += $3 }
    /^ - Unexpected Success: [0-9]+$/ { failed += $4 }
    /^ - Skipped: [0-9]+$/ { skipped += $3 }
    END {
        if (runs)
            printf "stestr: %d passed, %d failed, %d skipped\n",
                passed, failed, skipped
    }' "$OUT"

exit "$rc"
