#!/usr/bin/env bash
# A real OpenStack on this machine, with nova-openvz driving simulated
# OpenVZ hosts: Keystone, Placement, Glance, Neutron (ML2/Open vSwitch),
# Nova and nova-compute with this driver, on MariaDB and RabbitMQ.
#
#   tools/cloud.sh up [--image busybox|debian] [--computes 2|1] [--routers]
#                                 start; leave it running (two hosts)
#   tools/cloud.sh down           stop and clean up
#   tools/cloud.sh status | env
#   tools/cloud.sh demo           two servers, one pings
#   tools/cloud.sh tempest [smoke|full|migration|REGEX]   Tempest against it
#   tools/cloud.sh ci             up, demo, smoke, down
#
# Run as root. Installs what is missing first: the distribution packages of
# bindep.txt (profiles default, compile, test and cloud, through
# tools/bootstrap.sh) and a virtualenv in .cloud/venv with
# tools/cloud/requirements.txt and the project (not editable), both with
# upper-constraints.txt. State and logs: .cloud/run (or
# $NOVA_OPENVZ_CLOUD_DIR). "ci" runs the Tempest selection
# $NOVA_OPENVZ_CLOUD_TEMPEST (default smoke) and copies the logs to
# $NOVA_OPENVZ_CLOUD_LOGS if set. doc/source/admin/cloud.rst has the details.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLOUD_VENV=${NOVA_OPENVZ_CLOUD_VENV:-$ROOT/.cloud/venv}
CONSTRAINTS=$ROOT/upper-constraints.txt
STAMP=$CLOUD_VENV/.nova-openvz-cloud
LOG=$ROOT/.cloud/install.log

say() {
    echo "cloud: $*" >&2
}

# Run a command with its output appended to $LOG; show the end on failure.
quietly() {
    mkdir -p "$(dirname "$LOG")"
    if ! "$@" >>"$LOG" 2>&1; then
        tail -n 40 "$LOG" >&2
        say "failed: $*"
        return 1
    fi
}

elapsed() {
    echo $(($(date +%s) - $1))
}

# A digest of what goes into the cloud's virtualenv.
digest() {
    (
        cd "$ROOT"
        {
            find setup.cfg setup.py requirements.txt upper-constraints.txt \
                tools/cloud/requirements.txt nova_openvz nova etc -type f \
                ! -name '*.py[co]' ! -path '*/__pycache__/*' -print0 |
                sort -z | xargs -0 sha256sum
            git rev-parse HEAD 2>/dev/null || true
        } | sha256sum | cut -d' ' -f1
    )
}

prepare() {
    local t0
    t0=$(date +%s)
    BINDEP_PROFILES="default compile test cloud" "$ROOT/tools/bootstrap.sh"
    say "distribution packages and .venv ready ($(elapsed "$t0") s)"
    t0=$(date +%s)
    local sum
    sum=$(digest)
    if [[ -f $STAMP && $(cat "$STAMP") == "$sum" ]]; then
        return 0
    fi
    if [[ ! -x $CLOUD_VENV/bin/python ]]; then
        # The Python bootstrap.sh chose (3.11+) makes this one too.
        "$ROOT/.venv/bin/python" -m venv "$CLOUD_VENV"
        quietly "$CLOUD_VENV/bin/python" -m pip install -U pip
    fi
    if ! git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
        export PBR_VERSION=${PBR_VERSION:-0.0.0}
    fi
    rm -rf "$ROOT/build"
    say "installing the services into $CLOUD_VENV (log: $LOG)"
    quietly "$CLOUD_VENV/bin/python" -m pip install -c "$CONSTRAINTS" \
        -r "$ROOT/tools/cloud/requirements.txt" -r "$ROOT/requirements.txt"
    quietly "$CLOUD_VENV/bin/python" -m pip install -c "$CONSTRAINTS" \
        --no-deps --force-reinstall "$ROOT"
    rm -rf "$ROOT/build"
    echo "$sum" >"$STAMP"
    say "cloud virtualenv ready ($(elapsed "$t0") s)"
}

cloud() {
    "$CLOUD_VENV/bin/python" "$ROOT/tools/cloud/cloud.py" "$@"
}

tempest() {
    "$ROOT/.venv/bin/tox" -c "$ROOT/tox.ini" -e tempest -- "$@"
}

if [[ $(id -u) != 0 ]]; then
    say "run as root"
    exit 1
fi

action=${1:-}
case "$action" in
    up)
        prepare
        cloud "$@"
        ;;
    down|status|env|demo)
        if [[ ! -x $CLOUD_VENV/bin/python ]]; then
            say "no cloud virtualenv in $CLOUD_VENV: nothing to do"
            exit 0
        fi
        cloud "$@"
        ;;
    tempest)
        shift
        tempest "$@"
        ;;
    ci)
        shift
        t0=$(date +%s)
        prepare
        rc=0
        cloud up "$@" || rc=$?
        if [[ $rc == 0 ]]; then
            cloud demo || rc=$?
        fi
        if [[ $rc == 0 ]]; then
            tempest "${NOVA_OPENVZ_CLOUD_TEMPEST:-smoke}" || rc=$?
        fi
        cloud down || rc=$?
        if [[ -n ${NOVA_OPENVZ_CLOUD_LOGS:-} ]]; then
            mkdir -p "$NOVA_OPENVZ_CLOUD_LOGS"
            cp -r "${NOVA_OPENVZ_CLOUD_DIR:-$ROOT/.cloud/run}/logs/." \
                "$NOVA_OPENVZ_CLOUD_LOGS/" || true
        fi
        say "ci: exit $rc after $(elapsed "$t0") s"
        exit "$rc"
        ;;
    *)
        sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
