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

"""Every cgroup access of the simulated host's real kernel backend.

A container's limits and accounting live in one control group per
container, named by the caller (``vzsim-<host key>-<CTID>``).  This module
is the only one that knows where cgroups are mounted and which files hold
what, so that another cgroup layout is a contained change.

``V1`` drives the legacy hierarchies mounted at
``/sys/fs/cgroup/<controller>`` (memory, cpu, cpuacct, cpuset, freezer,
devices, blkio, pids); ``V2`` the unified hierarchy (``cgroup.freeze``,
``memory.max``, ``cpu.max``, ...).  :func:`open_group` picks the first
that this machine supports.  The v2 devices controller is a BPF program,
which the standard library cannot load, so ``V2.set_devices`` refuses.

Values: memory in bytes, None for unlimited; CPU quota and period in
microseconds; CPU weight as v1 ``cpu.shares`` (1024 is the default).

Standard library only, no work at import time.
"""

import errno
import os
import time

ROOT = '/sys/fs/cgroup'
V1_CONTROLLERS = ('memory', 'cpu', 'cpuacct', 'cpuset', 'freezer',
                  'devices', 'blkio', 'pids')
#: Controllers a container cannot do without (blkio is optional).
V1_REQUIRED = ('memory', 'cpu', 'cpuacct', 'cpuset', 'freezer', 'devices',
               'pids')
V2_REQUIRED = ('memory', 'cpu', 'cpuset', 'pids')
UNLIMITED = None


class CgroupError(Exception):
    """A cgroup operation failed; the message says which file and why."""


def _read(path):
    with open(path) as f:
        return f.read()


def _write(path, value):
    try:
        with open(path, 'w') as f:
            f.write(str(value))
    except OSError as exc:
        raise CgroupError('%s: cannot write %r: %s'
                          % (path, value, exc.strerror))


def _pids_in(path):
    try:
        return [int(line) for line in _read(path).split()]
    except OSError:   # no such group, or one being removed (ENODEV)
        return []


def _unified_root():
    """Where the cgroup2 hierarchy is mounted, or None."""
    for candidate in (os.path.join(ROOT, 'unified'), ROOT):
        if os.path.isfile(os.path.join(candidate, 'cgroup.controllers')):
            return candidate
    return None


class _Group:
    """What both layouts share: naming, waiting for removal."""

    def __init__(self, name):
        self.name = name

    def remove(self, timeout=10.0):
        """Remove the group once its processes are gone (idempotent)."""
        deadline = time.monotonic() + timeout
        for path in self.paths():
            while os.path.isdir(path):
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or \
                            time.monotonic() > deadline:
                        raise CgroupError('%s: cannot remove: %s'
                                          % (path, exc.strerror))
                    time.sleep(0.02)

    def exists(self):
        return any(os.path.isdir(path) for path in self.paths())

    def wait_empty(self, timeout):
        """True once no process is left in the group."""
        deadline = time.monotonic() + timeout
        while self.pids():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


