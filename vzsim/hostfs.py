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

"""The simulated host's tree, container state and the common tool harness.

Every simulated tool (vzctl, vzlist, ploop, vzmigrate) is a short-lived
Python process working on one host directory ``DIR``.  This module is what
they share:

* :class:`Host` -- the paths of the tree (taken from ``DIR/etc/vz/vz.conf``,
  whose paths are absolute paths into ``DIR``), container enumeration from
  ``conf/<CTID>.conf``, per-container config read/save through
  :mod:`vzsim.conffile`, name links in ``etc/vz/names``, and the runtime
  state of the simulated kernel (one JSON file per container under
  ``DIR/var/lib/vzsim``, see :data:`RUNTIME_DEFAULTS`; read it with
  :meth:`Host.runtime` / :meth:`Host.running_states`) from which
  ``DIR/proc/vz/veinfo``, ``DIR/proc/vz/vestat`` and
  ``DIR/proc/user_beancounters`` are regenerated
  (:meth:`Host.refresh_proc`).  Only the kernel back ends
  (:mod:`vzsim.kernel`) should change that state.
* :class:`CTLock` -- vzctl's per-container lock ``$LOCKDIR/<CTID>.lck``.
* :class:`Output` -- vzctl's message streams (info on stdout, errors on
  stderr, ``--quiet`` silences both, everything goes to LOGFILE).
* :class:`ToolError` -- raise it anywhere to end a tool with an exit code.
* :func:`run_tool` -- the harness around every tool's ``main``: latency
  injection (``DIR/sim/latency.json``), fault injection
  (``DIR/sim/faults.json``) and the call log (``DIR/sim/calls.log``), in the
  formats of doc/source/contributor/design.rst.

Standard library only, and no work at import time: tools start often.
"""

import fcntl
import json
import os
import re
import sys
import time

from vzsim import conffile

#: Highest CTID vzctl accepts (VEID_MAX).
VEID_MAX = 2147483644
#: Characters vzctl allows in a container name.
NAME_RE = re.compile(r'^[A-Za-z0-9 +_.-]+$')
#: Per-container action scripts that destroy renames to ``*.destroyed``.
ACTION_SCRIPTS = ('mount', 'umount', 'premount', 'postumount', 'start',
                  'stop')
#: Rows of /proc/user_beancounters in kernel order, placeholders included.
BEANCOUNTER_ROWS = (
    'kmemsize', 'lockedpages', 'privvmpages', 'shmpages', 'dummy', 'numproc',
    'physpages', 'vmguarpages', 'oomguarpages', 'numtcpsock', 'numflock',
    'numpty', 'numsiginfo', 'tcpsndbuf', 'tcprcvbuf', 'othersockbuf',
    'dgramrcvbuf', 'numothersock', 'dcachesize', 'numfile', 'dummy', 'dummy',
    'dummy', 'numiptent', 'swappages')
#: The real beancounters, lower-case as in /proc and vzlist.
UBC_NAMES = tuple(name for name in BEANCOUNTER_ROWS if name != 'dummy')
#: A 32-bit "unlimited" that, like LONG_MAX, means "no VSwap" in PHYSPAGES.
INT_MAX = 2147483647

#: What a container's runtime state holds when nothing was recorded.
RUNTIME_DEFAULTS = {
    'running': False,     # init is up (listed in /proc/vz/veinfo)
    'frozen': False,      # chkpnt --suspend: still running, but frozen
    'mounted': False,     # VE_ROOT shows the container's filesystem
    'start_time': None,   # time.time() at start, for uptime
    'ips': [],            # venet addresses in the order they were added
    'numproc': 0,         # processes inside, veinfo column 3
    'ubc': {},            # applied beancounters: name -> [barrier, limit]
    'held': {},           # overrides of modelled usage: name -> held
    'failcnt': {},        # name -> failcnt
    'cpu': {},            # applied CPUUNITS/CPULIMIT/CPUS/CPUMASK/...
    'veth': [],           # host-side veth names that exist
}
#: Modelled memory use per process, in pages, for user_beancounters.
PAGES_PER_PROCESS = 512


class ToolError(Exception):
    """End the current tool with ``code`` after printing ``message``.

    ``message`` may hold several lines; they go to stderr.
    """

    def __init__(self, code, message=''):
        super().__init__(message)
        self.code = code
        self.message = message


