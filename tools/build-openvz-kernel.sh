#!/usr/bin/env bash
# Build Debian packages (.deb) of an OpenVZ kernel on Debian or Ubuntu.
#
# Two branches: rhel6 (2.6.32-042stabNNN.N, the vanilla linux-2.6.32
# tarball plus OpenVZ's signed combined patch and config) and vz7 (the full
# vzkernel 3.10.0-<rhel>.vz7.<a>.<b> tree). Every step is stamped in the
# work dir so that a rerun continues where the last one stopped.
#
# Run with --help for the options, the steps and the exit codes;
# doc/source/admin/kernel.rst is the guide.

set -euo pipefail
set -E

PROG=build-openvz-kernel

# Exit codes, one per class of failure (also in --help).
E_INTERNAL=1
E_USAGE=2
E_TOOL=3
E_DISK=4
E_FETCH=5
E_VERIFY=6
E_UNPACK=7
E_PATCH=8
E_CONFIG=9
E_BUILD=10
E_COLLECT=11
E_INTERRUPTED=130

STEPS=(fetch verify unpack patch configure build collect)

# Where the sources come from; overridable for mirrors (and tests).
DEFAULT_KERNEL_ORG=https://cdn.kernel.org/pub/linux/kernel
DEFAULT_VZ7_ARCHIVE=https://github.com/OpenVZ/vzkernel/archive/refs/tags
OPENVZ_MIRROR=${OPENVZ_MIRROR:-https://download.openvz.org}
KERNEL_ORG_MIRROR=${KERNEL_ORG_MIRROR:-$DEFAULT_KERNEL_ORG}
VZ7_ARCHIVE_URL=${VZ7_ARCHIVE_URL:-$DEFAULT_VZ7_ARCHIVE}

# The config overrides for building on Debian or Ubuntu. Bump the version
# when the list changes: configured trees are then configured again.
OVERRIDES_VERSION=1
OVERRIDE_DISABLE=(FTRACE KMEMCHECK DEBUG_INFO DEBUG_INFO_BTF
    DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT DEBUG_INFO_DWARF4 DEBUG_INFO_DWARF5)
OVERRIDE_ENABLE=(DEBUG_INFO_NONE)
OVERRIDE_EMPTY_STR=(SYSTEM_TRUSTED_KEYS SYSTEM_REVOCATION_KEYS)

usage() {
    cat <<'EOF'
Usage: build-openvz-kernel.sh --branch rhel6|vz7 --version VERSION [options]

Build Debian packages (.deb) of an OpenVZ kernel on Debian or Ubuntu.

Branches:
  rhel6  --version 042stabNNN.N (or 2.6.32-042stabNNN.N): the vanilla
         linux-2.6.32 tarball from kernel.org, OpenVZ's signed combined
         patch and OpenVZ's config for the architecture.
  vz7    --version 3.10.0-<rhel>.vz7.<a>.<b>: a full vzkernel tree; the
         config comes from the tree (config.OpenVZ, else
         configs/kernel-3.10.0-ARCH.config) unless --config is given.

Options:
  --branch rhel6|vz7     kernel branch (required)
  --version VERSION      OpenVZ kernel version (required)
  --arch ARCH            x86_64 (or amd64) or i686 (or i386);
                         default: this machine's
  --config FILE          kernel config to start from (default: OpenVZ's)
  --jobs N               parallel make jobs (default: number of CPUs)
  --output DIR           where the .deb files and SHA256SUMS go
                         (default: ./openvz-kernel-BRANCH-VERSION-debs)
  --workdir DIR          sources, tree, stamps and build.log
                         (default: ./openvz-kernel-BRANCH-VERSION)
  --cc COMPILER          C compiler, e.g. gcc-4.9 (default: gcc)
  --source-tarball FILE  use this kernel tarball, do not download it
  --source-url URL       download the kernel tarball from URL
  --patch FILE           rhel6: use this combined patch, do not download
                         it; vz7: an extra patch to apply (optional)
  --keyring FILE         trust only the keys in FILE for signatures
                         (default: your gpg keyring)
  --sha256 FILE          SHA256SUMS-style checksums of the sources
  --no-verify            do not verify signatures or checksums (loud)
  --dry-run              print every step and command, change nothing
  --resume               strict resume: fail when the work dir holds no
                         earlier run of this same build
  --clean                forget the work dir's earlier run, start over
  --min-disk-gb N        free space needed for the work dir (default: 10)
  --verbose              show the commands' output (always in build.log)
  -h, --help             show this help

Offline use: --source-tarball, --patch (rhel6) and --config make every
download unnecessary. Signatures are looked up next to each file (FILE.asc,
FILE.sig, FILE.sign, and for X.tar.xz kernel.org's X.tar.sign, which signs
the uncompressed tar); checksums in --sha256 FILE and in a SHA256SUMS file
next to the tarball or the patch.

Steps, in order: check (tools, compiler, disk; every run), fetch, verify,
unpack, patch (patch -p1 --dry-run first), configure (Debian/Ubuntu
overrides: FTRACE, KMEMCHECK and DEBUG_INFO off, no trusted-keys file;
then make olddefconfig or oldconfig), build (make bindeb-pkg, else
deb-pkg, else a plain build packaged with dpkg-deb), collect (the .deb
files and SHA256SUMS into the output dir).

Resuming: a finished step leaves a stamp in WORKDIR/stamps. Rerunning the
same command skips the stamped steps; this is the default, and --resume
only makes it strict. A step whose inputs changed (another --config or
--cc, say) runs again with every step after it. An interrupted build
continues where make stopped.

Environment: OPENVZ_MIRROR (https://download.openvz.org),
KERNEL_ORG_MIRROR (https://cdn.kernel.org/pub/linux/kernel),
VZ7_ARCHIVE_URL (https://github.com/OpenVZ/vzkernel/archive/refs/tags;
the vz7 tarball is VZ7_ARCHIVE_URL/rh7-VERSION.tar.gz).

Exit codes:
  0    success
  1    internal error (a bug in this script)
  2    usage: bad option or value, or --resume with nothing to resume
  3    a tool or the compiler is missing or unsuitable
  4    not enough free disk space
  5    fetching the sources failed
  6    verification failed: bad or missing signature or checksum
  7    unpacking the source tarball failed
  8    the patch does not apply
  9    configuring the kernel failed
  10   building the kernel or its packages failed
  11   no packages to collect, or writing them to the output dir failed
  130  interrupted
EOF
}

# --- messages --------------------------------------------------------------

STEP=setup
LOG=""
LOG_MARK=0
DRY_RUN=0
VERBOSE=0

to_log() {
    if [[ -n $LOG ]]; then
        printf '%s\n' "$@" >>"$LOG"
    fi
}

info() {
    printf '[%s] %s\n' "$STEP" "$*"
    to_log "[$STEP] $*"
}

warn() {
    printf '[%s] WARNING: %s\n' "$STEP" "$*" >&2
    to_log "[$STEP] WARNING: $*"
}

# fail CODE WORDS... [-- HINT...]: report a failure of the current step
# and what to do about it, and exit with CODE.
fail() {
    local code=$1 message="" hint=""
    shift
    while (($#)) && [[ $1 != -- ]]; do
        message+="${message:+ }$1"
        shift
    done
    if (($#)); then
        shift
        hint="$*"
    fi
    printf '[%s] ERROR: %s\n' "$STEP" "$message" >&2
    to_log "[$STEP] ERROR: $message"
    if [[ -n $hint ]]; then
        printf '[%s]   what to do: %s\n' "$STEP" "$hint" >&2
        to_log "[$STEP]   what to do: $hint"
    fi
    if [[ -n $LOG ]]; then
        printf '[%s]   full log: %s\n' "$STEP" "$LOG" >&2
    fi
    exit "$code"
}

usage_error() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    printf 'Run %s --help for the options.\n' "$0" >&2
    exit "$E_USAGE"
}

on_error() {
    trap - ERR
    printf '[%s] ERROR: unexpected failure (status %s) at line %s: %s\n' \
        "$STEP" "$1" "$2" "$3" >&2
    to_log "[$STEP] ERROR: unexpected failure (status $1) at line $2: $3"
    exit "$E_INTERNAL"
}

on_signal() {
    trap - INT TERM
    fail "$E_INTERRUPTED" "interrupted" \
        -- "rerun the same command to continue from this step"
}

trap 'on_error "$?" "$LINENO" "$BASH_COMMAND"' ERR
trap on_signal INT TERM

quote_cmd() {
    local out
    printf -v out '%q ' "$@"
    printf '%s' "${out% }"
}

# Print a command line about to run (or that would run, in a dry run).
show() {
    info "+ $*"
}

# Run a command with its output in the log (and on the terminal with
# --verbose). In a dry run only print it.
run() {
    show "$(quote_cmd "$@")"
    if ((DRY_RUN)); then
        return 0
    fi
    logged "$@"
}

logged() {
    local rc=0
    if ((VERBOSE)); then
        "$@" 2>&1 | tee -a "$LOG" || rc=$?
    else
        "$@" >>"$LOG" 2>&1 || rc=$?
    fi
    return "$rc"
}

mark_log() {
    if [[ -n $LOG ]]; then
        LOG_MARK=$(wc -l <"$LOG")
    fi
}

# Show what the failed commands printed since mark_log.
show_output() {
    local lines
    if [[ -z $LOG || ! -f $LOG ]] || ((VERBOSE)); then
        return 0
    fi
    lines=$(tail -n +"$((LOG_MARK + 1))" "$LOG" |
        { grep -v "^\[$STEP\]" || true; } | tail -n 25)
    if [[ -n $lines ]]; then
        printf '[%s] the command printed (last lines):\n' "$STEP" >&2
        printf '%s\n' "$lines" | sed 's/^/    | /' >&2
    fi
}

# --- options ---------------------------------------------------------------

BRANCH=""
VERSION=""
ARCH=""
CONFIG=""
JOBS=""
OUTPUT=""
WORKDIR=""
CC_NAME=gcc
SOURCE_TARBALL=""
SOURCE_URL=""
PATCH_FILE=""
KEYRING=""
SHA256_FILE=""
NO_VERIFY=0
RESUME=0
CLEAN=0
MIN_DISK_GB=10

need_value() {
    if (($2 < 2)); then
        usage_error "option $1 needs a value"
    fi
}

parse_args() {
    local opt value
    while (($#)); do
        opt=$1
        value=""
        if [[ $opt == --*=* ]]; then
            value=${opt#*=}
            opt=${opt%%=*}
            shift
            set -- "$opt" "$value" "$@"
        fi
        case $opt in
            --branch|--version|--arch|--config|--jobs|--output|--workdir|\
            --cc|--source-tarball|--source-url|--patch|--keyring|--sha256|\
            --min-disk-gb)
                need_value "$opt" "$#"
                value=$2
                shift 2
                ;;
            --no-verify) NO_VERIFY=1; shift; continue ;;
            --dry-run) DRY_RUN=1; shift; continue ;;
            --resume) RESUME=1; shift; continue ;;
            --clean) CLEAN=1; shift; continue ;;
            --verbose|-v) VERBOSE=1; shift; continue ;;
            -h|--help) usage; exit 0 ;;
            *) usage_error "unknown option: $opt" ;;
        esac
        if [[ -z $value ]]; then
            usage_error "option $opt needs a non-empty value"
        fi
        case $opt in
            --branch) BRANCH=$value ;;
            --version) VERSION=$value ;;
            --arch) ARCH=$value ;;
            --config) CONFIG=$value ;;
            --jobs) JOBS=$value ;;
            --output) OUTPUT=$value ;;
            --workdir) WORKDIR=$value ;;
            --cc) CC_NAME=$value ;;
            --source-tarball) SOURCE_TARBALL=$value ;;
            --source-url) SOURCE_URL=$value ;;
            --patch) PATCH_FILE=$value ;;
            --keyring) KEYRING=$value ;;
            --sha256) SHA256_FILE=$value ;;
            --min-disk-gb) MIN_DISK_GB=$value ;;
        esac
    done
}

