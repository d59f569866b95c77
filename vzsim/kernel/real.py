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

"""The real kernel backend of the simulated host: namespaces and cgroups.

A running container is a process tree on this machine:

* ``vzctl start`` forks a *supervisor* (comm ``vzsim:<CTID>``, its own
  session, outside the container's cgroups).  The supervisor unshares a PID
  namespace and a time namespace (the guest's uptime counts from its start)
  and forks the container's first process, which joins the
  container's cgroup (:mod:`vzsim.kernel.cgroups`), unshares the
  mount, UTS, IPC, network and cgroup namespaces, sets the hostname, mounts
  ``/proc``, ``/sys`` (and the container's own cgroups, read-only), a
  ``/dev`` holding only the devices it was given, ``/dev/pts`` and
  ``/dev/shm``, then ``pivot_root``\\ s into VE_ROOT and detaches the host's
  mounts.  It waits there while vzctl adds addresses, veth devices and the
  guest's configuration (as vzctl holds a container's init until its setup
  is done), then executes ``/sbin/init`` as PID 1.  When init ends, the
  supervisor removes the cgroups and records the container as stopped.
* VE_ROOT is a loop mount of the ext4 image of a ploop container
  (``root.hdd/root.hdd``) or a bind mount of a simfs private area.
* exec, enter and runscript run ``nsenter`` into init's namespaces and root
  after joining the container's cgroups.
* Limits go to the cgroup: PHYSPAGES/SWAPPAGES to memory, NUMPROC to pids,
  CPUUNITS to the CPU weight, CPULIMIT to the CFS quota, CPUS/CPUMASK/
  NODEMASK to cpuset, DEVICES/DEVNODES to the devices controller (and nodes
  in the container's /dev), IOLIMIT/IOPSLIMIT to blkio throttling of the
  device under VE_ROOT.  IOPRIO has no effect (no CFQ/BFQ weight here).
* suspend (``chkpnt --suspend``) freezes the cgroup.  A memory image cannot
  be taken on a stock kernel, so a dump file records the container's kernel
  state (addresses, veth devices, start time) and "restore" boots the
  container again from its disk with that state.
* venet: a veth pair per container, ``venet0`` inside (no ARP, the
  addresses as /32 or /128, default route through it) and
  ``venet<CTID>`` on the host with a host route per address.  NETIF veth
  pairs: ``<ifname>`` with its MAC inside, ``<host_ifname>`` on the host,
  enslaved to the bridge when one is named and exists.

The runtime state file (``DIR/var/lib/vzsim/<CTID>.json``) keeps what the
kernel would: addresses, veth names, applied limits, start time, mounted,
plus the pids of init and of the supervisor.  Whether a container runs is
always read from its cgroup; ``DIR/proc`` is rendered from the cgroups and
the process tree (:meth:`RealKernel.refresh_proc`).

Root in a container is root on this machine (no user namespace): the
containers are isolated from each other, not confined.
"""

import array
import ctypes
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import time

from vzsim import conffile
from vzsim import hostfs
from vzsim.kernel import base
from vzsim.kernel import cgroups

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWTIME = 0x80
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = {'x86_64': 155, 'aarch64': 41, 'ppc64le': 203,
                  's390x': 217, 'riscv64': 41}

PAGE_SIZE = 4096
#: Namespaces every container gets, as /proc/<pid>/ns names.
NAMESPACES = ('pid', 'mnt', 'uts', 'ipc', 'net', 'cgroup', 'time')
#: Host commands the backend runs.
TOOLS = ('nsenter', 'chroot', 'ip', 'mount', 'umount', 'losetup',
         'mkfs.ext4', 'resize2fs', 'e2fsck', 'dumpe2fs', 'fsfreeze')
#: Devices every container has: (name, type, major, minor).
BASE_DEVICES = (('null', 'c', 1, 3), ('zero', 'c', 1, 5),
                ('full', 'c', 1, 7), ('random', 'c', 1, 8),
                ('urandom', 'c', 1, 9), ('tty', 'c', 5, 0),
                ('ptmx', 'c', 5, 2))
#: Device rules besides BASE_DEVICES: pseudo terminals, and mknod of
#: anything (using a node still needs a rule).
BASE_RULES = ('c 136:* rwm', 'c *:* m', 'b *:* m')
#: Where the supervisor's name tells what it supervises.
SUPERVISOR_COMM = 'vzsim:%d'
PR_SET_NAME = 15
#: Seconds a halted container gets before its init is killed.
DEFAULT_STOP_TIMEOUT = 120
#: What a checkpoint's dump file holds, for ``simulate info`` and the docs.
DUMP_NOTE = ('dump files hold the kernel state vzctl needs to bring the '
             'container back (addresses, veth devices, start time), not a '
             'memory image: restore boots the container again from its '
             'disk, because CRIU cannot checkpoint on this kernel')
INIT_ENV = {'HOME': '/', 'TERM': 'linux',
            'PATH': '/sbin:/bin:/usr/sbin:/usr/bin'}

# vzctl's exit codes for what fails here.
E_SYSTEM = 3
E_CHKPNT = 16
E_STOP_TIMEOUT = 33
E_IP_INUSE = 78
E_DEVICES = 86
E_VETH = 130

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result, what):
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, '%s: %s' % (what, os.strerror(code)))


def _mount(source, target, fstype, flags=0, data=None):
    _check(libc().mount(source and source.encode(), target.encode(),
                        fstype and fstype.encode(), ctypes.c_ulong(flags),
                        data and data.encode()),
           'mount %s on %s' % (fstype or source, target))


# -- what this machine offers ---------------------------------------------

