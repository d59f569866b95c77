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

"""The host commands the driver may run: one table for both sides.

Each :class:`Shape` is one command line the driver sends: its fixed words,
its operands and the options it may carry, each with the form of its value.
The driver's renderer (:mod:`nova_openvz.vz4`) builds every argv with
:meth:`Shape.argv`, which checks it against the shape; the privileged helper
(:mod:`.tools`) runs an argv only if :func:`match` finds its shape and the
shape's guards pass (checks that need root's view of the host: the
container ID range, the devices a container was granted, where snapshots
and images are mounted).  Nothing else lists commands or options.

Standard library only, importing nothing of the driver, so that the
privileged daemon can load it (see :mod:`nova_openvz.privsep`).
"""

import re

#: Values: one ``re`` pattern each, matched against the whole word.
CTID = r'[0-9]{1,10}'
UUID = r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
NUMBER = r'[0-9]{1,10}'
TEMPLATE = r'[a-z0-9][a-z0-9._-]{0,200}'
LAYOUT = r'ploop|simfs'
DISKSPACE = r'[0-9]{1,9}G:[0-9]{1,9}G'
#: :func:`nova_openvz.inventory.describe`'s ``key=value`` words.
DESCRIPTION = r'[A-Za-z0-9=._ -]{1,1024}'
_LABEL = r'[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
HOSTNAME = r'(?=.{1,253}\Z)%s(\.%s)*' % (_LABEL, _LABEL)
MEGABYTES = r'[0-9]{1,10}M'
#: MB/s, or bytes/s with ``B``.
IOLIMIT = r'[0-9]{1,15}B?'
IFNAME = r'[A-Za-z0-9][A-Za-z0-9_.-]{0,14}'
MAC = r'[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}'
#: ``ifname,mac,host_ifname,host_mac,bridge``; the host MAC and the bridge
#: may be left empty.
NETIF_ADD = r'{i},{m},{i},({m})?,({i})?'.format(i=IFNAME, m=MAC)
IP = r'[0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9A-Fa-f:]{2,39}'
DOMAIN = r'(?=.{1,253}\Z)%s(\.%s)*' % (_LABEL, _LABEL)
#: Block device access: granted read-write, or taken back.
DEVICE = r'b:[0-9]{1,4}:[0-9]{1,7}:(rw|none)'
PATH = r'/[A-Za-z0-9/._+-]{0,4095}'
#: vzlist fields the driver reads; all are valid in JSON output.
VZLIST_FIELDS = ('ctid', 'name', 'description', 'status', 'cpus',
                 'physpages')
#: The usage counters of one container (diagnostics): every beancounter
#: (reference 3.3), disk usage and uptime.
VZLIST_UBC = ('kmemsize', 'lockedpages', 'privvmpages', 'shmpages',
              'numproc', 'physpages', 'vmguarpages', 'oomguarpages',
              'numtcpsock', 'numflock', 'numpty', 'numsiginfo', 'tcpsndbuf',
              'tcprcvbuf', 'othersockbuf', 'dgramrcvbuf', 'numothersock',
              'dcachesize', 'numfile', 'numiptent', 'swappages')
VZLIST_COUNTER_FIELDS = ('ctid', 'status') + VZLIST_UBC + (
    'diskspace', 'diskinodes', 'uptime')
FIELDS = r'({f})(,({f}))*'.format(f='|'.join(
    sorted(set(VZLIST_FIELDS + VZLIST_COUNTER_FIELDS))))


class Rejected(ValueError):
    """An argv outside the table."""


class Option(object):
    """``--name`` alone (``value`` None) or with a value of that form."""

    def __init__(self, name, value=None, repeat=False, guard=None):
        self.name = name
        self.value = value
        self.pattern = None if value is None else re.compile(
            r'(?:%s)\Z' % value)
        self.repeat = repeat
        self.guard = guard


class Shape(object):
    """One command line: ``tool fixed... operands... options...``.

    ``more`` is the form of any further operands (vzlist's CT IDs);
    ``guards`` name the privileged checks of the whole argv; ``stdin``
    says the command reads a script on its standard input.
    """

    def __init__(self, tool, fixed, operands=(), options=(), more=None,
                 guards=(), stdin=False):
        self.tool = tool
        self.fixed = tuple(fixed)
        self.operands = tuple(re.compile(r'(?:%s)\Z' % o) for o in operands)
        self.options = {option.name: option for option in options}
        self.more = None if more is None else re.compile(r'(?:%s)\Z' % more)
        self.guards = tuple(guards)
        self.stdin = stdin

    @property
    def name(self):
        return ' '.join((self.tool,) + self.fixed)

    def parse(self, argv):
        """``(operands, [(option, value)...])`` of an argv of this shape."""
        argv = list(argv)
        if argv[:len(self.fixed)] != list(self.fixed):
            raise Rejected('%s: not this command' % self.name)
        rest = argv[len(self.fixed):]
        if len(rest) < len(self.operands):
            raise Rejected('%s needs %d operands' % (self.name,
                                                     len(self.operands)))
        operands = []
        for pattern in self.operands:
            _value(self.name, pattern, rest[0])
            operands.append(rest.pop(0))
        while self.more is not None and rest and \
                not rest[0].startswith('-'):
            operands.append(_value(self.name, self.more, rest.pop(0)))
        options, seen = [], set()
        while rest:
            word = rest.pop(0)
            option = self.options.get(word)
            if option is None:
                raise Rejected('%s: option %r is not allowed'
                               % (self.name, word))
            if word in seen and not option.repeat:
                raise Rejected('%s: %s given twice' % (self.name, word))
            seen.add(word)
            value = None
            if option.pattern is not None:
                if not rest:
                    raise Rejected('%s: %s needs a value' % (self.name, word))
                value = _value(word, option.pattern, rest.pop(0))
            options.append((word, value))
        return operands, options

    def argv(self, operands, options=()):
        """The argv of this shape, checked: what the renderer sends."""
        argv = list(self.fixed) + [str(o) for o in operands]
        for name, value in options:
            argv.append(name)
            if value is not None:
                argv.append(str(value))
        self.parse(argv)
        return argv