abspath() {
    case $1 in
        /*) printf '%s' "$1" ;;
        *) printf '%s/%s' "$PWD" "${1#./}" ;;
    esac
}

# An existing, readable file given as an option; print its absolute path.
input_file() {
    if [[ ! -f $2 || ! -r $2 ]]; then
        usage_error "$1 $2: no such readable file"
    fi
    abspath "$2"
}

validate_args() {
    local host_arch
    case $BRANCH in
        rhel6|vz7) ;;
        "") usage_error "--branch is required (rhel6 or vz7)" ;;
        *) usage_error "--branch must be rhel6 or vz7, not '$BRANCH'" ;;
    esac
    if [[ -z $VERSION ]]; then
        usage_error "--version is required"
    fi
    if [[ $BRANCH == rhel6 ]]; then
        VERSION=${VERSION#2.6.32-}
    else
        VERSION=${VERSION#vzkernel-}
    fi
    if [[ ! $VERSION =~ ^[A-Za-z0-9][A-Za-z0-9._+~-]*$ ]]; then
        usage_error "--version '$VERSION' has characters a version cannot"
    fi

    if [[ -z $ARCH ]]; then
        host_arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
        ARCH=$host_arch
    fi
    case $ARCH in
        x86_64|amd64) ARCH=x86_64; KARCH=x86_64; DEBARCH=amd64 ;;
        i686|i386) ARCH=i686; KARCH=i386; DEBARCH=i386 ;;
        *)
            usage_error "--arch must be x86_64 or i686 (OpenVZ kernels" \
                "are x86 only), not '$ARCH'"
            ;;
    esac

    if [[ -z $JOBS ]]; then
        JOBS=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN || echo 1)
    fi
    if [[ ! $JOBS =~ ^[1-9][0-9]*$ ]]; then
        usage_error "--jobs must be a positive number, not '$JOBS'"
    fi
    if [[ ! $MIN_DISK_GB =~ ^[0-9]+$ ]]; then
        usage_error "--min-disk-gb must be a number of GB, not" \
            "'$MIN_DISK_GB'"
    fi
    if [[ -n $SOURCE_TARBALL && -n $SOURCE_URL ]]; then
        usage_error "--source-tarball and --source-url exclude each other"
    fi

    if [[ -n $CONFIG ]]; then
        CONFIG=$(input_file --config "$CONFIG") || exit "$E_USAGE"
    fi
    if [[ -n $SOURCE_TARBALL ]]; then
        SOURCE_TARBALL=$(input_file --source-tarball "$SOURCE_TARBALL") ||
            exit "$E_USAGE"
    fi
    if [[ -n $PATCH_FILE ]]; then
        PATCH_FILE=$(input_file --patch "$PATCH_FILE") || exit "$E_USAGE"
    fi
    if [[ -n $KEYRING ]]; then
        KEYRING=$(input_file --keyring "$KEYRING") || exit "$E_USAGE"
    fi
    if [[ -n $SHA256_FILE ]]; then
        SHA256_FILE=$(input_file --sha256 "$SHA256_FILE") || exit "$E_USAGE"
    fi
    if ((NO_VERIFY)) && [[ -n $KEYRING || -n $SHA256_FILE ]]; then
        usage_error "--no-verify contradicts --keyring and --sha256"
    fi
    if ((RESUME && CLEAN)); then
        usage_error "--resume and --clean exclude each other"
    fi
    check_version

    WORKDIR=$(abspath "${WORKDIR:-openvz-kernel-$BRANCH-$VERSION}")
    OUTPUT=$(abspath "${OUTPUT:-openvz-kernel-$BRANCH-$VERSION-debs}")
    SOURCES=$WORKDIR/sources
    SRC_PARENT=$WORKDIR/src
    TREE=$SRC_PARENT/linux
    STAMPS=$WORKDIR/stamps
}

# --- the sources -------------------------------------------------------------

# Each source: role (tarball, patch or config), its name in $SOURCES, where
# it comes from (a URL or a local file), and the signatures published for
# a download (local files: looked up next to the file).
ITEM_ROLE=()
ITEM_NAME=()
ITEM_ORIGIN=()
ITEM_SIGS=()

add_item() {
    ITEM_ROLE+=("$1")
    ITEM_NAME+=("$2")
    ITEM_ORIGIN+=("$3")
    ITEM_SIGS+=("${4:-}")
}

is_url() {
    [[ $1 == *://* ]]
}

plan_sources() {
    local base name
    if [[ $BRANCH == rhel6 ]]; then
        base=$OPENVZ_MIRROR/kernel/branches/rhel6-2.6.32/$VERSION
        if [[ -n $SOURCE_TARBALL ]]; then
            add_item tarball "${SOURCE_TARBALL##*/}" "$SOURCE_TARBALL"
        elif [[ -n $SOURCE_URL ]]; then
            add_item tarball "${SOURCE_URL##*/}" "$SOURCE_URL"
        else
            add_item tarball linux-2.6.32.tar.xz \
                "$KERNEL_ORG_MIRROR/v2.6/linux-2.6.32.tar.xz" \
                "$KERNEL_ORG_MIRROR/v2.6/linux-2.6.32.tar.sign"
        fi
        if [[ -n $PATCH_FILE ]]; then
            add_item patch "${PATCH_FILE##*/}" "$PATCH_FILE"
        else
            name=patch-$VERSION-combined.gz
            add_item patch "$name" "$base/patches/$name" \
                "$base/patches/$name.asc"
        fi
        if [[ -z $CONFIG ]]; then
            name=config-2.6.32-$VERSION.$ARCH
            add_item config "$name" "$base/configs/$name"
        fi
    else
        if [[ -n $SOURCE_TARBALL ]]; then
            add_item tarball "${SOURCE_TARBALL##*/}" "$SOURCE_TARBALL"
        else
            add_item tarball "vzkernel-$VERSION.tar.gz" \
                "${SOURCE_URL:-$VZ7_ARCHIVE_URL/rh7-$VERSION.tar.gz}"
        fi
        if [[ -n $PATCH_FILE ]]; then
            add_item patch "${PATCH_FILE##*/}" "$PATCH_FILE"
        fi
    fi
}

