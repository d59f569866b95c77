#!/usr/bin/env bash
# Set up a Debian or Ubuntu machine to run, test and hack on nova-openvz.
#
# Idempotent: installs only what is missing and prints nothing when
# everything is already in place.
#
#  1. distribution packages listed in bindep.txt for the profiles in
#     $BINDEP_PROFILES (default: "default compile test"), read without
#     needing bindep itself; "apt-get update" runs only when something is
#     missing and the package lists are absent or old (or the install fails);
#  2. a virtualenv in .venv (or $NOVA_OPENVZ_VENV) made with Python 3.11+;
#  3. tox, the test requirements (the sandbox runs Nova's functional
#     harness) and the project, installed as a wheel (not editable), all with
#     upper-constraints.txt. The project is reinstalled only when its files
#     changed since the last run.
#
# Environment: PYTHON (interpreter for the venv), NOVA_OPENVZ_VENV,
# BINDEP_PROFILES, BOOTSTRAP_VERBOSE=1 (show pip and apt output).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${NOVA_OPENVZ_VENV:-$ROOT/.venv}
PROFILES=${BINDEP_PROFILES:-default compile test}
CONSTRAINTS=$ROOT/upper-constraints.txt
STAMP=$VENV/.nova-openvz-bootstrap
MIN_PY=3.11
# The package lists are refreshed before installing when older than this.
APT_LISTS_MAX_AGE_MIN=360

LOG=$(mktemp "${TMPDIR:-/tmp}/nova-openvz-bootstrap.XXXXXX")
trap 'rm -f "$LOG"' EXIT

say() {
    echo "bootstrap: $*" >&2
}

die() {
    say "ERROR: $*"
    exit 1
}

# Run a command with its output in $LOG; show the output if it fails.
quietly() {
    if [[ ${BOOTSTRAP_VERBOSE:-0} == 1 ]]; then
        "$@"
        return
    fi
    if ! "$@" >"$LOG" 2>&1; then
        cat "$LOG" >&2
        say "ERROR: failed: $*"
        return 1
    fi
}

