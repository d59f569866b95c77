#!/bin/bash
#
# devstack/plugin.sh - devstack plugin of nova-openvz, the Nova compute
# driver for OpenVZ containers.
#
# devstack sources this file as "plugin.sh <mode> <phase>" after
# devstack/settings. Phases used:
#
#   stack pre-install   distribution packages; real mode: OpenVZ kernel and
#                       userland present (installs missing tools)
#   stack install       the driver into nova-compute's Python environment
#   stack post-config   simulated mode: lay out the host tree; compute
#                       options and privsep's sudo rule; nova-openvz check
#   stack extra         an OS template image in Glance
#   stack test-config   Tempest's feature flags from the support matrix
#   unstack             nothing of ours runs
#   clean               the simulated host tree and the sudo rule
#
# OPENVZ_MODE=simulated runs on a stock kernel against a simulated OpenVZ
# host; OPENVZ_MODE=real uses this host's OpenVZ kernel and tools.

# Save trace setting
_XTRACE_NOVA_OPENVZ=$(set +o | grep xtrace)
set -o xtrace

OPENVZ_DRIVER=openvz.OpenVZDriver
OPENVZ_PRIVSEP_CONTEXT=nova_openvz.privsep.vz_pctxt


# The Python of nova-compute's environment.
function openvz_python {
    local candidate
    for candidate in "$NOVA_OPENVZ_PYTHON" \
            "${NOVA_BIN_DIR:+$NOVA_BIN_DIR/python3}" \
            "${DEVSTACK_VENV:+$DEVSTACK_VENV/bin/python3}"; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    command -v python3
}

# privsep-helper of nova-compute's environment, as an absolute path: the
# sudoers rule names it exactly.
function openvz_privsep_helper {
    local python
    python=$(openvz_python)
    local candidate
    for candidate in "${NOVA_BIN_DIR:+$NOVA_BIN_DIR/privsep-helper}" \
            "$(dirname "$python")/privsep-helper"; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    command -v privsep-helper || die $LINENO "privsep-helper not found" \
        "next to $python: install oslo.privsep"
}

# The host tree the driver works on, by mode.
function openvz_host_root {
    if [[ "$OPENVZ_MODE" == "simulated" ]]; then
        echo "$OPENVZ_SIM_ROOT"
    else
        echo "$OPENVZ_HOST_ROOT"
    fi
}

# Set one option where nova-compute reads it. devstack builds
# $NOVA_CPU_CONF by copying $NOVA_CONF when it starts nova-compute and
# then merging local.conf's post-config for $NOVA_CPU_CONF, so the option
# goes into both files: it survives that copy, and $NOVA_CPU_CONF holds it
# whatever the order.
function openvz_compute_iniset {
    iniset "$NOVA_CPU_CONF" "$@"
    if [[ -n "${NOVA_CONF:-}" && "$NOVA_CONF" != "$NOVA_CPU_CONF" ]]; then
        iniset "$NOVA_CONF" "$@"
    fi
}


# pre-install ---------------------------------------------------------------

function openvz_check_mode {
    case "$OPENVZ_MODE" in
        simulated|real) ;;
        *) die $LINENO "OPENVZ_MODE must be simulated or real," \
            "not '$OPENVZ_MODE'" ;;
    esac
}

# libvirt-python (host facts) builds against libvirt's headers.
function openvz_install_packages {
    if is_ubuntu; then
        install_package libvirt-dev pkg-config python3-dev
    else
        install_package libvirt-devel pkgconfig python3-devel
    fi
}

# Real mode: an OpenVZ kernel is running and its userland is installed.
function openvz_check_real_host {
    local proc_vz="${OPENVZ_HOST_ROOT%/}/proc/vz"
    if [[ ! -d "$proc_vz" ]]; then
        die $LINENO "$proc_vz does not exist: this kernel has no OpenVZ" \
            "containers. Boot an OpenVZ kernel, or use OPENVZ_MODE=simulated"
    fi
    local tool missing=""
    for tool in vzctl vzlist ploop; do
        if [[ ! -x "$OPENVZ_TOOLS_DIR/$tool" ]]; then
            missing+=" $tool"
        fi
    done
    if [[ -n "$missing" ]]; then
        echo "OpenVZ tools missing in $OPENVZ_TOOLS_DIR:$missing;" \
            "installing $OPENVZ_PACKAGES"
        # shellcheck disable=SC2086
        install_package $OPENVZ_PACKAGES
        for tool in $missing; do
            if [[ ! -x "$OPENVZ_TOOLS_DIR/$tool" ]]; then
                die $LINENO "$OPENVZ_TOOLS_DIR/$tool is still missing:" \
                    "install the OpenVZ userland matching the kernel" \
                    "(OPENVZ_PACKAGES) or set OPENVZ_TOOLS_DIR"
            fi
        done
    fi
    local version
    version=$(sudo "$OPENVZ_TOOLS_DIR/vzctl" --version 2>/dev/null || true)
    if [[ ! "$version" =~ vzctl\ version\ [0-9]+\.[0-9]+ ]]; then
        die $LINENO "$OPENVZ_TOOLS_DIR/vzctl --version said '$version'"
    fi
    echo "OpenVZ host: $version"
}


