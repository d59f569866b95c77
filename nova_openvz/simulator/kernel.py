"""Container kernel effects of the simulated host, behind one interface.

vzctl decides *what* happens to a container (checks, messages, config
files); a :class:`Kernel` makes it happen: it starts and stops the
container's init, freezes and thaws it, mounts and unmounts its filesystem
on VE_ROOT, applies live limits and venet addresses, creates veth devices,
checkpoints and restores, and runs commands inside.

Backends:

``modelled`` (:class:`ModelledKernel`)
    Keeps the container state as JSON in ``DIR/var/lib/vzsim`` (see
    :data:`hostfs.RUNTIME_DEFAULTS`) and regenerates ``DIR/proc`` from it.
    No process runs for a container.  "Mounting" replaces the empty VE_ROOT
    directory with a symlink to the directory holding the container's files,
    so files written under VE_ROOT while mounted land in the private area,
    as with a real bind or ploop mount.  ``exec`` runs the joined command
    with ``/bin/sh -c`` (real vzctl uses bash; a minimal guest may only have
    sh) chrooted into VE_ROOT; that needs root and a ``bin/sh`` in the
    guest, and fails with a clear message otherwise.

``real`` (:class:`nova_openvz.simulator.realkernel.RealKernel`)
    Containers are process trees in their own namespaces and cgroups on
    this machine; see that module.  Needs root and the kernel features
    :func:`nova_openvz.simulator.realkernel.probe` checks.

``auto`` (the default)
    ``real`` when the probe passes, else ``modelled``: a host runs real
    containers wherever the machine allows it.

The backend is chosen in one place, :func:`choose`: the name in
``DIR/sim/kernel`` (one word), :data:`DEFAULT_BACKEND` when that file is
absent.
"""

import abc
import json
import os
import sys
import time

from nova_openvz.simulator import hostfs
from nova_openvz import vzconf

#: Environment of commands run by exec, as vzctl sets it.
EXEC_ENV = {'HOME': '/', 'TERM': 'linux',
            'PATH': '/bin:/sbin:/usr/bin:/usr/sbin:.'}


class KernelError(hostfs.ToolError):
    """A kernel operation failed; ``code`` is the vzctl exit code."""