as_root() {
    if [[ $(id -u) == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "not root and no sudo; run as root: $*"
    fi
}

# apt-get as root, never asking (sudo would drop an exported variable).
apt_get() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get "$@"
}

# Labels that select bindep lines on this machine: platform:dpkg,
# platform:<ID>, platform:<ID>-<codename>.
platform_labels() {
    local id="" codename=""
    if [[ -r /etc/os-release ]]; then
        # shellcheck disable=SC1091
        id=$(. /etc/os-release && echo "${ID:-}")
        # shellcheck disable=SC1091
        codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    fi
    echo "platform:dpkg platform:$id platform:$id-$codename"
}

# Print the package names of bindep.txt selected for $PROFILES on this
# platform. A line is selected when its platform labels (if any) match one
# of ours and none of its negated ones do, and likewise for profiles; lines
# without profile labels are for every profile.
bindep_packages() {
    awk -v platforms="$(platform_labels)" -v profiles="$PROFILES" '
        function labels(text, set,    parts, n, i) {
            n = split(text, parts, " ")
            for (i = 1; i <= n; i++) set[parts[i]] = 1
        }
        BEGIN { labels(platforms, plat); labels(profiles, prof) }
        /^[[:space:]]*(#|$)/ { next }
        {
            sel = ""
            if (match($0, /\[[^]]*\]/))
                sel = substr($0, RSTART + 1, RLENGTH - 2)
            n = split(sel, s, " ")
            want_plat = got_plat = want_prof = got_prof = veto = 0
            for (i = 1; i <= n; i++) {
                label = s[i]
                neg = sub(/^!/, "", label)
                if (label ~ /^platform:/) {
                    if (neg) veto = veto || (label in plat)
                    else {
                        want_plat = 1
                        got_plat = got_plat || (label in plat)
                    }
                } else {
                    if (neg) veto = veto || (label in prof)
                    else {
                        want_prof = 1
                        got_prof = got_prof || (label in prof)
                    }
                }
            }
            if (!veto && (!want_plat || got_plat) && (!want_prof || got_prof))
                print $1
        }' "$ROOT/bindep.txt"
}

apt_lists_fresh() {
    [[ -n $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' \
        -mmin "-$APT_LISTS_MAX_AGE_MIN" -print -quit 2>/dev/null) ]]
}

install_packages() {
    command -v dpkg-query >/dev/null || {
        say "not a Debian/Ubuntu machine: install the packages of" \
            "bindep.txt by hand"
        return 0
    }
    local pkg missing=()
    while read -r pkg; do
        if [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" \
            2>/dev/null) != ii* ]]; then
            missing+=("$pkg")
        fi
    done < <(bindep_packages)
    [[ ${#missing[@]} == 0 ]] && return 0

    say "installing distribution packages: ${missing[*]}"
    local install=(install -y -q --no-install-recommends "${missing[@]}")
    if ! apt_lists_fresh; then
        quietly apt_get update -q
    fi
    if ! quietly apt_get "${install[@]}"; then
        say "retrying after apt-get update"
        quietly apt_get update -q
        quietly apt_get "${install[@]}"
    fi
}

python_ok() {
    "$1" -c "import sys; sys.exit(sys.version_info < (${MIN_PY/./, }))" \
        2>/dev/null
}

find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null && python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# Ubuntu 22.04's python3 is 3.10: install the distribution's 3.11 beside it.
install_python() {
    command -v apt-get >/dev/null || return 1
    apt_lists_fresh || quietly apt_get update -q
    apt-cache show python3.11-venv >/dev/null 2>&1 || return 1
    say "installing python3.11 (python3 is older than $MIN_PY)"
    quietly apt_get install -y -q --no-install-recommends \
        python3.11 python3.11-venv python3.11-dev
}

venv_ok() {
    [[ -x $VENV/bin/python ]] && python_ok "$VENV/bin/python" &&
        "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}

make_venv() {
    venv_ok && return 0
    local python
    python=$(find_python) || { install_python && python=$(find_python); } ||
        die "no Python >= $MIN_PY found (set PYTHON=/path/to/python3)"
    if [[ -e $VENV ]]; then
        [[ -f $VENV/pyvenv.cfg ]] ||
            die "$VENV exists and is not a virtualenv; move it away"
        say "recreating $VENV (unusable or Python older than $MIN_PY)"
        rm -rf "$VENV"
    fi
    say "creating $VENV with $python"
    quietly "$python" -m venv "$VENV"
    quietly "$VENV/bin/python" -m pip install -q -U pip
}

# A digest of everything that goes into the installed project.
source_digest() {
    (
        cd "$ROOT"
        {
            find setup.cfg setup.py requirements.txt upper-constraints.txt \
                test-requirements.txt README.md nova_openvz nova etc -type f \
                ! -name '*.py[co]' ! -path '*/__pycache__/*' \
                ! -name '*.conf.sample' -print0 2>/dev/null |
                sort -z | xargs -0 sha256sum
            git rev-parse HEAD 2>/dev/null || true
        } | sha256sum | cut -d' ' -f1
    )
}

install_project() {
    local digest
    digest=$(source_digest)
    if [[ -f $STAMP && -x $VENV/bin/tox && -x $VENV/bin/nova-openvz ]]; then
        [[ $(cat "$STAMP") == "$digest" ]] && return 0
    fi
    # pbr takes the version from git; outside a git checkout it needs one.
    if ! git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
        export PBR_VERSION=${PBR_VERSION:-0.0.0}
    fi
    say "installing tox and nova-openvz (non-editable) into $VENV"
    # setuptools builds in the source tree and would reuse stale files there.
    rm -rf "$ROOT/build"
    local pip=("$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS")
    # The sandbox runs Nova's functional harness: it needs the test
    # requirements (wsgi-intercept, openstack-placement, fixtures) too.
    quietly "${pip[@]}" tox -r "$ROOT/requirements.txt" \
        -r "$ROOT/test-requirements.txt"
    # Dependencies are in place; rebuild and reinstall the project itself.
    quietly "${pip[@]}" --no-deps --force-reinstall "$ROOT"
    echo "$digest" >"$STAMP"
}

install_packages
make_venv
install_project