class V1(_Group):
    """A group in each legacy hierarchy."""

    VERSION = 1

    @staticmethod
    def available():
        """``(True, '')`` or ``(False, why not)`` on this machine."""
        missing = [c for c in V1_REQUIRED if not os.path.isfile(
            os.path.join(ROOT, c, 'cgroup.procs'))]
        if missing:
            return False, ('cgroup v1 controllers not mounted under %s: %s'
                           % (ROOT, ', '.join(missing)))
        return True, ''

    @staticmethod
    def controllers():
        return [c for c in V1_CONTROLLERS
                if os.path.isfile(os.path.join(ROOT, c, 'cgroup.procs'))]

    @classmethod
    def names(cls, prefix):
        """Names of the existing groups starting with ``prefix``."""
        found = set()
        for controller in cls.controllers():
            try:
                entries = os.listdir(os.path.join(ROOT, controller))
            except OSError:
                continue
            found.update(e for e in entries if e.startswith(prefix))
        return sorted(found)

    def path(self, controller, filename=''):
        return os.path.join(ROOT, controller, self.name, filename)

    def paths(self):
        return [self.path(c) for c in self.controllers()]

    def _has(self, controller, filename):
        return os.path.exists(self.path(controller, filename))

    def create(self):
        for controller in self.controllers():
            os.makedirs(self.path(controller), exist_ok=True)
        # A new cpuset is empty and takes no process until it has CPUs.
        for filename in ('cpuset.cpus', 'cpuset.mems'):
            if not _read(self.path('cpuset', filename)).strip():
                _write(self.path('cpuset', filename),
                       _read(os.path.join(ROOT, 'cpuset', filename)).strip())

    def join(self, pid=0):
        """Move ``pid`` (0: the calling process) into the group."""
        for controller in self.controllers():
            _write(self.path(controller, 'cgroup.procs'), pid)

    def pids(self):
        return _pids_in(self.path('pids', 'cgroup.procs'))

    # -- limits --------------------------------------------------------------

    def set_memory(self, limit, swap):
        """RAM ``limit`` and RAM+swap ``limit + swap`` (None: unlimited)."""
        ram = -1 if limit is UNLIMITED else limit
        both = -1 if limit is UNLIMITED or swap is UNLIMITED else \
            limit + swap
        ram_file = self.path('memory', 'memory.limit_in_bytes')
        memsw_file = self.path('memory', 'memory.memsw.limit_in_bytes')
        if not os.path.exists(memsw_file):
            _write(ram_file, ram)
            return
        # RAM+swap may never be below RAM: growing, it goes first.
        try:
            _write(memsw_file, both)
            _write(ram_file, ram)
        except CgroupError:
            _write(ram_file, ram)
            _write(memsw_file, both)

    def memory_limit(self):
        return int(_read(self.path('memory', 'memory.limit_in_bytes')))

    def set_cpu(self, shares, quota_us, period_us=100000):
        """CPU weight and bandwidth (``quota_us`` None: no limit)."""
        _write(self.path('cpu', 'cpu.shares'), max(int(shares), 2))
        _write(self.path('cpu', 'cpu.cfs_period_us'), period_us)
        _write(self.path('cpu', 'cpu.cfs_quota_us'),
               -1 if quota_us is None else max(int(quota_us), 1000))

    def set_cpuset(self, cpus=None, mems=None):
        """CPU and memory-node lists (None: all the host has)."""
        for filename, value in (('cpuset.cpus', cpus), ('cpuset.mems', mems)):
            if value is None:
                value = _read(os.path.join(ROOT, 'cpuset', filename)).strip()
            _write(self.path('cpuset', filename), value)

    def host_cpus(self):
        return _read(os.path.join(ROOT, 'cpuset', 'cpuset.cpus')).strip()

    def set_pids(self, maximum):
        _write(self.path('pids', 'pids.max'),
               'max' if maximum is None else maximum)

    def set_devices(self, rules):
        """Deny every device, then allow ``rules`` (``'c 1:3 rwm'``...)."""
        _write(self.path('devices', 'devices.deny'), 'a')
        for rule in rules:
            _write(self.path('devices', 'devices.allow'), rule)

    def set_io(self, device, bps, iops):
        """Throttle ``device`` (``'major:minor'``); 0 or None removes."""
        if not self._has('blkio', 'blkio.throttle.read_bps_device'):
            raise CgroupError('blkio throttling is not available')
        for kind, value in (('bps', bps), ('iops', iops)):
            for direction in ('read', 'write'):
                _write(self.path('blkio', 'blkio.throttle.%s_%s_device'
                                 % (direction, kind)),
                       '%s %d' % (device, value or 0))

    # -- freezer -----------------------------------------------------------

    def _freezer(self, state):
        _write(self.path('freezer', 'freezer.state'), state)
        deadline = time.monotonic() + 10
        while self.freezer_state() != state:
            if time.monotonic() > deadline:
                raise CgroupError('%s: still not %s' % (self.name, state))
            time.sleep(0.01)

    def freezer_state(self):
        try:
            return _read(self.path('freezer', 'freezer.state')).strip()
        except OSError:
            return 'THAWED'

    def freeze(self):
        self._freezer('FROZEN')

    def thaw(self):
        self._freezer('THAWED')

    def frozen(self):
        return self.freezer_state() != 'THAWED'

    # -- accounting ----------------------------------------------------------

    def _number(self, controller, filename, default=0):
        try:
            return int(_read(self.path(controller, filename)).split()[0])
        except (OSError, ValueError, IndexError):
            return default

    def usage(self):
        """Memory, swap (bytes) and failure counts, as a dict."""
        ram = self._number('memory', 'memory.usage_in_bytes')
        both = self._number('memory', 'memory.memsw.usage_in_bytes', ram)
        pids_failed = 0
        try:
            for line in _read(self.path('pids', 'pids.events')).splitlines():
                key, _, value = line.partition(' ')
                if key == 'max':
                    pids_failed = int(value)
        except (OSError, ValueError):
            pass
        # cpuacct.stat counts user and system time in USER_HZ ticks.
        ticks = {}
        try:
            for line in _read(self.path('cpuacct',
                                        'cpuacct.stat')).splitlines():
                key, _, value = line.partition(' ')
                ticks[key] = int(value)
        except (OSError, ValueError):
            pass
        return {'memory': ram, 'swap': max(both - ram, 0),
                'memory_peak': self._number(
                    'memory', 'memory.max_usage_in_bytes', ram),
                'kmem': self._number('memory', 'memory.kmem.usage_in_bytes'),
                'memory_failcnt': self._number('memory', 'memory.failcnt'),
                'pids_failcnt': pids_failed,
                'cpu_ns': self._number('cpuacct', 'cpuacct.usage'),
                'cpu_user_ticks': ticks.get('user', 0),
                'cpu_system_ticks': ticks.get('system', 0)}