_UUID_RE = re.compile(UUID + r'\Z')


def nova_instance(name, description):
    """The instance UUID a container's NAME and DESCRIPTION name, or None.

    A container Nova made carries its instance's UUID as NAME and again as
    the ``nova-instance=`` word of its DESCRIPTION; the listing and the
    privileged side both tell Nova's containers apart by this one rule.
    """
    if not isinstance(name, str) or not _UUID_RE.match(name):
        return None
    words = description.split() if isinstance(description, str) else ()
    return name if 'nova-instance=' + name in words else None


def rescued_instance(name, description):
    """The instance a rescue container rescues, or None.

    A rescue container has no NAME (its server's container holds the
    instance's) and carries ``nova-rescue=<uuid>`` in its DESCRIPTION.
    """
    if name or not isinstance(description, str):
        return None
    for word in description.split():
        key, _, value = word.partition('=')
        if key == 'nova-rescue' and _UUID_RE.match(value):
            return value
    return None


def _value(what, pattern, word):
    if not isinstance(word, str) or not pattern.match(word):
        raise Rejected('%s: %r is not an allowed value' % (what, word))
    return word


def _flags(*names):
    return [Option(name) for name in names]


_ID = [Option('--id', UUID)]

#: vzctl 4 (reference 1): ``vzctl <command> <CTID> [options]``.
VZCTL_VERSION = Shape('vzctl', ['--version'])
VZCTL_CREATE = Shape('vzctl', ['create'], [CTID], [
    Option('--ostemplate', TEMPLATE), Option('--layout', LAYOUT),
    Option('--diskspace', DISKSPACE), Option('--name', UUID),
    Option('--description', DESCRIPTION), Option('--hostname', HOSTNAME)],
    guards=['ctid'])
VZCTL_SET = Shape('vzctl', ['set'], [CTID], _flags('--save') + [
    Option('--onboot', 'yes|no'), Option('--stop-timeout', NUMBER),
    Option('--ram', MEGABYTES), Option('--swap', MEGABYTES),
    Option('--cpus', NUMBER), Option('--cpuunits', NUMBER),
    Option('--cpulimit', NUMBER), Option('--ioprio', '[0-7]'),
    Option('--iolimit', IOLIMIT), Option('--iopslimit', NUMBER),
    Option('--numproc', NUMBER), Option('--numfile', NUMBER),
    Option('--diskspace', DISKSPACE),
    Option('--netif_add', NETIF_ADD, repeat=True),
    Option('--netif_del', IFNAME), Option('--ipadd', IP, repeat=True),
    Option('--nameserver', IP, repeat=True), Option('--searchdomain', DOMAIN),
    Option('--devices', DEVICE, repeat=True, guard='granted_device'),
    Option('--description', DESCRIPTION)],
    guards=['nova_ctid'])
VZCTL_START = Shape('vzctl', ['start'], [CTID], _flags('--wait'),
                    guards=['nova_ctid'])
VZCTL_STOP = Shape('vzctl', ['stop'], [CTID], _flags('--fast'),
                   guards=['nova_ctid'])
VZCTL_RESTART = Shape('vzctl', ['restart'], [CTID],
                      _flags('--wait', '--fast'), guards=['nova_ctid'])
VZCTL_DESTROY = Shape('vzctl', ['destroy'], [CTID], guards=['nova_ctid'])
#: Only to destroy a container left mounted (reference 1.6: exit 41).
VZCTL_UMOUNT = Shape('vzctl', ['umount'], [CTID], guards=['nova_ctid'])
#: A rescued server's root, shown inside its rescue container (1.5).
VZCTL_MOUNT = Shape('vzctl', ['mount'], [CTID], guards=['nova_ctid'])
#: A script for the container's shell, on standard input (reference 1.8).
VZCTL_EXEC2 = Shape('vzctl', ['exec2'], [CTID, '-'], guards=['nova_ctid'],
                    stdin=True)