# A version that does not look like one of the branch's is fine as a label
# when nothing is downloaded by version.
VERSION_IS_LABEL=0

check_version() {
    local rhel6_re='^042stab[0-9]+\.[0-9]+$'
    local vz7_re='^3\.10\.0-[0-9.]+\.vz7\.[0-9]+\.[0-9]+$'
    if [[ $BRANCH == rhel6 && $VERSION =~ $rhel6_re ]]; then
        return 0
    fi
    if [[ $BRANCH == vz7 && $VERSION =~ $vz7_re ]]; then
        return 0
    fi
    if [[ $BRANCH == rhel6 && -n $SOURCE_TARBALL && -n $PATCH_FILE ]]; then
        if [[ -n $CONFIG ]]; then
            VERSION_IS_LABEL=1
            return 0
        fi
    fi
    if [[ $BRANCH == vz7 && ( -n $SOURCE_TARBALL || -n $SOURCE_URL ) ]]; then
        VERSION_IS_LABEL=1
        return 0
    fi
    usage_error "--version '$VERSION' is not a $BRANCH version" \
        "(rhel6: 042stabNNN.N, vz7: 3.10.0-NNN.N.N.vz7.N.N)"
}

# The signature files that may sit next to a local file.
local_sig_candidates() {
    local file=$1
    printf '%s\n' "$file.asc" "$file.sig" "$file.sign"
    case $file in
        *.tar.xz|*.tar.gz|*.tar.bz2) printf '%s\n' "${file%.*}.sign" ;;
    esac
}

item_index() {
    local i
    for i in "${!ITEM_ROLE[@]}"; do
        if [[ ${ITEM_ROLE[$i]} == "$1" ]]; then
            printf '%s' "$i"
            return 0
        fi
    done
    return 1
}

has_item() {
    item_index "$1" >/dev/null
}

item_path() {
    local i
    i=$(item_index "$1")
    printf '%s/%s' "$SOURCES" "${ITEM_NAME[$i]}"
}

file_id() {
    stat -c '%s:%Y' -- "$1" 2>/dev/null || printf 'absent'
}

# --- stamps ------------------------------------------------------------------

# A stamp holds a hash of its step's inputs: a stamped step is skipped only
# while its inputs stay the same. A step that runs clears the stamps of the
# steps after it (except verify, which changes nothing).

fp_hash() {
    printf '%s' "$1" | sha256sum | cut -c1-64
}

stamp_path() {
    printf '%s/%s' "$STAMPS" "$1"
}

fingerprint() {
    local text i sig
    case $1 in
        fetch)
            text="branch=$BRANCH version=$VERSION arch=$ARCH"
            for i in "${!ITEM_ROLE[@]}"; do
                text+=$'\n'"${ITEM_ROLE[$i]} ${ITEM_ORIGIN[$i]}"
                if ! is_url "${ITEM_ORIGIN[$i]}"; then
                    text+=" $(file_id "${ITEM_ORIGIN[$i]}")"
                    while read -r sig; do
                        text+=" $(file_id "$sig")"
                    done < <(local_sig_candidates "${ITEM_ORIGIN[$i]}")
                    sig=$(dirname "${ITEM_ORIGIN[$i]}")/SHA256SUMS
                    text+=" $(file_id "$sig")"
                fi
            done
            fp_hash "$text"
            ;;
        verify)
            if ((NO_VERIFY)); then
                text=none
            else
                text="keyring=$KEYRING $(file_id "$KEYRING")"
                text+=" sha256=$SHA256_FILE $(file_id "$SHA256_FILE")"
            fi
            printf '%s %s' "$(fingerprint fetch)" "$(fp_hash "$text")"
            ;;
        configure)
            text="cc=$CC_NAME arch=$ARCH overrides=$OVERRIDES_VERSION"
            text+=" config=$(config_source)"
            if [[ -f $(config_source) ]]; then
                text+=" $(sha256sum <"$(config_source)" | cut -c1-64)"
            fi
            fp_hash "$text"
            ;;
        collect) fp_hash "output=$OUTPUT" ;;
        *) fp_hash "$1" ;;
    esac
}

stamp_matches() {
    local step=$1 want=$2 have
    [[ -f $(stamp_path "$step") ]] || return 1
    have=$(<"$(stamp_path "$step")")
    if [[ $have == "$want" ]]; then
        return 0
    fi
    # Verified earlier, not verifying now: the earlier check still holds.
    [[ $step == verify ]] && ((NO_VERIFY)) &&
        [[ ${have%% *} == "${want%% *}" ]]
}