def probe():
    """``(True, how)`` when the real backend can run here, else why not."""
    if os.geteuid() != 0:
        return False, 'not running as root'
    layout, why = cgroups.layout()
    if layout is None:
        return False, why
    missing = [ns for ns in NAMESPACES
               if not os.path.exists('/proc/self/ns/%s' % ns)]
    if missing:
        return False, 'kernel lacks namespaces: %s' % ', '.join(missing)
    if platform.machine() not in SYS_PIVOT_ROOT:
        return False, 'pivot_root syscall unknown on %s' % platform.machine()
    tools = [t for t in TOOLS if not shutil.which(t)]
    if tools:
        return False, 'missing host tools: %s' % ', '.join(tools)
    if not os.path.exists('/dev/loop-control'):
        return False, 'no loop device support (/dev/loop-control)'
    return True, ('root, cgroup v%d, namespaces %s, loop devices'
                  % (layout.VERSION, ' '.join(NAMESPACES)))


def host_key(host):
    """A short name of ``host`` that keeps its cgroups apart."""
    return hashlib.sha1(host.root.encode()).hexdigest()[:8]


def group_prefix(host):
    return 'vzsim-%s-' % host_key(host)


def venet_name(host, ctid):
    """The host end of CT ``ctid``'s venet pair, apart from other hosts'.

    A real host has one venet0 for all its containers; here each container
    has a veth pair, and simulated hosts side by side on one machine all
    have a CT 101: the name carries the host's key (15 characters at most
    for a 10-digit CT ID).
    """
    return 'vn%s%d' % (host_key(host)[:3], ctid)


# -- small helpers -----------------------------------------------------------

def _run(argv, code=E_SYSTEM, input=None, what=None):
    """Run a host command; a failure raises KernelError(code)."""
    proc = subprocess.run(argv, input=input, capture_output=True,
                          check=False)
    if proc.returncode:
        raise base.KernelError(code, '%s: %s' % (
            what or ' '.join(argv),
            proc.stderr.decode(errors='replace').strip() or
            'exit code %d' % proc.returncode))
    return proc.stdout.decode(errors='replace')