def write_atomic(path, text):
    """Replace ``path`` with ``text`` so that readers never see half."""
    tmp = '%s.%d.tmp' % (path, os.getpid())
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)
    os.replace(tmp, path)


def _read_json(path, default):
    """Parse a JSON file; a missing or empty file gives ``default``.

    A file caught half-written by a non-atomic writer is read once more.
    """
    for attempt in (1, 2):
        try:
            with open(path, encoding='utf-8') as f:
                text = f.read()
        except FileNotFoundError:
            return default
        if not text.strip():
            return default
        try:
            return json.loads(text)
        except ValueError:
            if attempt == 2:
                raise
            time.sleep(0.05)


def parse_ctid(text):
    """Return ``text`` as a CTID if it is a number in vzctl's range."""
    if not text.isdigit():
        return None
    ctid = int(text)
    return ctid if ctid <= VEID_MAX else None


def effective_ubc(config):
    """Beancounters a container gets from ``config``: name -> (b, l).

    Unset values are derived from PHYSPAGES/SWAPPAGES the way vzctl does for
    a VSwap container (``fill_vswap_ub``); anything else is unlimited.
    """
    values = {}
    for name in UBC_NAMES:
        text = config.get(name.upper())
        if text:
            try:
                values[name] = conffile.parse_ubc(name.upper(), text)
            except conffile.FormatError:
                pass
    unlimited = (conffile.LONG_MAX, conffile.LONG_MAX)
    ram = values.get('physpages', unlimited)[1]
    if ram not in (conffile.LONG_MAX, INT_MAX):
        swap = values.get('swappages', (0, 0))[1]
        overcommit = float(config.get('VM_OVERCOMMIT') or 0)
        values.setdefault('lockedpages', (ram, ram))
        values.setdefault('oomguarpages', (ram, conffile.LONG_MAX))
        values.setdefault('vmguarpages', (ram + swap, conffile.LONG_MAX))
        if overcommit:
            privvm = int((ram + swap) * overcommit)
            values.setdefault('privvmpages', (privvm, privvm))
    return {name: values.get(name, unlimited) for name in UBC_NAMES}