# install -------------------------------------------------------------------

# A regular install, not setup_develop: only an installed package puts the
# loading shim nova/virt/openvz/__init__.py into Nova's own package; an
# editable install does not, and Nova would not find the driver. --no-deps
# keeps the nova devstack installed from git: the package's "nova<35" pin
# would otherwise replace it with a release from PyPI. Every other
# dependency is Nova's own, except libvirt-python, which devstack installs
# only for the libvirt driver.
function openvz_install_driver {
    pip_install libvirt-python
    pip_install --no-deps "$NOVA_OPENVZ_DIR"
    local python
    python=$(openvz_python)
    if ! "$python" -c 'from nova.virt.openvz import OpenVZDriver'; then
        die $LINENO "nova.virt.openvz does not load with $python: the" \
            "driver must be installed as a package, not in editable mode"
    fi
}


# post-config ---------------------------------------------------------------

# Simulated mode: lay out the host tree (as root: the simulated tools run
# through the privileged helper and own their files).
function openvz_init_simulated_host {
    local python
    python=$(openvz_python)
    # Modelled: the image uploaded by default is the minimal template,
    # which does not boot on the real backend (simulate init's default).
    sudo "$python" -m nova_openvz.cmd.cli simulate init "$OPENVZ_SIM_ROOT" \
        --kernel modelled
}

function openvz_configure_compute {
    local root
    root=$(openvz_host_root)
    openvz_compute_iniset DEFAULT compute_driver "$OPENVZ_DRIVER"
    if [[ "$OPENVZ_MODE" == "simulated" ]]; then
        # The options "simulate init" wrote for its own tree.
        local sim_conf="$OPENVZ_SIM_ROOT/nova-openvz.conf"
        local option value
        for option in tools_dir vz_conf host_root libvirt_uri; do
            value=$(iniget "$sim_conf" openvz "$option")
            if [[ -z "$value" ]]; then
                die $LINENO "$sim_conf does not set [openvz] $option"
            fi
            openvz_compute_iniset openvz "$option" "$value"
        done
    else
        openvz_compute_iniset openvz tools_dir "$OPENVZ_TOOLS_DIR"
        openvz_compute_iniset openvz vz_conf "$OPENVZ_VZ_CONF"
        openvz_compute_iniset openvz host_root "$root"
        openvz_compute_iniset openvz libvirt_uri "$OPENVZ_LIBVIRT_URI"
    fi
    openvz_compute_iniset openvz layout "$OPENVZ_LAYOUT"
    # Neutron's default policy lets only a request carrying a service token
    # delete ports bound to a server (device_owner compute:*): without it
    # deleting a server leaves its ports behind.
    openvz_compute_iniset service_user send_service_user_token True
}

# nova-compute starts the driver's privsep daemon with helper_command plus
# "--privsep_context nova_openvz.privsep.vz_pctxt --privsep_sock_path
# <socket>"; the sudoers rule allows exactly that command as root.
function openvz_configure_privsep {
    local helper
    helper=$(openvz_privsep_helper)
    openvz_compute_iniset nova_openvz_privsep helper_command \
        "sudo $helper --config-file $NOVA_CPU_CONF"

    local rule tmp
    rule="$STACK_USER ALL=(root) NOPASSWD: $helper"
    rule+=" --config-file $NOVA_CPU_CONF"
    rule+=" --privsep_context $OPENVZ_PRIVSEP_CONTEXT"
    rule+=" --privsep_sock_path *"
    tmp=$(mktemp)
    echo "# nova-openvz: nova-compute starts the driver's privsep daemon" \
        >"$tmp"
    echo "$rule" >>"$tmp"
    chmod 0440 "$tmp"
    if command -v visudo >/dev/null; then
        sudo visudo -c -q -f "$tmp" || die $LINENO "bad sudoers rule: $rule"
    fi
    sudo mkdir -p "$(dirname "$NOVA_OPENVZ_SUDOERS")"
    sudo chown root:root "$tmp"
    sudo mv "$tmp" "$NOVA_OPENVZ_SUDOERS"
}

# The host readiness check, on the configuration nova-compute reads.
function openvz_run_check {
    local python rc=0
    python=$(openvz_python)
    "$python" -m nova_openvz.cmd.cli check --config-file "$NOVA_CPU_CONF" \
        || rc=$?
    if [[ $rc -ge 2 && "$OPENVZ_CHECK_FATAL" == "True" ]]; then
        die $LINENO "nova-openvz check found failures (see above)"
    fi
}


