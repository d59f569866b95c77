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

"""What vzctl needs from the kernel: the back-end interface and its helpers.

vzctl decides *what* happens to a container (checks, messages, config
files); a :class:`Kernel` makes it happen: it starts and stops the
container's init, freezes and thaws it, mounts and unmounts its filesystem
on VE_ROOT, applies live limits and venet addresses, creates veth devices,
checkpoints and restores, and runs commands inside.

Two back ends implement it: :class:`vzsim.kernel.modelled.ModelledKernel`
(state on disk, nothing runs) and :class:`vzsim.kernel.real.RealKernel`
(namespaces and cgroups); :mod:`vzsim.kernel.backends` picks one for a host.
This module imports no back end and no front end.
"""

import abc
import json
import os

from vzsim import hostfs

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

        ``devices`` are dicts as :func:`vzsim.conffile.netif_devices`
        gives them (``ifname``, ``mac``, ``host_ifname``, ``host_mac``,
        ``bridge``).  A bridge that does not exist is not an error: as
        vzctl's bridge script, the device stays unbridged and the warning
        goes to stderr.
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


def generated_mac(ctid, *seed):
    """A MAC in SWsoft's OUI 00:18:51, stable for ``ctid`` and ``seed``."""
    import hashlib
    digest = hashlib.md5(('%s:%s' % (ctid, ':'.join(seed))).encode(),
                         usedforsecurity=False).digest()
    return '00:18:51:' + ':'.join('%02X' % b for b in digest[:3])