class Host:
    """One simulated host tree rooted at ``root`` (the ``DIR`` of init).

    Attributes: ``root``, ``vz_conf_path``, ``vz_conf`` (dict, empty when
    the file is missing), ``conf_dir``, ``names_dir``, ``dists_dir``,
    ``lockdir``, ``dumpdir``, ``template_dir`` (None when TEMPLATE is
    unset), ``state_dir``, ``proc_dir``, ``sim_dir``, ``logfile``.
    """

    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.vz_conf_path = self.path('etc/vz/vz.conf')
        self.vz_conf = conffile.read(self.vz_conf_path)
        self.conf_dir = self.path('etc/vz/conf')
        self.names_dir = self.path('etc/vz/names')
        self.dists_dir = self.path('etc/vz/dists')
        self.lockdir = self.vz_conf.get('LOCKDIR') or self.path('vz/lock')
        self.dumpdir = self.vz_conf.get('DUMPDIR') or self.path('vz/dump')
        self.template_dir = self.vz_conf.get('TEMPLATE') or None
        self.state_dir = self.path('var/lib/vzsim')
        self.proc_dir = self.path('proc')
        self.sim_dir = self.path('sim')
        self.logfile = (self.vz_conf.get('LOGFILE') or
                        self.path('var/log/vzctl.log'))

    def path(self, relative):
        """Absolute path of ``relative`` inside the host tree."""
        return os.path.join(self.root, relative)

    # -- container configs -------------------------------------------------

    def conf_path(self, ctid, suffix='conf'):
        """``conf/<CTID>.conf`` (or another per-CT file such as ``mount``)."""
        return os.path.join(self.conf_dir, '%s.%s' % (ctid, suffix))

    def has_config(self, ctid):
        return os.path.isfile(self.conf_path(ctid))

    def ctids(self):
        """Sorted CTIDs with a ``<CTID>.conf`` (CT0, the host, excluded)."""
        try:
            names = os.listdir(self.conf_dir)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            stem, dot, ext = name.partition('.')
            if ext == 'conf' and stem.isdigit() and int(stem) > 0:
                found.append(int(stem))
        return sorted(found)

    def read_config(self, ctid):
        """The container's own config as a dict (empty when missing)."""
        return conffile.read(self.conf_path(ctid))

    def save_config(self, ctid, changes, remove=()):
        """Rewrite ``<CTID>.conf`` the way vzctl saves (in place, quoted)."""
        conffile.update(self.conf_path(ctid), changes, remove)

    def setting(self, ctid, key, config=None):
        """A key from the CT config, falling back to vz.conf (or None)."""
        if config is None:
            config = self.read_config(ctid)
        value = config.get(key)
        if value in (None, ''):
            value = self.vz_conf.get(key)
        return value if value not in (None, '') else None

    def _ve_path(self, ctid, key, config):
        value = self.setting(ctid, key, config)
        return conffile.expand_veid(value, ctid) if value else None

    def ve_private(self, ctid, config=None):
        """Expanded VE_PRIVATE of ``ctid`` (None when unset)."""
        return self._ve_path(ctid, 'VE_PRIVATE', config)

    def ve_root(self, ctid, config=None):
        """Expanded VE_ROOT of ``ctid`` (None when unset)."""
        return self._ve_path(ctid, 'VE_ROOT', config)

    def disk_descriptor(self, ctid, config=None):
        """``<VE_PRIVATE>/root.hdd/DiskDescriptor.xml`` of a ploop CT."""
        private = self.ve_private(ctid, config)
        return os.path.join(private, 'root.hdd', 'DiskDescriptor.xml')

    def layout(self, ctid, config=None):
        """``ploop`` or ``simfs``: VE_LAYOUT, else detected as vzctl does."""
        if config is None:
            config = self.read_config(ctid)
        if config.get('VE_LAYOUT') in ('ploop', 'simfs'):
            return config['VE_LAYOUT']
        private = self.ve_private(ctid, config)
        if private and os.path.isfile(self.disk_descriptor(ctid, config)):
            return 'ploop'
        return 'simfs'

    def exists(self, ctid, config=None):
        """vzctl status's ``exist``: the config and VE_PRIVATE both exist."""
        private = self.ve_private(ctid, config)
        return (self.has_config(ctid) and private is not None and
                os.path.exists(private))

    def dump_file(self, ctid):
        """``$DUMPDIR/Dump.<CTID>``, the default checkpoint file."""
        return os.path.join(self.dumpdir, 'Dump.%s' % ctid)

    def lock_file(self, ctid):
        return os.path.join(self.lockdir, '%s.lck' % ctid)

    # -- names -------------------------------------------------------------

    def name_link(self, name):
        return os.path.join(self.names_dir, name)

    def ctid_by_name(self, name):
        """CTID the ``etc/vz/names/<name>`` link points at, or None."""
        if not name or '/' in name or name in ('.', '..'):
            return None
        try:
            target = os.readlink(self.name_link(name))
        except OSError:
            return None
        stem = os.path.basename(target).partition('.')[0]
        return parse_ctid(stem)

    def resolve(self, ctid_or_name):
        """CTID for a numeric CTID or a name, or None if it is neither."""
        ctid = parse_ctid(ctid_or_name)
        if ctid is not None:
            return ctid
        return self.ctid_by_name(ctid_or_name)

    def set_name_link(self, name, ctid):
        """Point ``etc/vz/names/<name>`` at ``../conf/<CTID>.conf``."""
        link = self.name_link(name)
        tmp = '%s.%d.tmp' % (link, os.getpid())
        os.symlink('../conf/%s.conf' % ctid, tmp)
        os.replace(tmp, link)

    def remove_name_links(self, ctid):
        """Drop every name link that points at ``ctid``."""
        try:
            names = os.listdir(self.names_dir)
        except FileNotFoundError:
            return
        for name in names:
            if self.ctid_by_name(name) == ctid:
                os.unlink(self.name_link(name))

    # -- runtime state of the simulated kernel -----------------------------

    def runtime_path(self, ctid):
        return os.path.join(self.state_dir, '%s.json' % ctid)

    def runtime(self, ctid):
        """Runtime state of ``ctid`` over :data:`RUNTIME_DEFAULTS`."""
        state = json.loads(json.dumps(RUNTIME_DEFAULTS))
        state.update(_read_json(self.runtime_path(ctid), {}))
        return state

    def save_runtime(self, ctid, state):
        os.makedirs(self.state_dir, exist_ok=True)
        write_atomic(self.runtime_path(ctid),
                     json.dumps(state, sort_keys=True))

    def drop_runtime(self, ctid):
        try:
            os.unlink(self.runtime_path(ctid))
        except FileNotFoundError:
            pass

    def running_states(self):
        """``[(ctid, runtime), ...]`` of running containers, by CTID."""
        try:
            names = os.listdir(self.state_dir)
        except FileNotFoundError:
            return []
        running = []
        for name in names:
            stem, _, ext = name.partition('.')
            if ext == 'json' and stem.isdigit():
                state = self.runtime(int(stem))
                if state['running']:
                    running.append((int(stem), state))
        return sorted(running)

    def running_ctids(self):
        """CTIDs whose simulated init is up, sorted."""
        return [ctid for ctid, _ in self.running_states()]

    def refresh_proc(self):
        """Regenerate ``proc/vz/veinfo``, ``vestat``, ``user_beancounters``."""
        write_proc(self.proc_dir, self.running_states())