# A stamp for a step that leaves a tree (or packages) behind holds only
# while they are still there.
stamp_holds() {
    case $1 in
        unpack|patch|build) [[ -f $TREE/Makefile ]] ;;
        configure) [[ -f $TREE/.config ]] ;;
        collect) [[ -f $OUTPUT/SHA256SUMS ]] ;;
        *) return 0 ;;
    esac
}

has_stamps() {
    compgen -G "$STAMPS/*" >/dev/null
}

clear_stamps_after() {
    local step seen=0
    for step in "${STEPS[@]}"; do
        if ((seen)); then
            rm -f "$(stamp_path "$step")"
        fi
        if [[ $step == "$1" ]]; then
            seen=1
        fi
    done
}

RERUN_FROM_EARLIER=0

run_step() {
    local step=$1 want
    STEP=$step
    want=$(fingerprint "$step")
    if ((!RERUN_FROM_EARLIER)) && stamp_matches "$step" "$want" &&
        stamp_holds "$step"; then
        info "skipped: finished in an earlier run" \
            "(stamp $(stamp_path "$step"))"
        return 0
    fi
    if ((DRY_RUN)); then
        info "would run"
        if [[ $step != verify ]]; then
            RERUN_FROM_EARLIER=1
        fi
    else
        if [[ -f $(stamp_path "$step") ]]; then
            info "inputs changed since the earlier run: running again"
        fi
        info "running"
        rm -f "$(stamp_path "$step")"
        if [[ $step != verify ]]; then
            clear_stamps_after "$step"
        fi
    fi
    mark_log
    "step_$step"
    if ((!DRY_RUN)); then
        printf '%s\n' "$want" >"$(stamp_path "$step").tmp"
        mv -f "$(stamp_path "$step").tmp" "$(stamp_path "$step")"
        info "done"
    fi
}

# --- check: tools, compiler, disk --------------------------------------------

package_of() {
    case $1 in
        gpg) echo gnupg ;;
        xz) echo xz-utils ;;
        dpkg-deb) echo dpkg ;;
        dpkg-buildpackage) echo dpkg-dev ;;
        sha256sum) echo coreutils ;;
        gcc-*|flex|bison|bc|fakeroot|patch|make|tar|gzip|bzip2|curl|perl)
            echo "$1" ;;
        *) echo "the package that provides $1" ;;
    esac
}

# require_tools TOOL...: fail naming every missing one and its package.
require_tools() {
    local tool missing=()
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            missing+=("$tool ($(package_of "$tool"))")
        fi
    done
    if ((${#missing[@]})); then
        fail "$E_TOOL" "missing tools: ${missing[*]}" \
            -- "install them (apt-get install PACKAGE) and run again"
    fi
}

# The first line a command prints (without a pipe into head, whose early
# exit would fail the pipeline under pipefail).
first_line() {
    local out
    out=$("$@" 2>/dev/null) || true
    printf '%s' "${out%%$'\n'*}"
}

CC_MAJOR=0
CC_IS_GCC=0
CC_DEFAULT_PIE=0

check_compiler() {
    local version
    if ! command -v "$CC_NAME" >/dev/null 2>&1; then
        fail "$E_TOOL" "compiler $CC_NAME not found" \
            -- "install it (e.g. apt-get install $CC_NAME) or choose another" \
            "with --cc; old kernels need an old gcc (see --help)"
    fi
    if ! printf 'int main(void) { return 0; }\n' |
        "$CC_NAME" -x c -o /dev/null - >/dev/null 2>&1; then
        fail "$E_TOOL" "compiler $CC_NAME cannot build a test program" \
            -- "install the C library headers (apt-get install libc6-dev)" \
            "or fix the compiler, or choose another with --cc"
    fi
    version=$("$CC_NAME" -dumpversion 2>/dev/null || echo 0)
    CC_MAJOR=${version%%.*}
    if [[ ! $CC_MAJOR =~ ^[0-9]+$ ]]; then
        CC_MAJOR=0
    fi
    if [[ $(first_line "$CC_NAME" --version) == *clang* ]]; then
        CC_IS_GCC=0
    else
        CC_IS_GCC=1
        if [[ $("$CC_NAME" -v 2>&1) == *--enable-default-pie* ]]; then
            CC_DEFAULT_PIE=1
        fi
    fi
    info "compiler: $CC_NAME (version $version)"
}

check_disk() {
    local dir=$WORKDIR avail_kb need_kb used_kb=0
    while [[ ! -d $dir ]]; do
        dir=$(dirname "$dir")
    done
    need_kb=$((MIN_DISK_GB * 1024 * 1024))
    # What an earlier run already put in the work dir counts as needed
    # space already taken.
    if [[ -d $STAMPS ]] && has_stamps; then
        used_kb=$({ du -sk "$WORKDIR" 2>/dev/null || true; } | cut -f1)
        used_kb=${used_kb:-0}
        need_kb=$((need_kb > used_kb ? need_kb - used_kb : 0))
    fi
    avail_kb=$(df -Pk -- "$dir" | awk 'NR == 2 {print $4}')
    if ((avail_kb < need_kb)); then
        fail "$E_DISK" "not enough disk space: $((avail_kb / 1048576)) GB" \
            "free in $dir, $((need_kb / 1048576 + 1)) GB needed" \
            -- "free some space, pick a --workdir on a bigger filesystem, or" \
            "lower --min-disk-gb (a full kernel build takes about 10 GB)"
    fi
    info "disk: $((avail_kb / 1048576)) GB free in $dir" \
        "(need $MIN_DISK_GB GB)"
}

step_check() {
    local tools=(tar xz gzip patch make dpkg-deb sha256sum) i
    STEP=check
    if ((!NO_VERIFY)); then
        tools+=(gpg)
    fi
    for i in "${!ITEM_ORIGIN[@]}"; do
        case ${ITEM_ORIGIN[$i]} in
            *.bz2) tools+=(bzip2) ;;
        esac
    done
    require_tools "${tools[@]}"
    if needs_download; then
        if ! command -v curl >/dev/null 2>&1 &&
            ! command -v wget >/dev/null 2>&1; then
            fail "$E_TOOL" "missing tools: curl or wget, to download" \
                -- "install curl, or work offline with --source-tarball," \
                "--patch and --config"
        fi
    fi
    check_compiler
    check_disk
}

needs_download() {
    local i
    for i in "${!ITEM_ORIGIN[@]}"; do
        if is_url "${ITEM_ORIGIN[$i]}"; then
            return 0
        fi
    done
    return 1
}

# --- fetch -------------------------------------------------------------------

download() {
    local url=$1 dest=$2
    local rc=0
    if command -v curl >/dev/null 2>&1; then
        run curl -fsSL --retry 3 -o "$dest.part" "$url" || rc=$?
    else
        run wget -q --tries=3 -O "$dest.part" "$url" || rc=$?
    fi
    if ((rc != 0)); then
        rm -f "$dest.part"
        return "$rc"
    fi
    run mv -f "$dest.part" "$dest"
}

step_fetch() {
    local i name origin sig sums
    run rm -rf "$SOURCES"
    run mkdir -p "$SOURCES/sums"
    for i in "${!ITEM_ROLE[@]}"; do
        name=${ITEM_NAME[$i]}
        origin=${ITEM_ORIGIN[$i]}
        if is_url "$origin"; then
            info "downloading the ${ITEM_ROLE[$i]} $origin"
            if ! download "$origin" "$SOURCES/$name"; then
                show_output
                fail "$E_FETCH" "could not download $origin" \
                    -- "check the version and the network (or the mirror:" \
                    "OPENVZ_MIRROR, KERNEL_ORG_MIRROR, VZ7_ARCHIVE_URL," \
                    "--source-url), or work offline with --source-tarball" \
                    "--patch and --config"
            fi
            sig=${ITEM_SIGS[$i]}
            if [[ -n $sig ]] && ! download "$sig" "$SOURCES/${sig##*/}"; then
                warn "no signature at $sig; verification then needs a" \
                    "checksum (--sha256)"
            fi
        else
            info "copying the ${ITEM_ROLE[$i]} $origin"
            if ! run cp -- "$origin" "$SOURCES/$name"; then
                show_output
                fail "$E_FETCH" "could not copy $origin" \
                    -- "check that the file is readable and the work dir" \
                    "writable"
            fi
            while read -r sig; do
                if [[ -f $sig ]]; then
                    run cp -- "$sig" "$SOURCES/${sig##*/}"
                fi
            done < <(local_sig_candidates "$origin")
            sums=$(dirname "$origin")/SHA256SUMS
            if [[ -f $sums ]]; then
                run cp -- "$sums" "$SOURCES/sums/${ITEM_ROLE[$i]}"
            fi
        fi
    done
}

# --- verify ------------------------------------------------------------------

# Print the expected SHA-256 of a file name, from --sha256 and the
# SHA256SUMS files found next to the local sources.
expected_sha256() {
    local name=$1 files=() f
    if [[ -n $SHA256_FILE ]]; then
        files+=("$SHA256_FILE")
    fi
    for f in "$SOURCES"/sums/*; do
        if [[ -f $f ]]; then
            files+=("$f")
        fi
    done
    if ((${#files[@]} == 0)); then
        return 0
    fi
    awk -v name="$name" '
        {
            file = $2
            sub(/^\*/, "", file)
            sub(/.*\//, "", file)
            if (file == name && $1 ~ /^[0-9a-fA-F]+$/ && length($1) == 64) {
                print tolower($1)
                exit
            }
        }' "${files[@]}" 2>/dev/null || true
}

# gpg_verify SIG FILE raw|uncompressed: check SIG over FILE, or over FILE
# decompressed (kernel.org signs the uncompressed tar).
gpg_verify() {
    local sig=$1 data=$2 mode=$3 status=$WORKDIR/gpg.status rc=0
    local gpg_cmd=(gpg --batch --no-tty --status-file "$status")
    if [[ -n $KEYRING ]]; then
        gpg_cmd=(env "GNUPGHOME=$WORKDIR/gnupg" "${gpg_cmd[@]}"
            --no-default-keyring --keyring "$KEYRING"
            --trust-model always)
    fi
    gpg_cmd+=(--verify "$sig")
    if [[ $mode == uncompressed ]]; then
        local unz=xz
        case $data in
            *.gz) unz=gzip ;;
            *.bz2) unz=bzip2 ;;
        esac
        show "$unz -dc $(quote_cmd "$data") | $(quote_cmd "${gpg_cmd[@]}") -"
        if ((DRY_RUN)); then
            return 0
        fi
        { "$unz" -dc "$data" | "${gpg_cmd[@]}" -; } >>"$LOG" 2>&1 || rc=$?
    else
        show "$(quote_cmd "${gpg_cmd[@]}" "$data")"
        if ((DRY_RUN)); then
            return 0
        fi
        "${gpg_cmd[@]}" "$data" >>"$LOG" 2>&1 || rc=$?
    fi
    if ((rc != 0)) || ! grep -q '^\[GNUPG:\] VALIDSIG' "$status" ||
        grep -qE '^\[GNUPG:\] (BADSIG|ERRSIG|REVKEYSIG)' "$status"; then
        return 1
    fi
    if grep -q '^\[GNUPG:\] EXPKEYSIG' "$status"; then
        warn "$(basename "$sig") was made by a key that has expired since"
    fi
    return 0
}

