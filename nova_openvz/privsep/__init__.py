"""Privileged entrypoints of the OpenVZ driver, and their shared checks.

Only code in this package runs as root, inside an oslo.privsep daemon.
Each entrypoint takes plain, typed arguments, checks them against what the
driver is allowed to ask of a host tool, and runs one fixed executable from
the configured tools directory with an argv list (never a shell).  The
unprivileged side (:mod:`nova_openvz.hosttools`) builds the argv; this side
refuses anything outside the grammar in :mod:`.tools`, so a compromised
nova-compute cannot use vzctl to
touch the host itself (CT 0), other paths, or arbitrary options.

One module per concern: :mod:`.tools` (vzctl, vzlist and ploop argv),
:mod:`.images` (template cache, snapshots, ploop images),
:mod:`.containers` (files vzctl keeps next to a container: action scripts
for volumes, the ephemeral disk and the config drive) and :mod:`.console`
(the host's console agent).
"""

import os
import re

import nova.conf  # noqa: F401 - registers instances_path in the daemon
from oslo_privsep import capabilities as caps
from oslo_privsep import priv_context

from nova_openvz import conf as openvz_conf

CONF = openvz_conf.CONF

#: vzctl mounts images, creates devices and veth pairs, enters containers
#: and signals their processes; it needs these and nothing more.
CAPABILITIES = (caps.CAP_SYS_ADMIN, caps.CAP_NET_ADMIN,
                caps.CAP_DAC_OVERRIDE, caps.CAP_DAC_READ_SEARCH,
                caps.CAP_CHOWN, caps.CAP_FOWNER, caps.CAP_FSETID,
                caps.CAP_MKNOD, caps.CAP_SYS_CHROOT, caps.CAP_KILL,
                caps.CAP_SETUID, caps.CAP_SETGID, caps.CAP_SYS_RESOURCE,
                caps.CAP_NET_RAW)

vz_pctxt = priv_context.PrivContext(
    'nova_openvz',
    cfg_section='nova_openvz_privsep',
    pypath=__name__ + '.vz_pctxt',
    capabilities=list(CAPABILITIES),
)

VEID_MAX = 2147483644
MAX_ARGS = 256
MAX_ARG_LEN = 4096

# Values may hold JSON (descriptions) and lists, but never control
# characters; paths are not accepted where the grammar has none.
VALUE_RE = re.compile(r'^[^\x00-\x1f\x7f]*\Z')
CTID_RE = re.compile(r'^[0-9]{1,10}\Z')
UUID_RE = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                     r'[0-9a-f]{12}\Z')
#: Characters a path in a generated script may hold (quoted anyway).
SCRIPT_PATH_RE = re.compile(r'^/[A-Za-z0-9/._+-]*\Z')
#: Where the helper finds tar and friends; never the caller's PATH.
TOOL_PATH = '/usr/sbin:/usr/bin:/sbin:/bin'


class ArgumentRejected(ValueError):
    """An argv outside the grammar the driver may use."""


def check_ctid(text):
    """A container ID the driver may name: a number, not CT 0."""
    if not CTID_RE.match(text):
        raise ArgumentRejected('container ID %r is not a number' % text)
    ctid = int(text)
    if not CONF.openvz.min_ctid <= ctid <= VEID_MAX:
        raise ArgumentRejected('container ID %d is outside %d..%d'
                               % (ctid, CONF.openvz.min_ctid, VEID_MAX))


def check_words(args):
    """An argv: a short list of short strings without control characters."""
    if not isinstance(args, (list, tuple)) or len(args) > MAX_ARGS:
        raise ArgumentRejected('argv must be a list of at most %d words'
                               % MAX_ARGS)
    for word in args:
        if not isinstance(word, str) or len(word) > MAX_ARG_LEN:
            raise ArgumentRejected('argv words must be short strings')
        if not VALUE_RE.match(word):
            raise ArgumentRejected('control character in %r' % word)


def open_instance_dir(directory):
    """An fd of ``<instances_path>/<instance uuid>``, links refused.

    nova-compute owns the instance directories and could swap one for a
    link at any time, so the privileged side resolves the path once, here,
    and then works only relative to the returned descriptor: a later swap
    changes nothing it reads or writes.  ``instances_path`` itself is the
    operator's choice and may be a link.
    """
    checked_path(directory)
    name = os.path.basename(directory)
    if not UUID_RE.match(name) or os.path.realpath(
            os.path.dirname(directory)) != os.path.realpath(
                CONF.instances_path):
        raise ArgumentRejected('%r is not an instance directory'
                               % (directory,))
    parent = os.open(os.path.realpath(CONF.instances_path),
                     os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW |
                       os.O_CLOEXEC, dir_fd=parent)
    except FileNotFoundError:
        raise
    except OSError as e:
        # ELOOP (a link) or ENOTDIR.
        raise ArgumentRejected('%r is not an instance directory: %s'
                               % (directory, e.strerror))
    finally:
        os.close(parent)


def is_inside(path, directory):
    """True when ``path``, links resolved, is within ``directory``."""
    real = os.path.realpath(path)
    return os.path.commonpath([real, os.path.realpath(directory)]) == \
        os.path.realpath(directory)


def checked_path(path):
    """``path`` if it is absolute, plain and fit for a generated script."""
    if not isinstance(path, str) or not SCRIPT_PATH_RE.match(path) or \
            '..' in path.split('/') or path == '/':
        raise ArgumentRejected('unusable path %r' % (path,))
    return path