def _host_process_count():
    try:
        return sum(1 for name in os.listdir('/proc') if name.isdigit())
    except OSError:
        return 1


def render_veinfo(states):
    """/proc/vz/veinfo for ``[(ctid, runtime), ...]`` (reference 5.2)."""
    lines = ['%10u %5u %5u' % (0, 0, _host_process_count())]
    for ctid, state in states:
        ips = ''.join(' %39s' % ip if ':' in ip else ' %15s' % ip
                      for ip in reversed(state['ips']))
        lines.append('%10u %5u %5u%s' % (ctid, 0, state['numproc'], ips))
    return '\n'.join(lines) + '\n'


def modelled_usage(state):
    """Held values of a running container: a simple model of its memory.

    Each process is taken to use :data:`PAGES_PER_PROCESS` pages; recorded
    ``held`` values in the runtime state override the model.
    """
    numproc = state['numproc']
    pages = numproc * PAGES_PER_PROCESS
    ram = state['ubc'].get('physpages', [0, conffile.LONG_MAX])[1]
    pages = min(pages, ram)
    usage = dict.fromkeys(UBC_NAMES, 0)
    usage.update(numproc=numproc, physpages=pages, oomguarpages=pages,
                 privvmpages=pages * 2, kmemsize=numproc * 65536,
                 numfile=numproc * 16, dcachesize=numproc * 4096)
    usage.update(state['held'])
    return usage


def render_beancounters(states):
    """/proc/user_beancounters for ``[(ctid, runtime), ...]`` (ref. 5.1)."""
    row = '%10s  %-12s %20s %20s %20s %20s %20s'
    lines = ['Version: 2.5',
             row % ('uid', 'resource', 'held', 'maxheld', 'barrier', 'limit',
                    'failcnt')]
    host_state = dict(RUNTIME_DEFAULTS, numproc=_host_process_count())
    for ctid, state in [(0, host_state)] + list(states):
        usage = modelled_usage(state)
        for index, name in enumerate(BEANCOUNTER_ROWS):
            barrier, limit = state['ubc'].get(
                name, [conffile.LONG_MAX, conffile.LONG_MAX])
            held = usage.get(name, 0)
            maxheld = max(held, (state.get('maxheld') or {}).get(name, 0))
            failcnt = state['failcnt'].get(name, 0)
            lines.append(row % ('%s:' % ctid if index == 0 else '', name,
                                held, maxheld, barrier, limit, failcnt))
    return '\n'.join(lines) + '\n'


#: /proc/vz/vestat's columns after VEID (reference 5.3, W ``Vestat``): CPU
#: time in USER_HZ ticks (user, nice, system), uptime in ticks, then idle,
#: strv, uptime and used in CPU cycles and the scheduling latencies.
VESTAT_COLUMNS = ('VEID', 'user', 'nice', 'system', 'uptime', 'idle', 'strv',
                  'uptime', 'used', 'maxlat', 'totlat', 'numsched')
#: The simulated CPU counts cycles at a nominal 1 GHz: one per nanosecond.
CYCLES_PER_NS = 1