# The signature files fetched for a source, one a line: the signature and
# what it signs, the file (raw) or kernel.org's X.tar.sign the uncompressed
# tar (uncompressed).
sigs_for() {
    local name=$1 sig
    for sig in "$name.asc" "$name.sig" "$name.sign"; do
        if [[ -f $SOURCES/$sig ]]; then
            printf '%s raw\n' "$sig"
        fi
    done
    case $name in
        *.tar.xz|*.tar.gz|*.tar.bz2)
            if [[ -f $SOURCES/${name%.*}.sign ]]; then
                printf '%s uncompressed\n' "${name%.*}.sign"
            fi
            ;;
    esac
}

step_verify() {
    local i name role file expected actual sig mode verified
    if ((NO_VERIFY)); then
        warn "************************************************************"
        warn "--no-verify: the signatures and checksums of the sources are"
        warn "NOT checked. Whatever was downloaded or copied gets built."
        warn "************************************************************"
        return 0
    fi
    if ((DRY_RUN)) && [[ ! -d $SOURCES ]] || ((RERUN_FROM_EARLIER)); then
        info "checks each source against --sha256 and SHA256SUMS next to" \
            "it, and its signature with gpg, e.g.:"
        for i in "${!ITEM_ROLE[@]}"; do
            name=${ITEM_NAME[$i]}
            show "sha256sum $SOURCES/$name"
            if [[ ${ITEM_ROLE[$i]} != config ]]; then
                gpg_verify "$SOURCES/$name.asc" "$SOURCES/$name" raw
            fi
        done
        return 0
    fi
    run mkdir -p -m 700 "$WORKDIR/gnupg"
    for i in "${!ITEM_ROLE[@]}"; do
        name=${ITEM_NAME[$i]}
        role=${ITEM_ROLE[$i]}
        file=$SOURCES/$name
        verified=0
        expected=$(expected_sha256 "$name")
        if [[ -n $expected ]]; then
            show "sha256sum $(quote_cmd "$file")"
            actual=$(sha256sum <"$file" | cut -c1-64)
            if [[ $actual != "$expected" ]]; then
                fail "$E_VERIFY" "checksum mismatch for $name: expected" \
                    "$expected, got $actual" \
                    -- "the file is corrupt or not the one the checksum" \
                    "list means: fetch it again (--clean) or fix the list"
            fi
            info "checksum OK: $name"
            verified=1
        fi
        while read -r sig mode; do
            mark_log
            if ! gpg_verify "$SOURCES/$sig" "$file" "$mode"; then
                show_output
                fail "$E_VERIFY" "bad or unverifiable signature $sig" \
                    "for $name" \
                    -- "the file was altered, or the signing key is not in" \
                    "${KEYRING:-your gpg keyring}: import the kernel.org" \
                    "and OpenVZ keys (or pass --keyring FILE) after" \
                    "checking their fingerprints"
            fi
            info "signature OK: $sig"
            verified=1
        done < <(sigs_for "$name")
        if ((!verified)); then
            if [[ $role == config ]]; then
                warn "no signature or checksum for the config $name" \
                    "(OpenVZ publishes none): not verified; list it in" \
                    "--sha256 or pass --config FILE to use a checked one"
                continue
            fi
            fail "$E_VERIFY" "no signature and no checksum for the $role" \
                "$name" \
                -- "put its signature next to it (NAME.asc, NAME.sig, or" \
                "X.tar.sign for X.tar.xz), give its checksum with --sha256" \
                "FILE or a SHA256SUMS next to it, or (not recommended)" \
                "pass --no-verify"
        fi
    done
}

# --- unpack ------------------------------------------------------------------