def _process_stat(pid):
    """``(state, start ticks, comm)`` of ``pid``, or None when gone."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            text = f.read()
    except OSError:
        return None
    comm = text[text.index('(') + 1:text.rindex(')')]
    fields = text[text.rindex(')') + 2:].split()
    return fields[0], int(fields[19]), comm


def _alive(pid, comm=None):
    """``pid`` exists, is no zombie and (optionally) has name ``comm``."""
    info = pid and _process_stat(pid)
    return bool(info) and info[0] not in ('Z', 'X') and (
        comm is None or info[2] == comm)


def _boot_time():
    with open('/proc/stat') as f:
        for line in f:
            if line.startswith('btime '):
                return int(line.split()[1])
    return 0


def visible_cpuinfo(cpus, host_cpuinfo='/proc/cpuinfo'):
    """The host's ``/proc/cpuinfo`` as a container limited to ``cpus`` sees it.

    OpenVZ shows a container only its CPUS (reference: ``--cpus``, the
    number of visible CPUs), numbered from 0; here the blocks of the
    cpuset's CPUs, renumbered.
    """
    with open(host_cpuinfo) as f:
        blocks = [b for b in f.read().split('\n\n') if b.strip()]
    shown = []
    for block in blocks:
        match = re.search(r'^processor\s*:\s*(\d+)$', block, re.M)
        if match and int(match.group(1)) in cpus:
            shown.append(re.sub(r'^(processor\s*:\s*)\d+$',
                                lambda m: m.group(1) + str(len(shown)),
                                block, count=1, flags=re.M))
        elif not match:
            shown.append(block)   # not a CPU's block (s390x, arm headers)
    return ''.join(block + '\n\n' for block in shown)


def _cpu_list(text):
    """``'0-2,5'`` -> [0, 1, 2, 5]."""
    cpus = []
    for part in (text or '').split(','):
        if part.strip():
            low, _, high = part.partition('-')
            cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def _unlimited(value):
    return value in (conffile.LONG_MAX, hostfs.INT_MAX)


def _is_ipv6(address):
    return ':' in address


def _set_comm(name):
    buf = ctypes.create_string_buffer(name.encode()[:15])
    libc().prctl(PR_SET_NAME, buf, 0, 0, 0)


# -- devices -----------------------------------------------------------------

def device_rules(config):
    """``(cgroup rules, [(name, type, major, minor)] nodes)`` of config.

    BASE_DEVICES always; DEVICES entries ``b|c:major:minor|all:perm`` as
    rules; DEVNODES ``name:perm`` as rules and nodes copied from the
    host's /dev.
    """
    rules = ['%s %d:%d rwm' % (kind, major, minor)
             for _, kind, major, minor in BASE_DEVICES]
    rules += BASE_RULES
    nodes = list(BASE_DEVICES)

    def access(perm):
        return ''.join(c for c in perm if c in 'rw') or None
    for entry in (config.get('DEVICES') or '').split():
        parts = entry.split(':')
        if len(parts) == 4 and access(parts[3]):
            minor = '*' if parts[2] == 'all' else parts[2]
            rules.append('%s %s:%s %s' % (parts[0], parts[1], minor,
                                          access(parts[3])))
    for entry in (config.get('DEVNODES') or '').split():
        name, _, perm = entry.rpartition(':')
        try:
            info = os.stat(os.path.join('/dev', name))
        except OSError:
            raise base.KernelError(E_DEVICES, 'Unable to find device /dev/%s'
                                   % name)
        if not (stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)):
            raise base.KernelError(E_DEVICES,
                                   '/dev/%s is not a device' % name)
        kind = 'c' if stat.S_ISCHR(info.st_mode) else 'b'
        major, minor = os.major(info.st_rdev), os.minor(info.st_rdev)
        if access(perm):
            rules.append('%s %d:%d %s' % (kind, major, minor, access(perm)))
        nodes.append((name, kind, major, minor))
    return rules, nodes


def make_node(dev_dir, name, kind, major, minor):
    path = os.path.join(dev_dir, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    mode = (stat.S_IFCHR if kind == 'c' else stat.S_IFBLK) | 0o666
    os.mknod(path, mode, os.makedev(major, minor))
    os.chmod(path, 0o666)


# -- the container's first process -------------------------------------------

def _populate(root, layout, nodes, cpuinfo):
    """Mount what the host gives a container under ``root``."""
    def at(relative):
        path = os.path.join(root, relative)
        os.makedirs(path, exist_ok=True)
        return path
    _mount('proc', at('proc'), 'proc', MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # Only the container's CPUs, from a host file vzctl set rewrites live.
    _mount(cpuinfo, os.path.join(root, 'proc', 'cpuinfo'), None, MS_BIND)
    _mount(None, os.path.join(root, 'proc', 'cpuinfo'), None,
           MS_BIND | MS_REMOUNT | MS_RDONLY)
    _mount('sysfs', at('sys'), 'sysfs',
           MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    dev = at('dev')
    _mount('tmpfs', dev, 'tmpfs', MS_NOSUID | MS_NOEXEC,
           'mode=755,size=65536k')
    for node in nodes:
        make_node(dev, *node)
    os.unlink(os.path.join(dev, 'ptmx'))
    os.symlink('pts/ptmx', os.path.join(dev, 'ptmx'))
    for name, target in (('fd', '/proc/self/fd'), ('stdin', '/proc/self/fd/0'),
                         ('stdout', '/proc/self/fd/1'),
                         ('stderr', '/proc/self/fd/2')):
        os.symlink(target, os.path.join(dev, name))
    _mount('devpts', at('dev/pts'), 'devpts', MS_NOSUID | MS_NOEXEC,
           'newinstance,ptmxmode=0666,mode=0620')
    _mount('shm', at('dev/shm'), 'tmpfs', MS_NOSUID | MS_NODEV,
           'mode=1777,size=65536k')
    # The container's own cgroups (it is their root), read-only: a
    # container must not raise its own limits.
    cgroup_root = at('sys/fs/cgroup')
    flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    if layout.VERSION == 2:
        _mount('cgroup2', cgroup_root, 'cgroup2', flags)
        return
    _mount('cgroup', cgroup_root, 'tmpfs', MS_NOSUID | MS_NODEV | MS_NOEXEC,
           'mode=755')
    for controller in layout.controllers():
        _mount('cgroup', at(os.path.join(cgroup_root, controller)), 'cgroup',
               flags, controller)
    _mount(None, cgroup_root, None, flags | MS_REMOUNT)


def _pivot(root):
    """Make ``root`` the root and drop every host mount from view."""
    os.chdir(root)
    number = SYS_PIVOT_ROOT[platform.machine()]
    _check(libc().syscall(number, b'.', b'.'), 'pivot_root')
    _check(libc().umount2(b'.', MNT_DETACH), 'umount old root')
    os.chdir('/')


def _container_process(spec, report, go):
    """PID 1 of the container: set up, wait for vzctl, become init."""
    try:
        group = cgroups.open_group(spec['group'])
        group.join()
        _check(libc().unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
                              CLONE_NEWNET | CLONE_NEWCGROUP), 'unshare')
        _mount(None, '/', None, MS_REC | MS_PRIVATE)
        socket.sethostname(spec['hostname'])
        _populate(spec['root'], type(group),
                  [tuple(node) for node in spec['nodes']], spec['cpuinfo'])
        _pivot(spec['root'])
        os.write(report, b'ready\n')
        while os.read(go, 64):
            pass   # vzctl closes its end once the setup is done
        try:
            os.execve('/sbin/init', ['init'], INIT_ENV)
        except OSError as exc:
            raise OSError(exc.errno, 'cannot execute /sbin/init (or its '
                                     'interpreter): %s' % exc.strerror)
    except BaseException as exc:   # noqa: B902 - report whatever it was
        try:
            os.write(report, ('error %s\n' % exc).encode())
        finally:
            os._exit(1)


def _supervise(host_root, ctid, spec, report, go):
    """The supervisor: start the container, wait for it, clean up."""
    os.setsid()
    _set_comm(SUPERVISOR_COMM % ctid)
    # The console: init reads what is typed on it (the FIFO, held open
    # here so that it never ends) and writes to the console file.
    typed = os.open(spec['console_input'], os.O_RDWR)
    console = os.open(spec['console'], os.O_WRONLY | os.O_CREAT |
                      os.O_APPEND, 0o600)
    for fd, source in ((0, typed), (1, console), (2, console)):
        os.dup2(source, fd)
    keep = {0, 1, 2, report, go}
    for fd in os.listdir('/proc/self/fd'):
        if int(fd) not in keep:
            try:
                os.close(int(fd))
            except OSError:
                pass
    _check(libc().unshare(CLONE_NEWPID | CLONE_NEWTIME), 'unshare pid, time')
    # The guest's boot clock starts near zero, so /proc/uptime inside
    # counts from the container's start, as vzlist's uptime does.
    with open('/proc/self/timens_offsets', 'w') as f:
        f.write('boottime %d 0\n'
                % -int(time.clock_gettime(time.CLOCK_BOOTTIME)))
    pid = os.fork()
    if pid == 0:
        _container_process(spec, report, go)
    os.write(report, b'pid %d\n' % pid)
    os.close(report)
    os.close(go)
    os.waitpid(pid, 0)
    RealKernel(hostfs.Host(host_root)).reap(ctid, pid)


# -- the backend -------------------------------------------------------------

class RealKernel(base.Kernel):
    """Containers as namespaced, cgroup-limited process trees."""

    real = True

    def __init__(self, host):
        super().__init__(host)
        self._held = {}    # ctid -> (report fd, go fd) until finish_start

    # -- names and records -------------------------------------------------

    def group(self, ctid):
        return cgroups.open_group('%s%d' % (group_prefix(self.host), ctid))

    def _state(self, ctid):
        return self.host.runtime(ctid)

    def _save(self, ctid, state):
        self.host.save_runtime(ctid, state)

    def _update(self, ctid, **changes):
        state = self._state(ctid)
        state.update(changes)
        self._save(ctid, state)
        return state

    def cpuinfo_path(self, ctid):
        """The container's ``/proc/cpuinfo`` (bound over it at start)."""
        return os.path.join(self.host.state_dir, '%d.cpuinfo' % ctid)

    def forget(self, ctid):
        try:
            os.unlink(self.cpuinfo_path(ctid))
        except FileNotFoundError:
            pass
        super().forget(ctid)

    def init_pid(self, ctid):
        """Host pid of the container's PID 1 (KernelError when none)."""
        pid = self._state(ctid).get('init_pid')
        pids = self.group(ctid).pids()
        if pid in pids:
            return pid
        for candidate in pids:
            try:
                with open('/proc/%d/status' % candidate) as f:
                    for line in f:
                        if line.startswith('NSpid:') and \
                                line.split()[-1] == '1':
                            return candidate
            except OSError:
                continue
        raise base.KernelError(31, 'Container is not running')

    # -- state ---------------------------------------------------------------

    def is_running(self, ctid):
        return bool(self.group(ctid).pids())

    def is_frozen(self, ctid):
        group = self.group(ctid)
        return bool(group.pids()) and group.frozen()

    def is_mounted(self, ctid):
        root = self.host.ve_root(ctid)
        return bool(root) and is_mount_point(root)

    # -- filesystem ----------------------------------------------------------

    def mount(self, ctid, source, target):
        os.makedirs(target, exist_ok=True)
        if os.path.islink(target) or os.listdir(target):
            raise base.KernelError(50, 'Unable to mount %s: mount point is '
                                   'not empty' % target)
        if os.path.isfile(source):
            loop_mount(source, target)
        else:
            _run(['mount', '--bind', source, target], code=50)
        self._update(ctid, mounted=True)

    def umount(self, ctid, target):
        umount(target)
        os.makedirs(target, 0o755, exist_ok=True)
        self._update(ctid, mounted=False)

    # -- lifecycle -----------------------------------------------------------

    def _wait_supervisor(self, state, timeout=15.0):
        pid = state.get('supervisor_pid')
        comm = SUPERVISOR_COMM % state.get('ctid', 0)
        deadline = time.monotonic() + timeout
        while pid and _alive(pid, comm[:15]) and \
                time.monotonic() < deadline:
            time.sleep(0.02)

    def start(self, ctid, config):
        state = self._state(ctid)
        self._wait_supervisor(state)
        root = self.host.ve_root(ctid, config)
        group = self.group(ctid)
        try:
            group.remove()   # a leftover of a container that died unseen
            group.create()
        except (cgroups.CgroupError, OSError) as exc:
            raise base.KernelError(E_SYSTEM, 'Unable to create the cgroups '
                                   'of CT %d: %s' % (ctid, exc))
        try:
            self._apply_limits(ctid, group, config)
            spec = {'group': group.name, 'root': root,
                    'hostname': config.get('HOSTNAME') or 'localhost',
                    'nodes': device_rules(config)[1],
                    'console': self.console_path(ctid),
                    'console_input': self.console_input_path(ctid),
                    'cpuinfo': self.cpuinfo_path(ctid)}
            if not os.path.exists(spec['console_input']):
                os.mkfifo(spec['console_input'], 0o600)
            init_pid, supervisor = self._spawn(ctid, spec)
        except BaseException:
            group.remove()
            raise
        ticks = (_process_stat(init_pid) or (None, 0))[1]
        state.update(running=True, frozen=False, ips=[], veth=[],
                     init_pid=init_pid, supervisor_pid=supervisor,
                     ctid=ctid, numproc=1, held={}, failcnt={},
                     start_time=_boot_time() + ticks / os.sysconf(
                         'SC_CLK_TCK'))
        base.record_resources(state, config)
        self._save(ctid, state)

    def _spawn(self, ctid, spec):
        """Fork the supervisor; return ``(init pid, supervisor pid)``."""
        report_r, report_w = os.pipe()
        go_r, go_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        supervisor = os.fork()
        if supervisor == 0:
            try:
                os.close(report_r)
                os.close(go_w)
                _supervise(self.host.root, ctid, spec, report_w, go_r)
            finally:
                os._exit(0)
        os.close(report_w)
        os.close(go_r)
        # The supervisor says init's pid, the container process "ready"
        # (in either order), or either of them what went wrong.
        reader = os.fdopen(report_r, 'rb')
        init_pid, ready, error = None, False, None
        while error is None and not (ready and init_pid):
            line = reader.readline().decode(errors='replace').strip()
            if line.startswith('pid '):
                init_pid = int(line.split()[1])
            elif line == 'ready':
                ready = True
            else:
                error = line[6:] if line.startswith('error ') else \
                    'the container process ended during setup'
        if error is not None:
            os.close(go_w)
            reader.close()
            raise base.KernelError(E_SYSTEM, 'Unable to start init: %s'
                                   % error)
        self._held[ctid] = (reader, go_w)
        return init_pid, supervisor

    def finish_start(self, ctid):
        held = self._held.pop(ctid, None)
        if held is None:
            return
        reader, go = held
        os.close(go)
        rest = reader.read().decode(errors='replace').strip()
        reader.close()
        if rest:
            raise base.KernelError(E_SYSTEM, 'Unable to start init: %s'
                                   % rest.replace('error ', '', 1))

    def _stop_timeout(self, ctid):
        try:
            return int(self.host.setting(ctid, 'STOP_TIMEOUT') or
                       DEFAULT_STOP_TIMEOUT)
        except ValueError:
            return DEFAULT_STOP_TIMEOUT

    def stop(self, ctid, fast=False):
        group = self.group(ctid)
        # A container whose start failed has no init to halt yet.
        held = self._held.pop(ctid, None)
        if not fast and not held and group.pids() and not group.frozen():
            self._halt(ctid)
            group.wait_empty(self._stop_timeout(ctid))
        if group.pids():
            self._kill(ctid, group)
            if not group.wait_empty(10):
                raise base.KernelError(E_STOP_TIMEOUT, 'Unable to stop '
                                       'container: operation timed out')
        if held:
            os.close(held[1])
            held[0].close()
        self.reap(ctid)
        self._wait_supervisor(self._state(ctid))

    def _halt(self, ctid):
        """What vzctl does to halt a container: run halt inside."""
        try:
            code = self.exec(ctid, None, 'halt', quiet=True)
        except base.KernelError:
            code = 1
        if code:
            try:
                os.kill(self.init_pid(ctid), signal.SIGTERM)
            except (OSError, base.KernelError):
                pass

    def _kill(self, ctid, group):
        for pid in group.pids():
            _signal(pid, signal.SIGKILL)
        if group.frozen():
            group.thaw()   # frozen tasks only die once thawed

    def reap(self, ctid, init_pid=None):
        """Forget a container whose init is gone (supervisor or stop)."""
        state = self._state(ctid)
        if init_pid is not None and state.get('init_pid') != init_pid:
            return   # a newer start owns the record
        group = self.group(ctid)
        if not group.wait_empty(10):
            return
        try:
            group.remove()
        except cgroups.CgroupError:
            pass
        for name in state['veth'] + [venet_name(self.host, ctid)]:
            _delete_link(name)
        state.update(running=False, frozen=False, start_time=None,
                     numproc=0, ips=[], veth=[], ubc={}, cpu={}, held={},
                     init_pid=None)
        self._save(ctid, state)
        self.refresh_proc()

    def freeze(self, ctid):
        try:
            self.group(ctid).freeze()
        except cgroups.CgroupError as exc:
            raise base.KernelError(E_CHKPNT, 'Unable to freeze: %s' % exc)
        self._update(ctid, frozen=True)
        # What a frozen container wrote is on its disk: a copy taken now
        # (snapshot, migration) is consistent.
        root = self.host.ve_root(ctid)
        if root and is_mount_point(root):
            fd = os.open(root, os.O_RDONLY)
            try:
                libc().syncfs(fd)
            finally:
                os.close(fd)

    def thaw(self, ctid):
        try:
            self.group(ctid).thaw()
        except cgroups.CgroupError as exc:
            raise base.KernelError(E_CHKPNT, 'Unable to resume: %s' % exc)
        self._update(ctid, frozen=False)

    def dump(self, ctid, dumpfile):
        state = self._state(ctid)
        os.makedirs(os.path.dirname(dumpfile), exist_ok=True)
        hostfs.write_atomic(dumpfile, json.dumps(
            {'vzsim-dump': 1, 'ctid': ctid, 'model': DUMP_NOTE,
             'state': {key: state[key] for key in
                       ('ips', 'veth', 'start_time')}}))

    def restore(self, ctid, dumpfile):
        saved = base.read_dump(ctid, dumpfile)
        self._check_ips_free(ctid, saved.get('ips', []))
        config = self.host.read_config(ctid)
        self.start(ctid, config)
        try:
            self.add_ips(ctid, saved.get('ips', []))
            devices = conffile.netif_devices(config.get('NETIF'))
            self.add_veth(ctid, [d for d in devices
                                 if d.get('host_ifname') in
                                 saved.get('veth', [])])
            self.finish_start(ctid)
        except BaseException:
            self.stop(ctid, fast=True)
            raise

    # -- live settings -----------------------------------------------------

    def apply_resources(self, ctid, config):
        state = self._state(ctid)
        self._apply_limits(ctid, self.group(ctid), config,
                           old=state.get('cpu') or {})
        base.record_resources(state, config)
        self._save(ctid, state)
        self.refresh_proc()

    def _apply_limits(self, ctid, group, config, old=None):
        ubc = hostfs.effective_ubc(config)
        ram = ubc['physpages'][1]
        swap = ubc['swappages'][1]
        numproc = ubc['numproc'][1]
        try:
            group.set_memory(None if _unlimited(ram) else ram * PAGE_SIZE,
                             None if _unlimited(swap) else swap * PAGE_SIZE)
            group.set_pids(None if _unlimited(numproc) else numproc)
            units = int(config.get('CPUUNITS') or 1000)
            limit = int(config.get('CPULIMIT') or 0)
            group.set_cpu(units * 1024 // 1000, limit * 1000 or None)
            cpus, mems = self._cpuset(group, config)
            group.set_cpuset(cpus, mems)
            # Rewritten in place: a running container's bind mount of it
            # shows the new CPUs at once.
            with open(self.cpuinfo_path(ctid), 'w') as f:
                f.write(visible_cpuinfo(_cpu_list(cpus)))
            rules, nodes = device_rules(config)
            group.set_devices(rules)
            if old is not None:
                self._sync_nodes(ctid, old, nodes)
            self._set_io(ctid, group, config)
        except (cgroups.CgroupError, ValueError, OSError) as exc:
            raise base.KernelError(E_SYSTEM, 'Unable to apply resource '
                                   'limits: %s' % exc)

    @staticmethod
    def _cpuset(group, config):
        host = _cpu_list(group.host_cpus())
        mask = config.get('CPUMASK')
        allowed = host if mask in (None, '', 'all', 'auto') else \
            [c for c in _cpu_list(mask) if c in host] or host
        count = int(config.get('CPUS') or 0)
        if count:
            allowed = allowed[:count]
        nodes = config.get('NODEMASK')
        return (','.join(str(c) for c in allowed),
                None if nodes in (None, '', 'all') else nodes)

    def _sync_nodes(self, ctid, old, nodes):
        """Create DEVNODES in a running container's /dev; drop removed."""
        try:
            dev = '/proc/%d/root/dev' % self.init_pid(ctid)
        except base.KernelError:
            return
        for name, kind, major, minor in nodes:
            if not os.path.exists(os.path.join(dev, name)):
                make_node(dev, name, kind, major, minor)
        kept = {node[0] for node in nodes}
        for entry in (old.get('DEVNODES') or '').split():
            name = entry.rpartition(':')[0]
            if name not in kept and os.path.lexists(os.path.join(dev, name)):
                os.unlink(os.path.join(dev, name))

    def _set_io(self, ctid, group, config):
        root = self.host.ve_root(ctid, config)
        try:
            device = os.stat(root).st_dev
        except (OSError, TypeError):
            return
        if os.major(device) == 0:
            return   # no block device under VE_ROOT (tmpfs, overlay...)
        bps = int(config.get('IOLIMIT') or 0)
        iops = int(config.get('IOPSLIMIT') or 0)
        try:
            group.set_io('%d:%d' % (os.major(device), os.minor(device)),
                         bps, iops)
        except cgroups.CgroupError:
            if bps or iops:
                raise

    # -- venet -------------------------------------------------------------

    def _check_ips_free(self, ctid, ips):
        for other, state in self.host.running_states():
            if other != ctid and self.is_running(other):
                taken = set(state['ips']) & set(ips)
                if taken:
                    raise base.KernelError(
                        E_IP_INUSE, 'Unable to add IP %s: Address already '
                                    'in use' % sorted(taken)[0])

    def add_ips(self, ctid, ips):
        state = self._state(ctid)
        new = [ip for ip in ips if ip not in state['ips']]
        if not new:
            return
        self._check_ips_free(ctid, new)
        pid = self.init_pid(ctid)
        host_dev = venet_name(self.host, ctid)
        if not os.path.exists('/sys/class/net/%s' % host_dev):
            mac = base.generated_mac(ctid, 'venet')
            _run(['ip', 'link', 'add', host_dev, 'address', mac, 'type',
                  'veth', 'peer', 'name', 'venet0', 'address', mac,
                  'netns', str(pid)], code=E_IP_INUSE)
            _run(['ip', 'link', 'set', host_dev, 'arp', 'off', 'up'])
            _ip_batch(pid, ['link set venet0 arp off up',
                            'route replace default dev venet0'])
        inside, outside = [], []
        for ip in new:
            prefix = '/128' if _is_ipv6(ip) else '/32'
            inside.append('address add %s%s dev venet0' % (ip, prefix))
            if _is_ipv6(ip):
                inside.append('route replace ::/0 dev venet0')
            outside.append('route replace %s%s dev %s' % (ip, prefix,
                                                          host_dev))
        _ip_batch(pid, inside)
        _ip_batch(None, outside)
        state['ips'] += new
        self._save(ctid, state)
        self.refresh_proc()

    def del_ips(self, ctid, ips=None):
        state = self._state(ctid)
        gone = [ip for ip in state['ips'] if ips is None or ip in ips]
        if gone and self.is_running(ctid):
            pid = self.init_pid(ctid)
            _ip_batch(pid, ['address del %s%s dev venet0' % (
                ip, '/128' if _is_ipv6(ip) else '/32') for ip in gone],
                check=False)
            _ip_batch(None, ['route del %s%s dev %s' % (
                ip, '/128' if _is_ipv6(ip) else '/32',
                venet_name(self.host, ctid)) for ip in gone], check=False)
        state['ips'] = [ip for ip in state['ips'] if ip not in gone]
        self._save(ctid, state)
        self.refresh_proc()

    def ips(self, ctid):
        return list(self._state(ctid)['ips'])

    # -- veth ----------------------------------------------------------------

    def add_veth(self, ctid, devices):
        state = self._state(ctid)
        pid = self.init_pid(ctid)
        for device in devices:
            name, ifname = device['host_ifname'], device['ifname']
            bridge = device.get('bridge')
            if bridge and not os.path.isdir('/sys/class/net/%s/bridge'
                                            % bridge):
                # vzctl's bridge script (vznetcfg) ignores a failed
                # "brctl addif": brctl's message, an unbridged device.
                sys.stderr.write('bridge %s does not exist!\n' % bridge)
                bridge = None
            if not os.path.exists('/sys/class/net/%s' % name):
                _run(['ip', 'link', 'add', name, 'address',
                      device['host_mac'], 'type', 'veth', 'peer', 'name',
                      ifname, 'address', device['mac'], 'netns', str(pid)],
                     code=E_VETH)
            else:
                _run(['ip', 'link', 'set', name, 'address',
                      device['host_mac']], code=E_VETH)
                _ip_batch(pid, ['link set %s address %s'
                                % (ifname, device['mac'])], code=E_VETH)
            _run(['ip', 'link', 'set', name] +
                 (['master', bridge] if bridge else ['nomaster']) + ['up'],
                 code=E_VETH)
            _checksum_in_software(ctid, pid, ifname)
            if name not in state['veth']:
                state['veth'].append(name)
        self._save(ctid, state)

    def del_veth(self, ctid, host_ifnames):
        state = self._state(ctid)
        for name in host_ifnames:
            _delete_link(name)
        state['veth'] = [n for n in state['veth'] if n not in host_ifnames]
        self._save(ctid, state)

    # -- inside the container ------------------------------------------------

    def exec(self, ctid, root, command, stdin=None, quiet=False):
        """Run ``command`` with /bin/sh -c inside (chrooted when stopped)."""
        argv = ['/bin/sh'] if command is None else ['/bin/sh', '-c', command]
        group = None
        if self.is_frozen(ctid):
            # Joining its cgroup would freeze the command too.
            raise base.KernelError(E_SYSTEM, 'Unable to run a command in '
                                   'CT %s: it is suspended' % ctid)
        if self.is_running(ctid):
            group = self.group(ctid)
            argv = ['nsenter', '--target', str(self.init_pid(ctid)),
                    '--mount', '--uts', '--ipc', '--net', '--pid',
                    '--cgroup', '--time', '--root', '--wd', '--'] + argv
        elif root is None or not os.path.lexists(os.path.join(root, 'bin',
                                                              'sh')):
            raise base.KernelError(E_SYSTEM, 'Unable to run a command in '
                                   'CT %s: no /bin/sh' % ctid)
        else:
            argv = ['chroot', root] + argv

        def enter():
            if group is not None:
                group.join()
        sys.stdout.flush()
        sys.stderr.flush()
        extra = {'stdout': subprocess.DEVNULL,
                 'stderr': subprocess.DEVNULL} if quiet else {}
        try:
            proc = subprocess.run(argv, env=base.EXEC_ENV,
                                  preexec_fn=enter, input=stdin,
                                  check=False, **extra)
        except (OSError, subprocess.SubprocessError) as exc:
            raise base.KernelError(E_SYSTEM, 'Unable to run a command in '
                                   'CT %s: %s' % (ctid, exc))
        code = proc.returncode
        return 128 - code if code < 0 else code

    def set_hostname(self, ctid, hostname):
        if hostname and self.is_running(ctid):
            _run(['nsenter', '--target', str(self.init_pid(ctid)), '--uts',
                  'hostname', hostname])

    # -- /proc ---------------------------------------------------------------

    def _usage(self, ctid, state):
        """Real held values of a running container, or None when down."""
        group = self.group(ctid)
        pids = group.pids()
        if not pids:
            return None
        usage = group.usage()
        privvm = files = 0
        for pid in pids:
            try:
                with open('/proc/%d/status' % pid) as f:
                    for line in f:
                        if line.startswith('VmSize:'):
                            privvm += int(line.split()[1]) // 4
                files += len(os.listdir('/proc/%d/fd' % pid))
            except OSError:
                continue
        physpages = usage['memory'] // PAGE_SIZE
        swappages = usage['swap'] // PAGE_SIZE
        held = {'numproc': len(pids), 'physpages': physpages,
                'swappages': swappages, 'oomguarpages': physpages + swappages,
                'privvmpages': privvm, 'kmemsize': usage['kmem'],
                'numfile': files, 'dcachesize': 0}
        return dict(state, numproc=len(pids), held=held, failcnt=dict(
            state.get('failcnt') or {}, physpages=usage['memory_failcnt'],
            numproc=usage['pids_failcnt']),
            maxheld={'physpages': usage['memory_peak'] // PAGE_SIZE},
            cpustat={'user': usage['cpu_user_ticks'], 'nice': 0,
                     'system': usage['cpu_system_ticks'],
                     'used_ns': usage['cpu_ns']})

    def running_states(self):
        """``[(ctid, state with real usage)]`` of running containers."""
        found = []
        for ctid, state in self.host.running_states():
            real = self._usage(ctid, state)
            if real is not None:
                found.append((ctid, real))
        return found

    def refresh_proc(self):
        hostfs.write_proc(self.host.proc_dir, self.running_states())


def _ip_batch(pid, commands, code=E_SYSTEM, check=True):
    """``ip -batch`` of ``commands`` on the host (pid None) or in a CT."""
    if not commands:
        return
    argv = ['ip', '-force', '-batch', '-']
    if pid is not None:
        argv = ['nsenter', '--target', str(pid), '--net'] + argv
    text = ''.join(line + '\n' for line in commands).encode()
    if check:
        _run(argv, code=code, input=text, what='ip: %s' % '; '.join(commands))
    else:
        subprocess.run(argv, input=text, capture_output=True, check=False)


SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17


def _checksum_in_software(ctid, pid, ifname):
    """Have the container's kernel checksum what ``ifname`` sends.

    A veth leaves TCP and UDP checksums to be filled in later (transmit
    offload).  A kernel bridge or Open vSwitch's kernel datapath carries
    that along; the userspace switch of the one-machine cloud and of the
    functional tests reads the frames from a packet socket and forwards
    them as they are, so the receiver drops them: ping works, TCP does
    not.  With the offload off the guest's frames are complete.
    """
    child = os.fork()
    if child == 0:
        try:
            fd = os.open('/proc/%d/ns/net' % pid, os.O_RDONLY)
            _check(libc().setns(fd, CLONE_NEWNET), 'setns')
            value = array.array('I', [ETHTOOL_STXCSUM, 0])
            request = struct.pack('16sP', ifname.encode(),
                                  value.buffer_info()[0])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                fcntl.ioctl(sock, SIOCETHTOOL, request)
            os._exit(0)
        except BaseException:   # noqa: B902 - the exit code says it
            os._exit(1)
    if os.waitpid(child, 0)[1]:
        raise base.KernelError(E_VETH, 'Unable to turn off transmit '
                               'checksum offload of %s in CT %d'
                               % (ifname, ctid))


def _delete_link(name):
    if os.path.exists('/sys/class/net/%s' % name):
        subprocess.run(['ip', 'link', 'del', name], capture_output=True,
                       check=False)


# -- filesystems -------------------------------------------------------------

def _mount_source(target):
    """``(source device, fstype)`` mounted at ``target`` (the last one).

    ``(None, None)`` when it is no mount point; bind mounts count.
    """
    found = (None, None)
    target = os.path.realpath(target)
    with open('/proc/self/mountinfo') as f:
        for line in f:
            fields = line.split()
            if fields[4] == target:
                rest = fields[fields.index('-') + 1:]
                found = (rest[1], rest[0])
    return found


def is_mount_point(path):
    return _mount_source(path)[1] is not None


def loop_mount(image, target, readonly=False):
    """Mount the ext4 image ``image`` on ``target`` through a loop device.

    ``mount -o loop`` sets the loop device to free itself on umount.
    """
    options = 'loop,ro,noload' if readonly else 'loop'
    _run(['mount', '-t', 'ext4', '-o', options, image, target], code=50,
         what='mount %s' % image)


def umount(target):
    """Unmount ``target`` if it is a mount point (retrying while busy).

    Mounts below it go first, as with vzctl (see
    :func:`base.unmount_below`).
    """
    base.unmount_below(target)
    deadline = time.monotonic() + 10
    while is_mount_point(target):
        proc = subprocess.run(['umount', target], capture_output=True,
                              check=False)
        if proc.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise base.KernelError(51, 'Unable to unmount %s: %s' % (
                target, proc.stderr.decode(errors='replace').strip()))
        time.sleep(0.1)


def leftovers(host, ctids=()):
    """What the real backend holds for ``host``, for hygiene checks.

    ``{'cgroups', 'mounts', 'loops', 'links', 'processes'}``, each a sorted
    list: the cgroups of its containers, mounts and loop devices under its
    tree, host network devices of the containers ``ctids``, and processes
    in its containers' cgroups or supervising them.
    """
    prefix = group_prefix(host)
    under = host.root + '/'
    with open('/proc/self/mountinfo') as f:
        mounts = [line.split()[4] for line in f
                  if line.split()[4].startswith(under)]
    loops = []
    for name in os.listdir('/sys/block'):
        try:
            with open('/sys/block/%s/loop/backing_file' % name) as f:
                if f.read().startswith(under):
                    loops.append('/dev/' + name)
        except OSError:
            continue
    links = [name for name in os.listdir('/sys/class/net')
             for ctid in ctids
             if name == venet_name(host, ctid) or
             name.startswith('veth%d.' % ctid)]
    supervisors = {(SUPERVISOR_COMM % ctid)[:15] for ctid in ctids}
    processes = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cgroup' % entry) as f:
                inside = '/' + prefix in f.read()
        except OSError:
            continue
        info = _process_stat(int(entry))
        if not info or info[0] == 'Z':
            continue   # gone, or a zombie: it holds nothing but its pid
        if inside or (info[2] in supervisors and
                      _started_by(int(entry), host)):
            processes.append(int(entry))
    return {'cgroups': cgroups.names(prefix), 'mounts': sorted(mounts),
            'loops': sorted(loops), 'links': sorted(links),
            'processes': sorted(processes)}


def _started_by(pid, host):
    """Whether ``pid`` was forked by this host's own vzctl.

    Every host names its supervisors ``vzsim:<CTID>``, and two hosts (two
    test workers) can both have a CT 101; the supervisor's command line is
    the vzctl wrapper's, which names its host tree.
    """
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            argv = f.read().split(b'\0')
    except OSError:
        return False
    tools = os.path.join(host.root, 'usr', 'sbin', '').encode()
    return any(word.startswith(tools) for word in argv)


def clean(host, ctids=()):
    """Remove whatever the real backend still holds for ``host``.

    For teardown (a test host, a sandbox) whatever state the containers
    are in: their processes are killed, mounts under the tree lazily
    unmounted, loop devices detached, network devices of ``ctids`` and of
    the host's containers deleted, cgroups removed.  Returns what was
    found, as :func:`leftovers` does.
    """
    known = set(ctids) | set(host.ctids())
    left = leftovers(host, known)
    groups = [cgroups.open_group(name) for name in left['cgroups']]
    for group in groups:
        for pid in group.pids():
            _signal(pid, signal.SIGKILL)
        if group.frozen():
            group.thaw()   # frozen tasks only die once thawed
    for pid in left['processes']:
        _signal(pid, signal.SIGKILL)
    for point in reversed(left['mounts']):
        subprocess.run(['umount', '-l', point], capture_output=True,
                       check=False)
    for device in left['loops']:
        subprocess.run(['losetup', '-d', device], capture_output=True,
                       check=False)
    for name in left['links']:
        _delete_link(name)
    for group in groups:
        try:
            group.remove()
        except cgroups.CgroupError:
            pass
    return left


def _signal(pid, number):
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def describe():
    """``[(label, text)]`` about this backend, for ``simulate info``."""
    from vzsim.kernel import ploop
    layout = cgroups.layout()[0]
    return [('cgroups', 'v%d' % layout.VERSION),
            ('online disk growth', 'yes (resize2fs on the loop device)'
             if ploop.can_resize_online() else
             'no: this host lacks CAP_SYS_RESOURCE, so DISKSPACE of a '
             'running ploop container cannot grow (stop it first)'),
            ('checkpoint', DUMP_NOTE)]