def render_vestat(states, now=None):
    """/proc/vz/vestat for ``[(ctid, runtime), ...]`` (reference 5.3).

    As a 64-bit OpenVZ kernel prints it: ``Version: 2.2`` padded to the
    line width, a header, then one line of twelve right-aligned 20-column
    numbers per running container; the host (CT 0) has no line.  CPU
    times come from the runtime's ``cpustat`` (the real backend reads the
    container's cgroup); a modelled container used no CPU.
    """
    hz = os.sysconf('SC_CLK_TCK')
    now = time.time() if now is None else now
    width = 12 * 21
    lines = ['%-*s' % (width - 1, 'Version: 2.2'),
             ' '.join('%20s' % name for name in VESTAT_COLUMNS)]
    for ctid, state in states:
        cpu = state.get('cpustat') or {}
        uptime = max(now - (state.get('start_time') or now), 0.0)
        lines.append(' '.join('%20d' % value for value in (
            ctid, cpu.get('user', 0), cpu.get('nice', 0),
            cpu.get('system', 0), int(uptime * hz), 0, 0,
            int(uptime * 1e9) * CYCLES_PER_NS,
            cpu.get('used_ns', 0) * CYCLES_PER_NS, 0, 0, 0)))
    return '\n'.join(lines) + '\n'


def write_proc(proc_dir, states):
    """Write every /proc file the simulated kernel shows, from ``states``."""
    os.makedirs(os.path.join(proc_dir, 'vz'), exist_ok=True)
    write_atomic(os.path.join(proc_dir, 'vz', 'veinfo'),
                 render_veinfo(states))
    write_atomic(os.path.join(proc_dir, 'vz', 'vestat'),
                 render_vestat(states))
    write_atomic(os.path.join(proc_dir, 'user_beancounters'),
                 render_beancounters(states))