step_unpack() {
    local tarball tmp entries
    tarball=$(item_path tarball)
    tmp=$SRC_PARENT/.unpack
    run rm -rf "$SRC_PARENT"
    run mkdir -p "$tmp"
    if ! run tar -xf "$tarball" -C "$tmp" --no-same-owner; then
        show_output
        fail "$E_UNPACK" "could not unpack $tarball" \
            -- "the tarball is damaged or the disk is full: check with" \
            "'tar -tf', free space, and run again"
    fi
    if ((DRY_RUN)); then
        show "mv $SRC_PARENT/.unpack/<top dir> $(quote_cmd "$TREE")"
        return 0
    fi
    mapfile -t entries < <(find "$tmp" -mindepth 1 -maxdepth 1)
    if ((${#entries[@]} == 1)) && [[ -d ${entries[0]} ]]; then
        run mv -- "${entries[0]}" "$TREE"
        run rmdir -- "$tmp"
    else
        run mv -- "$tmp" "$TREE"
    fi
    if [[ ! -f $TREE/Makefile ]]; then
        fail "$E_UNPACK" "$tarball holds no kernel tree (no top Makefile)" \
            -- "give the right tarball (--source-tarball or --source-url)"
    fi
}

# --- patch -------------------------------------------------------------------

# patch_cmd FILE [--dry-run]: feed FILE, decompressed, to patch -p1.
patch_cmd() {
    local file=$1 unz=""
    shift
    local cmd=(patch -p1 -d "$TREE" --forward --batch
        --no-backup-if-mismatch "$@")
    case $file in
        *.gz) unz=gzip ;;
        *.xz) unz=xz ;;
        *.bz2) unz=bzip2 ;;
    esac
    if [[ -n $unz ]]; then
        show "$unz -dc $(quote_cmd "$file") | $(quote_cmd "${cmd[@]}")"
        if ((DRY_RUN)); then
            return 0
        fi
        { "$unz" -dc "$file" | "${cmd[@]}"; } >>"$LOG" 2>&1
    else
        show "$(quote_cmd "${cmd[@]}") -i $(quote_cmd "$file")"
        if ((DRY_RUN)); then
            return 0
        fi
        "${cmd[@]}" -i "$file" >>"$LOG" 2>&1
    fi
}

step_patch() {
    local file
    if ! has_item patch; then
        info "no patch to apply (the $BRANCH tree is complete)"
        return 0
    fi
    file=$(item_path patch)
    info "checking that ${file##*/} applies (patch --dry-run)"
    mark_log
    if ! patch_cmd "$file" --dry-run; then
        show_output
        fail "$E_PATCH" "the patch ${file##*/} does not apply to the tree" \
            "(nothing was changed)" \
            -- "check that the patch is for this version and this tarball" \
            "(rhel6: vanilla linux-2.6.32); the tree is $TREE"
    fi
    info "applying ${file##*/}"
    mark_log
    if ! patch_cmd "$file"; then
        show_output
        # The tree is half patched: unpack it again on the next run.
        rm -f "$(stamp_path unpack)"
        fail "$E_PATCH" "the patch ${file##*/} failed after a clean" \
            "dry run" -- "the next run unpacks the tree again; check the" \
            "disk and the log"
    fi
}

# --- configure ---------------------------------------------------------------

# The config the build starts from.
config_source() {
    local i candidate
    if [[ -n $CONFIG ]]; then
        printf '%s' "$CONFIG"
        return 0
    fi
    if has_item config; then
        item_path config
        return 0
    fi
    for candidate in "$TREE/config.OpenVZ" \
        "$TREE/configs/kernel-3.10.0-$ARCH.config"; do
        if [[ -f $candidate ]]; then
            printf '%s' "$candidate"
            return 0
        fi
    done
    for i in "$TREE"/configs/kernel-*-"$ARCH".config; do
        if [[ -f $i ]]; then
            printf '%s' "$i"
            return 0
        fi
    done
    printf '%s' "$TREE/configs/kernel-3.10.0-$ARCH.config"
}

# Print the tree's kernel version as one number, e.g. 2006032 for 2.6.32.
tree_version_code() {
    awk -F= '
        /^VERSION[ \t]*=/ { gsub(/[ \t]/, "", $2); v = $2 }
        /^PATCHLEVEL[ \t]*=/ { gsub(/[ \t]/, "", $2); p = $2 }
        /^SUBLEVEL[ \t]*=/ { gsub(/[ \t]/, "", $2); s = $2 }
        END { printf "%d", v * 1000000 + p * 1000 + s }' "$TREE/Makefile"
}

MAKE_VARS=()
MAKE_VARS_READY=0

