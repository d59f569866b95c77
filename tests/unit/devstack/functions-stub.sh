#!/bin/bash
#
# A small stand-in for devstack's function library, for running the phases
# of devstack/plugin.sh in tests (tests/unit/devstack/test_plugin.py).
#
# Every function appends its call to $STUB_LOG, one line per call: the
# function's name, then its arguments separated by a tab. iniset and iniget
# really write and read INI files (with Python's configparser, keys kept
# as written); sudo runs its command as the current user, except ownership
# changes; package and pip installs, and the openstack client, only log.
#
# Settings:
#   STUB_LOG       the call log (required)
#   STUB_SERVICES  enabled services, space separated (is_service_enabled)
#   STUB_PYTHON    the Python running iniset/iniget (default: python3)

STUB_PYTHON=${STUB_PYTHON:-python3}
STUB_SERVICES=${STUB_SERVICES:-}

function stub_log {
    local IFS=$'\t'
    echo "$*" >>"$STUB_LOG"
}

function die {
    local line=$1
    shift
    stub_log die "$*"
    echo "die (plugin.sh line $line): $*" >&2
    exit 1
}

function echo_summary {
    stub_log echo_summary "$*"
    echo "$*"
}

function is_ubuntu {
    return 0
}

function is_service_enabled {
    stub_log is_service_enabled "$@"
    local service
    for service in "$@"; do
        if [[ " $STUB_SERVICES " == *" $service "* ]]; then
            return 0
        fi
    done
    return 1
}

function install_package {
    stub_log install_package "$@"
}

function pip_install {
    stub_log pip_install "$@"
}

function setup_develop {
    stub_log setup_develop "$@"
}

function sudo {
    stub_log sudo "$@"
    if [[ "$1" == "chown" ]]; then
        return 0
    fi
    "$@"
}

function openstack {
    stub_log openstack "$@"
    local arg file=""
    local previous=""
    for arg in "$@"; do
        if [[ "$previous" == "--file" ]]; then
            file=$arg
        fi
        previous=$arg
    done
    if [[ " $* " == *" image create "* && ! -f "$file" ]]; then
        echo "openstack stub: image file '$file' does not exist" >&2
        return 1
    fi
    if [[ " $* " == *" image show "* ]]; then
        echo "11111111-2222-3333-4444-555555555555"
    fi
}

# iniset [-sudo] config-file section option value
function iniset {
    if [[ "$1" == "-sudo" ]]; then
        shift
    fi
    stub_log iniset "$@"
    "$STUB_PYTHON" - "$@" <<'EOF'
import configparser
import os
import sys

path, section, option, value = sys.argv[1:5]
parser = configparser.RawConfigParser(strict=False)
parser.optionxform = str
parser.read(path)
if section != 'DEFAULT' and not parser.has_section(section):
    parser.add_section(section)
parser.set(section, option, value)
os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
with open(path, 'w') as f:
    parser.write(f)
EOF
}

# iniget config-file section option
function iniget {
    stub_log iniget "$@"
    "$STUB_PYTHON" - "$@" <<'EOF'
import configparser
import sys

path, section, option = sys.argv[1:4]
parser = configparser.RawConfigParser(strict=False)
parser.optionxform = str
parser.read(path)
if parser.has_option(section, option):
    print(parser.get(section, option))
EOF
}