#: Without an option a full checkpoint to the dump file (reference 1.9).
VZCTL_CHKPNT = Shape('vzctl', ['chkpnt'], [CTID],
                     _flags('--suspend', '--resume'), guards=['nova_ctid'])
#: Restore from the dump file, which vzctl deletes on success.
VZCTL_RESTORE = Shape('vzctl', ['restore'], [CTID], guards=['nova_ctid'])
VZCTL_SNAPSHOT = Shape('vzctl', ['snapshot'], [CTID],
                       _ID + _flags('--skip-suspend', '--skip-config'),
                       guards=['nova_ctid'])
VZCTL_SNAPSHOT_DELETE = Shape('vzctl', ['snapshot-delete'], [CTID], _ID,
                              guards=['nova_ctid'])
VZCTL_SNAPSHOT_MOUNT = Shape('vzctl', ['snapshot-mount'], [CTID],
                             _ID + [Option('--target', PATH)],
                             guards=['nova_ctid', 'snapshot_target'])
VZCTL_SNAPSHOT_UMOUNT = Shape('vzctl', ['snapshot-umount'], [CTID], _ID,
                              guards=['nova_ctid'])

#: vzlist (reference 3): every container, or some, as JSON (the listing's
#: fields, or one container's counters).
VZLIST_ALL = Shape('vzlist', ['-a', '-j', '-o'], [FIELDS])
VZLIST_SOME = Shape('vzlist', ['-j', '-o'], [FIELDS], more=CTID,
                    guards=['ctids'])
#: One container's disk usage, before a resize may shrink its disk.
VZLIST_DISK = Shape('vzlist', ['-j', '-o', 'ctid,diskspace'], [CTID],
                    guards=['ctid'])

#: ploop (reference 6): the three calls that turn an image into a template.
PLOOP_RESTORE_DESCRIPTOR = Shape(
    'ploop', ['restore-descriptor', '-f', 'ploop1'], [PATH, PATH],
    guards=['ploop_work'])
PLOOP_MOUNT = Shape('ploop', ['mount', '-r', '-m'], [PATH, PATH],
                    guards=['ploop_mount'])
PLOOP_UMOUNT = Shape('ploop', ['umount', '-m'], [PATH],
                     guards=['ploop_umount'])

#: vzmigrate (reference 5.4): ``vzmigrate [options] <peer> <CTID>``.  Its
#: options come before the operands, so each use the driver makes is a
#: fixed prefix of its own: the checks alone, an offline move that keeps
#: the source's area (as ``<CTID>.conf.migrated``) for a revert, and a
#: live move.  The peer is a host name (Nova's host names may hold
#: underscores) or address, never an option.
PEER = r'(?!-)[A-Za-z0-9_.:-]{1,253}'

VZMIGRATE_CHECK = Shape('vzmigrate', ['--check-only'], [PEER, CTID],
                        guards=['migrated_ctid'])
VZMIGRATE_CHECK_ONLINE = Shape('vzmigrate', ['--check-only', '--online'],
                               [PEER, CTID], guards=['migrated_ctid'])
VZMIGRATE_KEEP_SOURCE = Shape('vzmigrate', ['-r', 'no'], [PEER, CTID],
                              guards=['migrated_ctid'])
VZMIGRATE_ONLINE = Shape('vzmigrate', ['--online'], [PEER, CTID],
                         guards=['migrated_ctid'])

SHAPES = (VZCTL_VERSION, VZCTL_CREATE, VZCTL_SET, VZCTL_START, VZCTL_STOP,
          VZCTL_RESTART, VZCTL_DESTROY, VZCTL_UMOUNT, VZCTL_MOUNT,
          VZCTL_EXEC2, VZCTL_CHKPNT, VZCTL_RESTORE,
          VZCTL_SNAPSHOT, VZCTL_SNAPSHOT_DELETE, VZCTL_SNAPSHOT_MOUNT,
          VZCTL_SNAPSHOT_UMOUNT, VZLIST_ALL, VZLIST_SOME,
          VZLIST_DISK,
          PLOOP_RESTORE_DESCRIPTOR, PLOOP_MOUNT, PLOOP_UMOUNT,
          VZMIGRATE_CHECK, VZMIGRATE_CHECK_ONLINE, VZMIGRATE_KEEP_SOURCE,
          VZMIGRATE_ONLINE)
TOOLS = frozenset(shape.tool for shape in SHAPES)


def match(tool, argv):
    """``(shape, operands, options)`` of an argv in the table.

    :raises Rejected: for anything the table does not hold.
    """
    if not isinstance(argv, (list, tuple)) or \
            not all(isinstance(word, str) for word in argv):
        raise Rejected('argv must be a list of strings')
    candidates = [shape for shape in SHAPES if shape.tool == tool and
                  list(argv[:len(shape.fixed)]) == list(shape.fixed)]
    if not candidates:
        raise Rejected('%s %s is not in the table of commands'
                       % (tool, ' '.join(argv[:3])))
    shape = max(candidates, key=lambda s: len(s.fixed))
    operands, options = shape.parse(argv)
    return shape, operands, options