# The make variables for this tree and compiler, with the workarounds old
# trees need on a modern gcc.
prepare_make_vars() {
    local code kcflags=() hostcc=$CC_NAME
    if ((MAKE_VARS_READY)); then
        return 0
    fi
    MAKE_VARS=(ARCH="$KARCH" CC="$CC_NAME")
    if [[ ! -f $TREE/Makefile ]]; then
        MAKE_VARS+=(HOSTCC="$CC_NAME")
        return 0
    fi
    MAKE_VARS_READY=1
    code=$(tree_version_code)
    if ((CC_IS_GCC && CC_MAJOR >= 10 && code < 5007000)); then
        # gcc 10 defaults to -fno-common; old host tools rely on common.
        hostcc="$CC_NAME -fcommon"
        info "gcc $CC_MAJOR on an old tree: host programs get -fcommon"
    fi
    if ((CC_IS_GCC && CC_DEFAULT_PIE && code < 4009000)); then
        # Kernels before 4.9 do not turn off the default PIE themselves.
        kcflags+=(-fno-pie)
        info "$CC_NAME builds PIE by default and the tree predates 4.9:" \
            "adding -fno-pie"
    fi
    MAKE_VARS+=(HOSTCC="$hostcc")
    if ((${#kcflags[@]})); then
        MAKE_VARS+=(KCFLAGS="${kcflags[*]}")
    fi
}

# Fail early on what the tree needs and does not find.
check_tree_tools() {
    local header tools=(perl) have=() h pkg_mk=$TREE/scripts/package/Makefile
    header=$TREE/include/linux/compiler-gcc.h
    if ((CC_IS_GCC)) && [[ -f $header ]] &&
        grep -q 'gcc_header(__GNUC__)' "$header" &&
        [[ ! -f $TREE/include/linux/compiler-gcc$CC_MAJOR.h ]]; then
        for h in "$TREE"/include/linux/compiler-gcc[0-9]*.h; do
            if [[ -f $h ]]; then
                h=${h##*/compiler-gcc}
                have+=("gcc-${h%.h}")
            fi
        done
        fail "$E_TOOL" "$CC_NAME (gcc $CC_MAJOR) is too new for this tree:" \
            "it has no include/linux/compiler-gcc$CC_MAJOR.h" \
            -- "build with a gcc it knows (${have[*]:-an older gcc}):" \
            "install one (or build in an older Debian/Ubuntu) and pass" \
            "--cc gcc-N"
    fi
    if compgen -G "$TREE/kernel/*timeconst.bc" >/dev/null ||
        compgen -G "$TREE/kernel/time/timeconst.bc" >/dev/null; then
        tools+=(bc)
    fi
    # make 3.82 refuses the mixed rules of trees before 2.6.36.
    if grep -qE '^(config %config|/ %/):' "$TREE/Makefile" &&
        [[ ! $(first_line make --version) =~ Make\ 3\.([0-7][0-9]|81) ]]
    then
        fail "$E_TOOL" "this tree's Makefile needs GNU make 3.81 or older" \
            "(mixed implicit and normal rules)" -- "build in an older" \
            "Debian or Ubuntu (make 3.81, e.g. in a container), or use a" \
            "patch set that carries the make 3.82 fix"
    fi
    if [[ -f $TREE/scripts/kconfig/lexer.l ]]; then
        tools+=(flex bison)
    fi
    if grep -qs dpkg-buildpackage "$pkg_mk"; then
        tools+=(dpkg-buildpackage)
    fi
    if [[ $(id -u) != 0 ]] && grep -qs fakeroot "$pkg_mk"; then
        tools+=(fakeroot)
    fi
    require_tools "${tools[@]}"
}

# Fail early on the headers the configured kernel needs.
check_config_needs() {
    local cfg=$TREE/.config
    if grep -qE '^CONFIG_(STACK_VALIDATION|UNWINDER_ORC|DEBUG_INFO_BTF)=y' \
        "$cfg" && [[ ! -f /usr/include/gelf.h ]]; then
        fail "$E_TOOL" "the config needs libelf's headers (gelf.h)" \
            -- "apt-get install libelf-dev, and run again"
    fi
    if grep -qE '^CONFIG_(MODULE_SIG|SYSTEM_TRUSTED_KEYRING)=y' "$cfg" &&
        [[ ! -f /usr/include/openssl/opensslv.h ]]; then
        fail "$E_TOOL" "the config needs OpenSSL's headers" \
            -- "apt-get install libssl-dev, and run again"
    fi
}

apply_overrides() {
    local cfg=$TREE/.config sym args=()
    if [[ -f $TREE/scripts/config ]]; then
        info "config overrides via scripts/config"
        for sym in "${OVERRIDE_DISABLE[@]}"; do
            args+=(--disable "$sym")
        done
        for sym in "${OVERRIDE_ENABLE[@]}"; do
            args+=(--enable "$sym")
        done
        for sym in "${OVERRIDE_EMPTY_STR[@]}"; do
            args+=(--set-str "$sym" "")
        done
        # Old scripts/config has no --file: run it in the tree.
        show "(cd $(quote_cmd "$TREE") &&" \
            "$(quote_cmd bash scripts/config "${args[@]}"))"
        if ((!DRY_RUN)); then
            (cd "$TREE" && logged bash scripts/config "${args[@]}")
        fi
        return
    fi
    info "config overrides via sed (the tree has no scripts/config)"
    for sym in "${OVERRIDE_DISABLE[@]}" "${OVERRIDE_ENABLE[@]}" \
        "${OVERRIDE_EMPTY_STR[@]}"; do
        run sed -i -e "/^CONFIG_$sym=/d" -e "/^# CONFIG_$sym is not set/d" \
            "$cfg"
    done
    for sym in "${OVERRIDE_DISABLE[@]}"; do
        show "echo '# CONFIG_$sym is not set' >> $cfg"
        if ((!DRY_RUN)); then
            printf '# CONFIG_%s is not set\n' "$sym" >>"$cfg"
        fi
    done
    for sym in "${OVERRIDE_ENABLE[@]}"; do
        show "echo 'CONFIG_$sym=y' >> $cfg"
        if ((!DRY_RUN)); then
            printf 'CONFIG_%s=y\n' "$sym" >>"$cfg"
        fi
    done
    for sym in "${OVERRIDE_EMPTY_STR[@]}"; do
        show "echo 'CONFIG_$sym=\"\"' >> $cfg"
        if ((!DRY_RUN)); then
            printf 'CONFIG_%s=""\n' "$sym" >>"$cfg"
        fi
    done
}

has_make_target() {
    grep -qsw -- "$1" "$TREE/Makefile" "$TREE/scripts/kconfig/Makefile" \
        "$TREE/scripts/package/Makefile"
}

step_configure() {
    local cfg_src sym rc=0
    cfg_src=$(config_source)
    if ((DRY_RUN)) && [[ ! -f $TREE/Makefile ]]; then
        show "cp $(quote_cmd "$cfg_src") $TREE/.config"
        info "then the overrides (FTRACE, KMEMCHECK, DEBUG_INFO off) with" \
            "scripts/config or sed, and make olddefconfig (or oldconfig" \
            "when the tree lacks it), e.g.:"
        prepare_make_vars
        show "$(quote_cmd make -C "$TREE" "${MAKE_VARS[@]}" olddefconfig)"
        return 0
    fi
    if [[ ! -f $cfg_src ]]; then
        fail "$E_CONFIG" "no kernel config: $cfg_src does not exist" \
            -- "pass the config to start from with --config FILE"
    fi
    check_tree_tools
    prepare_make_vars
    run cp -- "$cfg_src" "$TREE/.config"
    apply_overrides
    mark_log
    if has_make_target olddefconfig; then
        run make -C "$TREE" "${MAKE_VARS[@]}" olddefconfig || rc=$?
    else
        show "yes '' | $(quote_cmd make -C "$TREE" "${MAKE_VARS[@]}" \
            oldconfig)"
        if ((!DRY_RUN)); then
            { yes '' || true; } |
                logged make -C "$TREE" "${MAKE_VARS[@]}" oldconfig || rc=$?
        fi
    fi
    if ((rc != 0)); then
        show_output
        fail "$E_CONFIG" "make olddefconfig/oldconfig failed" \
            -- "check the config ($cfg_src) against this tree, fix it or" \
            "pass another with --config, and run again"
    fi
    if ((DRY_RUN)); then
        return 0
    fi
    for sym in FTRACE KMEMCHECK; do
        if grep -q "^CONFIG_$sym=y" "$TREE/.config"; then
            warn "CONFIG_$sym is still on after the overrides (selected" \
                "by another option); the build may fail on this compiler"
        fi
    done
    check_config_needs
}

# --- build -------------------------------------------------------------------

package_target() {
    if has_make_target bindeb-pkg; then
        echo bindeb-pkg
    elif has_make_target deb-pkg; then
        echo deb-pkg
    else
        echo own
    fi
}

# For trees without a Debian packaging target (Debian's linux-source has
# none): build, then package the image, config, System.map and modules
# with dpkg-deb, with the usual /etc/kernel hooks. Runs where errexit is
# off: every command returns on failure.
build_own_package() {
    local release image stage pkg version script hook rc=0
    local make_cmd=(make -C "$TREE" "${MAKE_VARS[@]}")
    run "${make_cmd[@]}" -j"$JOBS" || rc=$?
    if ((rc != 0)); then
        return "$rc"
    fi
    if ((DRY_RUN)); then
        info "then: install the image, config, System.map and modules in" \
            "$WORKDIR/pkgroot and build linux-image-RELEASE with:"
        show "dpkg-deb --root-owner-group --build $WORKDIR/pkgroot/PKG" \
            "$SRC_PARENT"
        return 0
    fi
    release=$("${make_cmd[@]}" -s kernelrelease 2>>"$LOG") || release=""
    image=$("${make_cmd[@]}" -s image_name 2>>"$LOG" ||
        echo arch/x86/boot/bzImage)
    if [[ -z $release || ! -f $TREE/$image ]]; then
        fail "$E_BUILD" "the build left no kernel image ($TREE/$image)" \
            "or no release name" -- "see the log"
    fi
    pkg=linux-image-$(printf '%s' "$release" | tr 'A-Z_' 'a-z-')
    version=$release-1
    stage=$WORKDIR/pkgroot/$pkg
    run rm -rf "$WORKDIR/pkgroot" || return
    run mkdir -p "$stage/DEBIAN" "$stage/boot" || return
    run cp -- "$TREE/$image" "$stage/boot/vmlinuz-$release" || return
    run cp -- "$TREE/.config" "$stage/boot/config-$release" || return
    if [[ -f $TREE/System.map ]]; then
        run cp -- "$TREE/System.map" "$stage/boot/System.map-$release" ||
            return
    fi
    if grep -q '^CONFIG_MODULES=y' "$TREE/.config"; then
        run "${make_cmd[@]}" modules_install INSTALL_MOD_STRIP=1 \
            INSTALL_MOD_PATH="$stage" || return
        rm -f "$stage/lib/modules/$release/build" \
            "$stage/lib/modules/$release/source" || return
    fi
    cat >"$stage/DEBIAN/control" <<EOF || return
Package: $pkg
Version: $version
Architecture: $DEBARCH
Maintainer: ${DEBFULLNAME:-$PROG} <${DEBEMAIL:-root@localhost}>
Section: kernel
Priority: optional
Provides: linux-image
Installed-Size: $(du -sk "$stage" | cut -f1)
Description: Linux kernel $release (OpenVZ $BRANCH $VERSION)
 Built by nova-openvz's tools/build-openvz-kernel.sh from $BRANCH $VERSION.
EOF
    for script in preinst postinst prerm postrm; do
        hook=${script}.d
        cat >"$stage/DEBIAN/$script" <<EOF
#!/bin/sh
set -e
if [ -d /etc/kernel/$hook ]; then
    DEB_MAINT_PARAMS="\$*" run-parts --report --exit-on-error \\
        --arg=$release --arg=/boot/vmlinuz-$release /etc/kernel/$hook
fi
exit 0
EOF
        chmod 755 "$stage/DEBIAN/$script" || return
    done
    if [[ $(dpkg-deb --help 2>/dev/null) == *--root-owner-group* ]]; then
        run dpkg-deb --root-owner-group --build "$stage" \
            "$SRC_PARENT/${pkg}_${version}_$DEBARCH.deb"
    elif command -v fakeroot >/dev/null 2>&1; then
        run fakeroot dpkg-deb --build "$stage" \
            "$SRC_PARENT/${pkg}_${version}_$DEBARCH.deb"
    else
        run dpkg-deb --build "$stage" \
            "$SRC_PARENT/${pkg}_${version}_$DEBARCH.deb"
    fi
}

step_build() {
    local target rc=0 old
    prepare_make_vars
    if ((DRY_RUN)) && [[ ! -f $TREE/Makefile ]]; then
        info "the packaging target is chosen once the tree is unpacked:" \
            "bindeb-pkg if it has one, else deb-pkg, else a plain build" \
            "packaged with dpkg-deb, e.g.:"
        show "$(quote_cmd make -C "$TREE" "${MAKE_VARS[@]}" -j"$JOBS" \
            bindeb-pkg)"
        return 0
    fi
    target=$(package_target)
    for old in "$SRC_PARENT"/*.deb; do
        if [[ -f $old ]]; then
            run rm -f -- "$old"
        fi
    done
    mark_log
    if [[ $target == own ]]; then
        info "the tree has no bindeb-pkg or deb-pkg target: building and" \
            "packaging with dpkg-deb"
        build_own_package || rc=$?
    else
        info "packaging target: $target"
        run make -C "$TREE" "${MAKE_VARS[@]}" -j"$JOBS" "$target" || rc=$?
    fi
    if ((rc != 0)); then
        show_output
        fail "$E_BUILD" "the kernel build failed (target: $target)" \
            -- "see the output above and in the log; fix the cause (a" \
            "missing tool or header, or a compiler too new for this tree:" \
            "--cc) and run the same command again: the finished steps" \
            "are skipped and make continues where it stopped"
    fi
}

# --- collect -----------------------------------------------------------------

step_collect() {
    local debs=() deb names=()
    if ((DRY_RUN)); then
        show "cp $SRC_PARENT/*.deb $(quote_cmd "$OUTPUT")/"
        show "cd $(quote_cmd "$OUTPUT") && sha256sum *.deb > SHA256SUMS"
        return 0
    fi
    for deb in "$SRC_PARENT"/*.deb; do
        if [[ -f $deb ]]; then
            debs+=("$deb")
        fi
    done
    if ((${#debs[@]} == 0)); then
        rm -f "$(stamp_path build)"
        fail "$E_COLLECT" "the build produced no .deb in $SRC_PARENT" \
            -- "see the log of the build step; the next run builds again"
    fi
    for deb in "${debs[@]}"; do
        if ! dpkg-deb --info "$deb" >/dev/null 2>&1; then
            fail "$E_COLLECT" "$deb is not a valid package" \
                -- "run again with --clean to rebuild from scratch"
        fi
        names+=("${deb##*/}")
    done
    if ! run mkdir -p "$OUTPUT" || ! run cp -- "${debs[@]}" "$OUTPUT/"; then
        show_output
        fail "$E_COLLECT" "could not copy the packages to $OUTPUT" \
            -- "check that it is writable and has space (--output)"
    fi
    show "cd $(quote_cmd "$OUTPUT") && sha256sum $(quote_cmd "${names[@]}")" \
        "> SHA256SUMS"
    if ! (cd "$OUTPUT" && sha256sum -- "${names[@]}" >SHA256SUMS.tmp &&
        mv -f SHA256SUMS.tmp SHA256SUMS); then
        fail "$E_COLLECT" "could not write $OUTPUT/SHA256SUMS" \
            -- "check that the output dir is writable"
    fi
}

# --- main --------------------------------------------------------------------

main() {
    local step
    parse_args "$@"
    validate_args
    if ((DRY_RUN)); then
        info "dry run: printing the steps and commands, changing nothing"
        if ((CLEAN)); then
            info "--clean: would forget the earlier run in $WORKDIR"
            RERUN_FROM_EARLIER=1
        fi
    else
        if ! mkdir -p "$WORKDIR" "$STAMPS" 2>/dev/null ||
            ! touch "$WORKDIR/build.log" 2>/dev/null; then
            fail "$E_USAGE" "cannot write to the work dir $WORKDIR" \
                -- "choose a writable --workdir"
        fi
        LOG=$WORKDIR/build.log
        exec 9>>"$WORKDIR/.lock"
        if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
            fail "$E_USAGE" "another build is running in $WORKDIR" \
                -- "wait for it, or use another --workdir"
        fi
        to_log "=== $(date '+%F %T') $PROG $(quote_cmd "$@")"
        if ((CLEAN)); then
            info "--clean: forgetting the earlier run in $WORKDIR"
            rm -rf "$STAMPS" "$SOURCES" "$SRC_PARENT" "$WORKDIR/pkgroot" \
                "$WORKDIR/gnupg"
            mkdir -p "$STAMPS"
        fi
    fi
    info "building OpenVZ $BRANCH $VERSION for $ARCH in $WORKDIR"
    if ((VERSION_IS_LABEL)); then
        warn "'$VERSION' does not look like a $BRANCH version; it is only" \
            "a label here (nothing is downloaded by version)"
    fi
    plan_sources
    if ((RESUME)); then
        if [[ ! -d $STAMPS ]] || ! has_stamps; then
            fail "$E_USAGE" "--resume: no earlier run in $WORKDIR" \
                -- "run without --resume to start, or give the --workdir of" \
                "the earlier run"
        fi
        if ! stamp_matches fetch "$(fingerprint fetch)"; then
            fail "$E_USAGE" "--resume: the earlier run in $WORKDIR built" \
                "other sources (branch, version, arch or source files" \
                "differ)" -- "repeat its options, or use --clean to start over"
        fi
    fi
    step_check
    for step in "${STEPS[@]}"; do
        run_step "$step"
    done
    STEP=finish
    if ((DRY_RUN)); then
        info "dry run finished: nothing was changed"
        return 0
    fi
    info "packages in $OUTPUT (checksums in SHA256SUMS):"
    sed 's/^[0-9a-f]*  /  /' "$OUTPUT/SHA256SUMS"
    info "install with: dpkg -i $OUTPUT/linux-image-*.deb"
}

main "$@"
