# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Privileged entrypoints of the OpenVZ driver, and their shared checks.

Only code in this package runs as root, inside an oslo.privsep daemon.
Each entrypoint takes plain, typed arguments and checks them against what
the driver is allowed to ask.  What runs as root: vzctl, vzlist and ploop
from the configured tools directory, with an argv from the table in
:mod:`.commands` (:mod:`.tools`); tar packing snapshots and images
(:mod:`.images`); mkfs for ephemeral disks and the action scripts vzctl
runs for a container (:mod:`.containers` writes them); the console logger
(:mod:`.console`).  Never a shell on a caller's words, so a compromised
nova-compute cannot use these to touch the host itself (CT 0), other
paths, other devices or arbitrary options.

One module per concern: :mod:`.commands` (the table of host commands,
shared with the driver's renderer), :mod:`.tools` (running them),
:mod:`.images` (template cache, snapshots, ploop images),
:mod:`.containers` (files vzctl keeps next to a container: action scripts
for volumes, the ephemeral disk and the config drive), :mod:`.console`
(the host's console
agent), :mod:`.hostpaths` and :mod:`.vzconf` (where things are,
vzctl's config format).

This package imports nothing of the driver: only the standard library,
oslo, Nova's and this project's option declarations (``nova.conf``,
:mod:`nova_openvz.conf`) and its own modules (tests/unit/test_privsep.py
checks it).  Every entrypoint that runs a program returns one
:data:`Result`.
"""

import collections
import os
import re

import nova.conf  # noqa: F401 - registers instances_path in the daemon
from oslo_config import cfg
from oslo_log import log as logging
from oslo_privsep import capabilities as caps
from oslo_privsep import priv_context

from nova_openvz import conf as openvz_conf
from nova_openvz.privsep import hostpaths

CONF = openvz_conf.CONF
LOG = logging.getLogger(__name__)

#: What every privileged call that runs a program returns: its exit code
#: (None when it was killed after its timeout) and its output as text.
#: :mod:`nova_openvz.hosttools` turns it into a call record or an error.
Result = collections.namedtuple('Result', 'exit_code stdout stderr')

#: vzctl mounts images, creates devices and veth pairs, enters containers
#: and signals their processes; it needs these and nothing more.
CAPABILITIES = (caps.CAP_SYS_ADMIN, caps.CAP_NET_ADMIN,
                caps.CAP_DAC_OVERRIDE, caps.CAP_DAC_READ_SEARCH,
                caps.CAP_CHOWN, caps.CAP_FOWNER, caps.CAP_FSETID,
                caps.CAP_MKNOD, caps.CAP_SYS_CHROOT, caps.CAP_KILL,
                caps.CAP_SETUID, caps.CAP_SETGID, caps.CAP_SYS_RESOURCE,
                caps.CAP_NET_RAW)

#: What goes missing without a capability the host does not grant.
LOST_WITHOUT = {
    caps.CAP_SYS_RESOURCE:
        'growing the disk of a running container (online resize2fs past '
        'the reserved blocks) and raising a container\'s limits above the '
        'helper\'s own; offline growth and everything else still work',
}


def bounding_set(status='/proc/self/status'):
    """The capability bounding set of this process, or None if unknown.

    The privileged helper is started through sudo from this process and
    inherits the set: no capability outside it can be held, and asking
    for one makes the helper's ``capset`` fail.
    """
    try:
        with open(status) as f:
            for line in f:
                if line.startswith('CapBnd:'):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_capabilities(wanted=CAPABILITIES, bounding=None):
    """``wanted`` minus what the host's bounding set leaves out.

    Returns ``(kept, dropped)``.  With the set unknown, all are kept.
    """
    if bounding is None:
        bounding = bounding_set()
    if bounding is None:
        return list(wanted), []
    kept = [cap for cap in wanted if bounding >> cap & 1]
    return kept, [cap for cap in wanted if cap not in kept]


def _capability_name(cap):
    for name in dir(caps):
        if name.startswith('CAP_') and getattr(caps, name) == cap:
            return name
    return 'capability %d' % cap


def warn_dropped(dropped):
    """Log, once per process, what runs without ``dropped``."""
    for cap in dropped:
        LOG.warning('%(name)s is not in this host\'s capability bounding '
                    'set: the privileged helper starts without it. Lost: '
                    '%(lost)s.',
                    {'name': _capability_name(cap),
                     'lost': LOST_WITHOUT.get(cap, 'nothing the driver '
                                              'relies on')})


GRANTED, DROPPED = available_capabilities()
warn_dropped(DROPPED)

vz_pctxt = priv_context.PrivContext(
    'nova_openvz',
    cfg_section='nova_openvz_privsep',
    pypath=__name__ + '.vz_pctxt',
    capabilities=list(GRANTED),
)

# The helper's threads mostly wait for host tools; with oslo.privsep's
# default of one per CPU, two hung tools would stall every other call.
cfg.CONF.set_default('thread_pool_size', 64, group='nova_openvz_privsep')

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
                os.path.dirname(paths().instance_dir(name))):
        raise ArgumentRejected('%r is not an instance directory'
                               % (directory,))
    parent = os.open(os.path.realpath(paths().instances_path),
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


def paths():
    """The host's paths (:class:`.hostpaths.HostPaths`) as configured."""
    return hostpaths.for_files(CONF.openvz.vz_conf, CONF.instances_path)