class V2(_Group):
    """A group in the unified hierarchy (controllers as it offers them)."""

    VERSION = 2

    @staticmethod
    def available():
        root = _unified_root()
        if root is None:
            return False, 'no cgroup2 hierarchy mounted'
        offered = _read(os.path.join(root, 'cgroup.controllers')).split()
        missing = [c for c in V2_REQUIRED if c not in offered]
        if missing:
            return False, ('cgroup2 at %s lacks the controllers: %s'
                           % (root, ', '.join(missing)))
        return True, ''

    @staticmethod
    def root():
        return _unified_root()

    @classmethod
    def names(cls, prefix):
        root = cls.root()
        if root is None:
            return []
        return sorted(e for e in os.listdir(root) if e.startswith(prefix))

    def path(self, filename=''):
        return os.path.join(self.root(), self.name, filename)

    def paths(self):
        return [self.path()]

    def create(self):
        root = self.root()
        offered = _read(os.path.join(root, 'cgroup.controllers')).split()
        enabled = _read(os.path.join(root, 'cgroup.subtree_control')).split()
        wanted = [c for c in ('memory', 'cpu', 'cpuset', 'io', 'pids')
                  if c in offered and c not in enabled]
        if wanted:
            _write(os.path.join(root, 'cgroup.subtree_control'),
                   ' '.join('+' + c for c in wanted))
        os.makedirs(self.path(), exist_ok=True)

    def join(self, pid=0):
        _write(self.path('cgroup.procs'), pid)

    def pids(self):
        return _pids_in(self.path('cgroup.procs'))

    def _set(self, filename, value):
        if not os.path.exists(self.path(filename)):
            raise CgroupError('%s: the controller is not enabled'
                              % self.path(filename))
        _write(self.path(filename), value)

    def set_memory(self, limit, swap):
        self._set('memory.max', 'max' if limit is UNLIMITED else limit)
        if os.path.exists(self.path('memory.swap.max')):
            self._set('memory.swap.max',
                      'max' if swap is UNLIMITED else swap)

    def memory_limit(self):
        text = _read(self.path('memory.max')).strip()
        return -1 if text == 'max' else int(text)

    def set_cpu(self, shares, quota_us, period_us=100000):
        # cpu.shares 2..262144 onto cpu.weight 1..10000, 1024 -> 100.
        self._set('cpu.weight', max(1, min(10000, int(shares) * 100 // 1024)))
        self._set('cpu.max', '%s %d' % ('max' if quota_us is None else
                                        max(int(quota_us), 1000), period_us))

    def set_cpuset(self, cpus=None, mems=None):
        self._set('cpuset.cpus', cpus or '')
        self._set('cpuset.mems', mems or '')

    def host_cpus(self):
        return _read(os.path.join(self.root(),
                                  'cpuset.cpus.effective')).strip()

    def set_pids(self, maximum):
        self._set('pids.max', 'max' if maximum is None else maximum)

    def set_devices(self, rules):
        raise CgroupError('the cgroup2 devices controller needs a BPF '
                          'program; not supported')

    def set_io(self, device, bps, iops):
        values = ' '.join('%s=%s' % (key, value or 'max') for key, value in
                          (('rbps', bps), ('wbps', bps), ('riops', iops),
                           ('wiops', iops)))
        self._set('io.max', '%s %s' % (device, values))

    def freeze(self):
        self._freeze('1')

    def thaw(self):
        self._freeze('0')

    def _freeze(self, value):
        _write(self.path('cgroup.freeze'), value)
        deadline = time.monotonic() + 10
        while self._event('frozen') != value:
            if time.monotonic() > deadline:
                raise CgroupError('%s: cgroup.freeze %s not reached'
                                  % (self.name, value))
            time.sleep(0.01)

    def _event(self, key):
        try:
            for line in _read(self.path('cgroup.events')).splitlines():
                name, _, value = line.partition(' ')
                if name == key:
                    return value
        except OSError:
            pass
        return '0'

    def frozen(self):
        return self._event('frozen') == '1'

    def usage(self):
        def number(filename):
            try:
                return int(_read(self.path(filename)).split()[0])
            except (OSError, ValueError, IndexError):
                return 0

        def event(filename, key):
            try:
                for line in _read(self.path(filename)).splitlines():
                    name, _, value = line.partition(' ')
                    if name == key:
                        return int(value)
            except (OSError, ValueError):
                pass
            return 0
        # cpu.stat counts in microseconds; vestat wants USER_HZ ticks.
        tick_usec = 1000000 // os.sysconf('SC_CLK_TCK')
        return {'memory': number('memory.current'),
                'swap': number('memory.swap.current'), 'kmem': 0,
                'memory_peak': number('memory.peak') or
                number('memory.current'),
                'memory_failcnt': event('memory.events', 'max'),
                'pids_failcnt': event('pids.events', 'max'),
                'cpu_ns': event('cpu.stat', 'usage_usec') * 1000,
                'cpu_user_ticks': event('cpu.stat', 'user_usec') // tick_usec,
                'cpu_system_ticks': event('cpu.stat',
                                          'system_usec') // tick_usec}


def layout():
    """``(class, '')`` of the usable layout, else ``(None, why not)``."""
    reasons = []
    for cls in (V1, V2):
        ok, why = cls.available()
        if ok:
            return cls, ''
        reasons.append(why)
    return None, '; '.join(reasons)


def open_group(name):
    """The group ``name`` in this machine's layout (CgroupError if none)."""
    cls, why = layout()
    if cls is None:
        raise CgroupError(why)
    return cls(name)


def names(prefix):
    """Existing groups whose names start with ``prefix`` (any layout)."""
    return sorted(set(V1.names(prefix)) | set(V2.names(prefix)))