class Kernel(abc.ABC):
    """What vzctl needs from the kernel, per container.

    Callers (vzctl) have already checked preconditions such as "not already
    running"; methods raise :class:`KernelError` for failures the kernel
    itself reports (address in use, bad dump, ...).
    """

    #: True when containers are real processes: commands run in the guest
    #: really execute there (vzctl leaves guest work such as passwords to
    #: the guest's own tools) and images hold real filesystems.
    real = False

    def __init__(self, host):
        self.host = host

    # -- state -------------------------------------------------------------

    @abc.abstractmethod
    def is_running(self, ctid):
        """True when the container's init is up (frozen or not)."""

    @abc.abstractmethod
    def is_frozen(self, ctid):
        """True after :meth:`freeze` until :meth:`thaw` or stop."""

    @abc.abstractmethod
    def is_mounted(self, ctid):
        """True when VE_ROOT shows the container's filesystem."""

    # -- filesystem --------------------------------------------------------

    @abc.abstractmethod
    def mount(self, ctid, source, target):
        """Show the directory tree ``source`` at VE_ROOT ``target``."""

    @abc.abstractmethod
    def umount(self, ctid, target):
        """Undo :meth:`mount`, leaving ``target`` an empty directory."""

    # -- lifecycle ---------------------------------------------------------

    @abc.abstractmethod
    def start(self, ctid, config):
        """Start init of a mounted container and apply ``config``'s limits.

        Addresses, veth devices and the guest's configuration are added
        afterwards (:meth:`add_ips`, :meth:`add_veth`), then
        :meth:`finish_start` lets init run, as vzctl holds a container's
        init until its setup is done.
        """

    def finish_start(self, ctid):
        """Let the init of a container :meth:`start` prepared run."""

    @abc.abstractmethod
    def stop(self, ctid, fast=False):
        """Halt (or with ``fast`` kill) the container; it stays mounted."""

    @abc.abstractmethod
    def freeze(self, ctid):
        """Freeze every process of a running container."""

    @abc.abstractmethod
    def thaw(self, ctid):
        """Undo :meth:`freeze`."""

    @abc.abstractmethod
    def dump(self, ctid, dumpfile):
        """Write the dump of a (frozen) container; it keeps running."""

    def checkpoint(self, ctid, dumpfile):
        """Dump the running container to ``dumpfile``, then kill it."""
        self.dump(ctid, dumpfile)
        self.stop(ctid, fast=True)

    @abc.abstractmethod
    def restore(self, ctid, dumpfile):
        """Bring a mounted container back to life from ``dumpfile``."""

    # -- live settings -----------------------------------------------------

    @abc.abstractmethod
    def apply_resources(self, ctid, config):
        """Apply beancounters, CPU, I/O and device limits of ``config``."""

    @abc.abstractmethod
    def add_ips(self, ctid, ips):
        """Add venet addresses; an address used by another CT fails (78)."""

    @abc.abstractmethod
    def del_ips(self, ctid, ips=None):
        """Remove venet addresses (``None``: all of them)."""

    @abc.abstractmethod
    def ips(self, ctid):
        """The container's venet addresses, in the order they were added."""

    @abc.abstractmethod
    def add_veth(self, ctid, devices):
        """Create (or update) veth pairs.

        ``devices`` are dicts as :func:`netif_devices` gives them
        (``ifname``, ``mac``, ``host_ifname``, ``host_mac``, ``bridge``).
        """

    @abc.abstractmethod
    def del_veth(self, ctid, host_ifnames):
        """Remove the host side of veth pairs."""

    # -- inside the container ----------------------------------------------

    @abc.abstractmethod
    def exec(self, ctid, root, command, stdin=None):
        """Run ``command`` (a shell string; None: read from stdin) inside.

        ``stdin`` (bytes) replaces the inherited standard input.  Returns
        the command's exit status; stdout and stderr are inherited.
        """

    def set_hostname(self, ctid, hostname):
        """Set a running container's hostname.

        Its /etc/hostname is vzctl's business.
        """

    # -- records -------------------------------------------------------------

    def refresh_proc(self):
        """Regenerate ``DIR/proc`` from the containers' state."""
        self.host.refresh_proc()

    def update_proc(self):
        """Bring ``DIR/proc`` up to date before a reader (vzlist) looks.

        The modelled state only changes through the kernel, which rewrites
        ``DIR/proc`` each time; real processes come and go on their own.
        """
        if self.real:
            self.refresh_proc()

    def console_path(self, ctid):
        """The container's console: what its init writes, appended.

        It outlives stops and starts, as OpenVZ's consoles do (reference
        1.8), and goes when the container is destroyed.
        """
        return os.path.join(self.host.state_dir, '%d.console' % ctid)

    def console_input_path(self, ctid):
        """What is typed on the container's console: its init's stdin.

        A FIFO the real backend makes and holds open while the container
        runs; a modelled container has none, and its console drops input.
        """
        return os.path.join(self.host.state_dir, '%d.console-in' % ctid)

    def forget(self, ctid):
        """Drop what the kernel keeps of a destroyed container."""
        for path in (self.console_path(ctid), self.console_input_path(ctid)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.host.drop_runtime(ctid)
        self.refresh_proc()


class ModelledKernel(Kernel):
    """The state-on-disk backend; see the module docstring."""

    def _state(self, ctid):
        return self.host.runtime(ctid)

    def _save(self, ctid, state, refresh=True):
        self.host.save_runtime(ctid, state)
        if refresh:
            self.host.refresh_proc()

    def is_running(self, ctid):
        return self._state(ctid)['running']

    def is_frozen(self, ctid):
        state = self._state(ctid)
        return state['running'] and state['frozen']

    def is_mounted(self, ctid):
        return self._state(ctid)['mounted']

    def mount(self, ctid, source, target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(target):
            os.unlink(target)
        elif os.path.isdir(target):
            if os.listdir(target):
                raise KernelError(50, 'Unable to mount %s: mount point is '
                                      'not empty' % target)
            os.rmdir(target)
        os.symlink(source, target)
        state = self._state(ctid)
        state['mounted'] = True
        self._save(ctid, state, refresh=False)

    def umount(self, ctid, target):
        # What a mount script put under VE_ROOT went into the tree the
        # link points at; it must not outlive the "mount" there either.
        unmount_below(os.path.realpath(target))
        if os.path.islink(target):
            os.unlink(target)
        os.makedirs(target, 0o755, exist_ok=True)
        state = self._state(ctid)
        state['mounted'] = False
        self._save(ctid, state, refresh=False)

    @staticmethod
    def _initial_processes(root):
        """init plus one process per service script of the guest."""
        try:
            return 1 + len(os.listdir(os.path.join(root, 'etc', 'init.d')))
        except OSError:
            return 1

    def start(self, ctid, config):
        state = self._state(ctid)
        root = self.host.ve_root(ctid, config) or ''
        state.update(running=True, frozen=False, start_time=time.time(),
                     numproc=self._initial_processes(root), ips=[],
                     veth=[])
        record_resources(state, config)
        self._save(ctid, state)

    def stop(self, ctid, fast=False):
        state = self._state(ctid)
        state.update(running=False, frozen=False, start_time=None,
                     numproc=0, ips=[], veth=[], ubc={}, cpu={})
        self._save(ctid, state)

    def freeze(self, ctid):
        state = self._state(ctid)
        state['frozen'] = True
        self._save(ctid, state, refresh=False)

    def thaw(self, ctid):
        state = self._state(ctid)
        state['frozen'] = False
        self._save(ctid, state, refresh=False)

    def dump(self, ctid, dumpfile):
        state = self._state(ctid)
        os.makedirs(os.path.dirname(dumpfile), exist_ok=True)
        hostfs.write_atomic(dumpfile, json.dumps(
            {'vzsim-dump': 1, 'ctid': ctid, 'state': state}))

    def restore(self, ctid, dumpfile):
        saved = read_dump(ctid, dumpfile)
        self._check_ips_free(ctid, saved.get('ips', []))
        state = self._state(ctid)
        state.update(saved, running=True, frozen=False,
                     mounted=state['mounted'])
        self._save(ctid, state)

    def apply_resources(self, ctid, config):
        state = self._state(ctid)
        record_resources(state, config)
        self._save(ctid, state)

    def _check_ips_free(self, ctid, ips):
        for other, state in self.host.running_states():
            if other == ctid:
                continue
            taken = set(state['ips']) & set(ips)
            if taken:
                raise KernelError(78, 'Unable to add IP %s: Address already '
                                      'in use' % sorted(taken)[0])

    def add_ips(self, ctid, ips):
        self._check_ips_free(ctid, ips)
        state = self._state(ctid)
        state['ips'] += [ip for ip in ips if ip not in state['ips']]
        self._save(ctid, state)

    def del_ips(self, ctid, ips=None):
        state = self._state(ctid)
        state['ips'] = ([] if ips is None else
                        [ip for ip in state['ips'] if ip not in ips])
        self._save(ctid, state)

    def ips(self, ctid):
        return list(self._state(ctid)['ips'])

    def add_veth(self, ctid, devices):
        state = self._state(ctid)
        state['veth'] += [d['host_ifname'] for d in devices
                          if d['host_ifname'] not in state['veth']]
        self._save(ctid, state, refresh=False)

    def del_veth(self, ctid, host_ifnames):
        state = self._state(ctid)
        state['veth'] = [n for n in state['veth'] if n not in host_ifnames]
        self._save(ctid, state, refresh=False)

    def exec(self, ctid, root, command, stdin=None):
        if os.geteuid() != 0:
            raise KernelError(3, 'Unable to run a command in CT %s: the '
                                 'modelled kernel needs root to chroot' % ctid)
        if not os.path.lexists(os.path.join(root, 'bin', 'sh')):
            raise KernelError(3, 'Unable to run a command in CT %s: %s/bin/sh '
                                 'does not exist' % (ctid, root))

        def enter():
            os.chroot(root)
            os.chdir('/')

        import subprocess
        argv = ['/bin/sh'] if command is None else ['/bin/sh', '-c', command]
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            proc = subprocess.run(argv, env=EXEC_ENV, preexec_fn=enter,
                                  input=stdin, check=False)
        except OSError as exc:
            raise KernelError(3, 'Unable to run a command in CT %s: %s'
                              % (ctid, exc))
        code = proc.returncode
        return 128 - code if code < 0 else code


def mounts_below(path):
    """Mount points strictly below ``path``, deepest first."""
    path = os.path.realpath(path)
    with open('/proc/self/mountinfo') as f:
        points = [line.split()[4] for line in f]
    return sorted({p for p in points if p.startswith(path + '/')},
                  key=lambda p: p.count('/'), reverse=True)


def unmount_below(path):
    """Unmount what is mounted below ``path`` (action scripts' mounts).

    vzctl unmounts VE_ROOT with everything mounted under it (a detaching
    umount), so bind mounts a ``<CTID>.mount`` script made there go with
    it.  Raises KernelError 51 when one stays busy.
    """
    import subprocess
    for point in mounts_below(path):
        proc = subprocess.run(['umount', point], capture_output=True,
                              check=False)
        if proc.returncode:
            raise KernelError(51, 'Unable to unmount %s: %s' % (
                point, proc.stderr.decode(errors='replace').strip()))


def record_resources(state, config):
    """Note in ``state`` the limits ``config`` gives (for vzlist)."""
    state['ubc'] = {name: list(pair) for name, pair in
                    hostfs.effective_ubc(config).items()}
    state['cpu'] = {key: config[key] for key in
                    ('CPUUNITS', 'CPULIMIT', 'CPUS', 'CPUMASK',
                     'NODEMASK', 'IOPRIO', 'IOLIMIT', 'IOPSLIMIT',
                     'DEVICES', 'DEVNODES') if config.get(key)}


def read_dump(ctid, dumpfile):
    """The saved state in a dump file (KernelError 17 when unusable)."""
    try:
        with open(dumpfile, encoding='utf-8') as f:
            return json.load(f)['state']
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KernelError(17, 'Unable to restore container from %s: %s'
                          % (dumpfile, exc))


#: NETIF value -> list of dicts; the driver reads NETIF the same way.
netif_devices = vzconf.netif_devices


def generated_mac(ctid, *seed):
    """A MAC in SWsoft's OUI 00:18:51, stable for ``ctid`` and ``seed``."""
    import hashlib
    digest = hashlib.md5(('%s:%s' % (ctid, ':'.join(seed))).encode(),
                         usedforsecurity=False).digest()
    return '00:18:51:' + ':'.join('%02X' % b for b in digest[:3])


#: Backend names; ``auto`` is real where the machine allows it.
BACKENDS = ('modelled', 'real', 'auto')
DEFAULT_BACKEND = 'auto'


def configured(host):
    """The backend name ``DIR/sim/kernel`` asks for (or the default)."""
    try:
        with open(os.path.join(host.sim_dir, 'kernel')) as f:
            name = f.read().strip() or DEFAULT_BACKEND
    except FileNotFoundError:
        name = DEFAULT_BACKEND
    if name not in BACKENDS:
        raise hostfs.ToolError(5, 'Unknown simulated kernel backend %r in %s'
                               % (name, os.path.join(host.sim_dir, 'kernel')))
    return name


def choose(host):
    """``(backend, why)``: the backend ``host`` runs and the reason."""
    name = configured(host)
    if name == 'modelled':
        return 'modelled', 'configured'
    from nova_openvz.simulator import realkernel
    ok, why = realkernel.probe()
    if ok:
        return 'real', why
    if name == 'real':
        raise hostfs.ToolError(5, 'The real simulated kernel cannot run '
                                  'here: %s' % why)
    return 'modelled', 'auto: %s' % why


def for_host(host):
    """The kernel backend of ``host`` (see :func:`choose`)."""
    name, _ = choose(host)
    if name == 'real':
        from nova_openvz.simulator import realkernel
        return realkernel.RealKernel(host)
    return ModelledKernel(host)


def describe(host):
    """``[(label, text)]``: which backend ``host`` runs and why.

    For ``nova-openvz simulate info``.
    """
    from nova_openvz.simulator import realkernel
    name = configured(host)
    source = ('DIR/sim/kernel' if os.path.exists(
        os.path.join(host.sim_dir, 'kernel')) else 'the default')
    possible, why = realkernel.probe()
    if name == 'modelled':
        running = 'modelled'
        reason = 'modelled is asked for (%s)' % source
    elif possible:
        running = 'real'
        reason = '%s is asked for (%s) and this machine allows it: %s' % (
            name, source, why)
    else:
        running = 'modelled' if name == 'auto' else 'none (tools fail)'
        reason = '%s is asked for (%s) but this machine does not allow ' \
                 'real containers: %s' % (name, source, why)
    lines = [('kernel backend', running), ('configured', name),
             ('why', reason),
             ('real backend here', 'possible: %s' % why if possible else
              'impossible: %s' % why)]
    if running == 'real':
        lines += realkernel.describe()
    else:
        lines.append(('checkpoint', 'dump files hold the modelled state '
                                    '(JSON); nothing runs'))
    return lines