# extra ---------------------------------------------------------------------

function openvz_template_file {
    local file
    if [[ -n "$OPENVZ_IMAGE_URL" ]]; then
        file="$FILES/$(basename "$OPENVZ_IMAGE_URL")"
        if [[ ! -f "$file" ]]; then
            curl -fsSL -o "$file.part" "$OPENVZ_IMAGE_URL" \
                || die $LINENO "cannot download $OPENVZ_IMAGE_URL"
            mv "$file.part" "$file"
        fi
    elif [[ "$OPENVZ_MODE" == "simulated" ]]; then
        file="$FILES/$OPENVZ_IMAGE_NAME.tar.gz"
        "$(openvz_python)" -c '
import sys
from vzsim import templates
with open(sys.argv[1], "wb") as f:
    f.write(templates.minimal_template_bytes())
' "$file"
    else
        die $LINENO "set OPENVZ_IMAGE_URL to an OS template (.tar.gz)"
    fi
    echo "$file"
}

# An OS template is a tarball of a root filesystem: raw/bare in Glance.
# img_hv_type and hw_vm_mode match what the driver reports, so the
# scheduler sends the image to OpenVZ hosts only.
function openvz_upload_image {
    local file
    file=$(openvz_template_file)
    openstack --os-cloud devstack-admin image create "$OPENVZ_IMAGE_NAME" \
        --public --disk-format raw --container-format bare \
        --property img_hv_type=openvz --property hw_vm_mode=exe \
        --file "$file"
}


# test-config ---------------------------------------------------------------

function openvz_configure_tempest {
    local entry operation flag status value
    for entry in $OPENVZ_TEMPEST_FEATURES; do
        operation=${entry%%:*}
        flag=${entry#*:}
        status=$(iniget "$OPENVZ_SUPPORT_MATRIX" "operation.$operation" \
            driver.openvz)
        case "$status" in
            complete|partial) value=True ;;
            missing) value=False ;;
            *) die $LINENO "$OPENVZ_SUPPORT_MATRIX: operation.$operation" \
                "has no driver.openvz status" ;;
        esac
        iniset "$TEMPEST_CONFIG" compute-feature-enabled "$flag" "$value"
    done
    # The busybox template has no SSH server: no SSH validation.
    iniset "$TEMPEST_CONFIG" validation run_validation False
    local image
    image=$(openstack --os-cloud devstack-admin image show \
        -f value -c id "$OPENVZ_IMAGE_NAME")
    iniset "$TEMPEST_CONFIG" compute image_ref "$image"
    iniset "$TEMPEST_CONFIG" compute image_ref_alt "$image"
}


# clean ---------------------------------------------------------------------

function openvz_clean {
    local root=${OPENVZ_SIM_ROOT%/}
    if [[ "$OPENVZ_MODE" == "simulated" && -n "$root" ]]; then
        sudo rm -rf "$root"
    else
        echo "Real OpenVZ host: containers are left as they are;" \
            "delete servers through Nova before cleaning"
    fi
    sudo rm -f "$NOVA_OPENVZ_SUDOERS"
}


# Dispatch ------------------------------------------------------------------

if [[ "$1" == "stack" ]]; then
    case "$2" in
        pre-install)
            echo_summary "nova-openvz: checking the host ($OPENVZ_MODE)"
            openvz_check_mode
            openvz_install_packages
            if [[ "$OPENVZ_MODE" == "real" ]]; then
                openvz_check_real_host
            fi
            ;;
        install)
            echo_summary "nova-openvz: installing the driver"
            openvz_install_driver
            ;;
        post-config)
            if is_service_enabled n-cpu; then
                echo_summary "nova-openvz: configuring nova-compute"
                if [[ "$OPENVZ_MODE" == "simulated" ]]; then
                    openvz_init_simulated_host
                fi
                openvz_configure_compute
                openvz_configure_privsep
                openvz_run_check
            fi
            ;;
        extra)
            if is_service_enabled g-api; then
                echo_summary "nova-openvz: uploading $OPENVZ_IMAGE_NAME"
                openvz_upload_image
            fi
            ;;
        test-config)
            if is_service_enabled tempest; then
                echo_summary "nova-openvz: Tempest feature flags"
                openvz_configure_tempest
            fi
            ;;
    esac
elif [[ "$1" == "unstack" ]]; then
    # nova-compute is stopped by devstack; no process of ours runs, and
    # containers stay as Nova left them.
    :
elif [[ "$1" == "clean" ]]; then
    openvz_clean
fi

# Restore xtrace
$_XTRACE_NOVA_OPENVZ