class CTLock:
    """vzctl's container lock: ``$LOCKDIR/<CTID>.lck`` = "<pid>\\n<status>\\n".

    A live holder makes :meth:`acquire` raise ``ToolError(9)``; a lock left
    by a dead process is removed, reported through ``say``.
    """

    LOCKED = 9

    def __init__(self, host, ctid, status, say=None):
        self.path = host.lock_file(ctid)
        self.status = status
        self.say = say or (lambda message: None)
        self.held = False

    @staticmethod
    def _alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    @staticmethod
    def _cmdline(pid):
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                raw = f.read()
        except OSError:
            return ''
        return raw.rstrip(b'\0').replace(b'\0', b' ').decode(errors='replace')

    def _holder(self):
        """Pid in the lock file; None when the file is unreadable or empty."""
        for _ in range(20):
            try:
                with open(self.path) as f:
                    first = f.readline().strip()
            except FileNotFoundError:
                return 0
            if first.isdigit():
                return int(first)
            time.sleep(0.01)   # being written by another vzctl
        return None

    def acquire(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = '%s.%d' % (self.path, os.getpid())
        with open(tmp, 'w') as f:
            f.write('%d\n%s\n' % (os.getpid(), self.status))
        try:
            for _ in range(10):
                try:
                    os.link(tmp, self.path)
                    self.held = True
                    return
                except FileExistsError:
                    pass
                pid = self._holder()
                if pid and pid != os.getpid() and self._alive(pid):
                    raise ToolError(self.LOCKED, (
                        'Container already locked\n'
                        'Locked by: pid %d, cmdline %s'
                        % (pid, self._cmdline(pid))))
                if pid == 0:
                    continue   # released meanwhile
                self.say('Removing stale lock file %s' % self.path)
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            raise ToolError(3, 'Unable to lock container')
        finally:
            os.unlink(tmp)

    def release(self):
        if self.held:
            self.held = False
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class Output:
    """vzctl's logger: level-0 messages to stdout, errors to stderr.

    ``quiet`` silences both streams; every message is also appended to
    LOGFILE as ``<date> <tool> : CT <id> : <msg>`` when LOGGING is not no.
    """

    def __init__(self, host, tool, ctid=None, quiet=False):
        self.host = host
        self.tool = tool
        self.ctid = ctid
        self.quiet = quiet

    def _log(self, message):
        if self.host.vz_conf.get('LOGGING', 'yes') == 'no':
            return
        prefix = time.strftime('%Y-%m-%dT%H:%M:%S%z ') + self.tool + ' : '
        if self.ctid is not None:
            prefix += 'CT %s : ' % self.ctid
        try:
            with open(self.host.logfile, 'a', encoding='utf-8') as f:
                for line in message.splitlines():
                    f.write(prefix + line + '\n')
        except OSError:
            pass   # vzctl carries on when it cannot log

    def info(self, message):
        self._log(message)
        if not self.quiet:
            sys.stdout.write(message + '\n')

    def error(self, message):
        self._log(message)
        if not self.quiet:
            sys.stdout.flush()
            sys.stderr.write(message + '\n')
            sys.stderr.flush()


# -- the harness ------------------------------------------------------------

def first_word(argv, flags_with_values=()):
    """The first argument that is not an option (a tool's subcommand).

    ``flags_with_values`` lists options that consume the next argument.
    """
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in flags_with_values:
            skip = True
        elif not arg.startswith('-'):
            return arg
    return None


def _rule_matches(rule, tool, command, ctid):
    if rule.get('tool') != tool:
        return False
    if 'command' in rule and rule['command'] != command:
        return False
    if 'ctid' in rule and str(rule['ctid']) != str(ctid):
        return False
    return True


def _pick_fault(host, tool, command, ctid):
    """The fault rule that fires for this call, counting matching calls.

    Each distinct rule counts the invocations it matched in
    ``sim/faults.state`` under an exclusive fcntl lock, so concurrent tools
    see consistent numbers; the first rule whose ``call`` is due fires.
    """
    rules = _read_json(os.path.join(host.sim_dir, 'faults.json'), [])
    matching = [r for r in rules if _rule_matches(r, tool, command, ctid)]
    if not matching:
        return None
    fired = None
    with open(os.path.join(host.sim_dir, 'faults.state'), 'a+') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read()
        counts = json.loads(text) if text.strip() else {}
        counted = set()
        for rule in matching:
            key = json.dumps(rule, sort_keys=True)
            if key not in counted:
                counted.add(key)
                counts[key] = counts.get(key, 0) + 1
            if fired is None and rule.get('call') in (None, counts[key]):
                fired = rule
        f.seek(0)
        f.truncate()
        f.write(json.dumps(counts))
    return fired


def _hold(host, fault):
    """Wait while the rule's ``hold`` file (under ``sim/``) exists.

    A tool that hangs until a test lets it go: the caller stays blocked in
    the call as a nova-compute killed there would do nothing more.
    """
    if fault.get('hold'):
        path = os.path.join(host.sim_dir, os.path.basename(fault['hold']))
        while os.path.exists(path):
            time.sleep(0.05)


def _emit(stream, text):
    if text:
        stream.write(text if text.endswith('\n') else text + '\n')
        stream.flush()


def _latency(host, tool, command):
    table = _read_json(os.path.join(host.sim_dir, 'latency.json'), {})
    key = '%s %s' % (tool, command)
    return float(table.get(key, table.get(tool, 0)) or 0)


def log_call(host, tool, argv, exit_code, seconds):
    """Append one JSON line for this invocation to ``sim/calls.log``."""
    # The end time (wall clock, shared by the hosts of one machine) tells
    # which calls ran inside another, as vzmigrate's vzctl calls do.
    line = json.dumps({'tool': tool, 'argv': list(argv),
                       'exit_code': exit_code,
                       'seconds': round(seconds, 3),
                       'ended': round(time.time(), 3)}) + '\n'
    if not os.path.isdir(host.root):
        # A long call (vzctl console) outlived its host: write nothing,
        # rather than make a stray tree where the host was.
        return
    os.makedirs(host.sim_dir, exist_ok=True)
    fd = os.open(os.path.join(host.sim_dir, 'calls.log'),
                 os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())   # one O_APPEND write: no interleaving
    finally:
        os.close(fd)


def run_tool(host, tool, argv, func, command=None, ctid=None):
    """Run ``func(host, argv)`` as one call of ``tool`` and return its code.

    Sleeps the configured latency, lets a matching fault rule answer instead
    of ``func``, turns a :class:`ToolError` escaping ``func`` into its
    message on stderr and its code, and logs the call.  ``command`` is the
    subcommand and ``ctid`` the container (int or name) the call is about,
    used to match fault rules; a rule naming a ``ctid`` never matches a call
    that names none.
    """
    started = time.monotonic()
    code = 1
    try:
        delay = _latency(host, tool, command)
        if delay > 0:
            time.sleep(delay)
        fault = _pick_fault(host, tool, command, ctid)
        if fault is not None:
            _hold(host, fault)
            _emit(sys.stdout, fault.get('stdout', ''))
            _emit(sys.stderr, fault.get('stderr', ''))
            code = int(fault.get('exit_code', 1))
            return code
        try:
            code = func(host, argv)
        except ToolError as exc:
            sys.stdout.flush()
            _emit(sys.stderr, exc.message)
            code = exc.code
        return code
    finally:
        sys.stdout.flush()
        log_call(host, tool, argv, code, time.monotonic() - started)
