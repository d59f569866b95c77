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

"""The host's console agent: start and find it, attach, detach, serve, read.

A container's console is an interactive vzctl session (reference 1.8), so
one agent per host (:mod:`.consoleagent`, run as a script so that it
loads nothing but the standard library) holds every
container's session, logs it to console.log in the instance's directory and
serves it on a TCP port for Nova's serial console.  The agent listens on a
unix socket in ``<host_root>/run/nova-openvz``, a directory only root can
enter; each request holds a shared lock on ``console-agent.lock`` there,
and the agent leaves when idle only under the exclusive one.  The socket's
peer is trusted only once the kernel (``SO_PEERCRED``) and ``/proc`` show
it is our agent, of this very run directory, running as root.
"""

import array
import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time

from nova_openvz import privsep
from nova_openvz.privsep import consoleagent
from nova_openvz.privsep import containers

CONF = privsep.CONF

#: The agent's program, run by path: ``-m`` would load this package.
AGENT = os.path.abspath(consoleagent.__file__)
CONSOLE_FILES = ('console.log', 'console.log.0')
#: An attach's stdout when the agent held that console already.
HELD = 'held'
#: Seconds the agent may take to start listening.
AGENT_START_SECONDS = 10
#: Seconds a request may wait beyond its own timeout (a detach: vzctl's).
REPLY_SECONDS = consoleagent.DETACH_SECONDS + 10
#: Seconds a request waits for the agent's lock (an attach holds it).
LOCK_SECONDS = 180
#: Seconds a console taken over from a dead agent may take to attach.
RESTORE_ATTACH_SECONDS = 60
#: The per-container logger of earlier releases, stopped on attach.
LEGACY_LOGGER = (b'-m', b'nova_openvz.consolelogger')
LEGACY_PID = 'console.pid'
LEGACY_STOP_SECONDS = 10


class AgentError(RuntimeError):
    """The console agent could not be started or did not answer."""


@contextlib.contextmanager
def _instance_dir(directory):
    """An fd of the instance directory (see :func:`.open_instance_dir`)."""
    fd = privsep.open_instance_dir(directory)
    try:
        yield fd
    finally:
        os.close(fd)


def _instance_name(directory):
    """The instance UUID of an instance directory's path (not opened)."""
    privsep.checked_path(directory)
    name = os.path.basename(directory)
    if not privsep.UUID_RE.match(name) or os.path.realpath(
            os.path.dirname(directory)) != os.path.realpath(
                CONF.instances_path):
        raise privsep.ArgumentRejected('%r is not an instance directory'
                                       % (directory,))
    return name


def _open_regular(name, dir_fd):
    """Open a plain file of the instance directory, never through a link.

    A hard link to a file elsewhere (st_nlink > 1) is refused too.
    """
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise privsep.ArgumentRejected('%s is not a console file' % name)
    return fd


def _process_alive(pid):
    """True for a live process (a zombie nobody reaped is dead)."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            state = f.read().rpartition(b')')[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b'Z', b'X')


def _runs(pid, program, flag, value):
    """True when ``pid`` runs ``python -I program ... flag value``.

    ``program`` is a script path, or ``(b'-m', module)`` for a module.
    """
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            argv = f.read().split(b'\0')
    except OSError:
        return False
    pairs = set(zip(argv, argv[1:]))
    started = program if isinstance(program, tuple) else \
        (b'-I', program.encode())
    return {started, (flag.encode(), value.encode())} <= pairs and \
        _process_alive(pid)


# -- the agent ---------------------------------------------------------------

def run_dir():
    """``<host_root>/run/nova-openvz``: made if missing, root's only.

    Refused when it is a link, or someone else's, or open to others.
    """
    path = os.path.join(os.path.realpath(CONF.openvz.host_root), 'run',
                        'nova-openvz')
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or \
            info.st_mode & 0o077:
        raise AgentError('%s must be a directory only its owner, %d, can '
                         'use' % (path, os.geteuid()))
    return path


def _connect(directory):
    """A connection to the agent of ``directory``, or None if none runs."""
    sock = socket.socket(socket.AF_UNIX,
                         socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.connect(os.path.join(directory, consoleagent.SOCKET_NAME))
        pid, uid, _ = struct.unpack('3i', sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize('3i')))
    except OSError:
        sock.close()
        return None
    if uid != os.geteuid() or not _runs(pid, AGENT, '--run-dir', directory):
        sock.close()
        return None
    return sock


def _request(sock, request, fd=None, timeout=REPLY_SECONDS):
    """Send one request and return its reply (a dict)."""
    sock.settimeout(timeout)
    ancillary = [] if fd is None else [
        (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [fd]))]
    try:
        sock.sendmsg([json.dumps(request).encode()], ancillary)
        data = sock.recv(consoleagent.MAX_REQUEST)
    except OSError as e:
        raise AgentError('console agent: %s' % e)
    if not data:
        raise AgentError('console agent closed the connection')
    reply = json.loads(data)
    if 'error' in reply and reply.get('errno') != errno.EADDRINUSE:
        raise AgentError('console agent: %s' % reply['error'])
    return reply


def _start(directory):
    """Start an agent; give it what the previous one held, if one died."""
    try:
        with open(os.path.join(directory, consoleagent.STATE_NAME)) as f:
            held = json.load(f)['sessions']
    except (OSError, ValueError, KeyError, TypeError):
        held = []
    try:
        os.unlink(os.path.join(directory, consoleagent.SOCKET_NAME))
    except FileNotFoundError:
        pass
    try:
        proc = subprocess.run(
            [sys.executable, '-I', AGENT, '--run-dir', directory,
             '--idle-seconds', str(consoleagent.IDLE_SECONDS)],
            stdin=subprocess.DEVNULL, capture_output=True,
            env={'LC_ALL': 'C', 'PATH': privsep.TOOL_PATH},
            timeout=AGENT_START_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise AgentError('console agent did not start in %ds'
                         % AGENT_START_SECONDS)
    if proc.returncode != 0:
        raise AgentError(proc.stderr.decode('utf-8', 'replace').strip() or
                         'console agent exited %d' % proc.returncode)
    sock = _connect(directory)
    if sock is None:
        raise AgentError('console agent started but does not answer')
    _restore(sock, held)
    return sock


def _restore(sock, held):
    """Attach again what a dead agent held (without waiting for vzctl)."""
    for entry in held:
        try:
            instance = os.path.join(CONF.instances_path, entry['name'])
            privsep.check_ctid(str(int(entry['ctid'])))
            with _instance_dir(instance) as dir_fd:
                _request(sock, _attach_request(
                    entry['ctid'], entry['name'], entry['max_bytes'],
                    RESTORE_ATTACH_SECONDS, wait=False), dir_fd)
        except (OSError, ValueError, KeyError, TypeError, AgentError):
            continue    # its directory or container went meanwhile


def _flock(fd, operation):
    """Take a lock on the agent's lock file, polling.

    A blocking flock() would hold the whole process when the holder is a
    green thread of the same process (an eventlet-patched nova-compute):
    it could never run again to let go.  Polling sleeps, so it yields.
    """
    deadline = time.monotonic() + LOCK_SECONDS
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise AgentError('the console agent stayed locked for %ds'
                                 % LOCK_SECONDS)
            time.sleep(0.02)


@contextlib.contextmanager
def agent(start=False):
    """A verified connection to the host's agent, started if ``start``.

    Yields None when no agent runs and ``start`` is False.
    """
    directory = run_dir()
    lock = os.open(os.path.join(directory, consoleagent.LOCK_NAME),
                   os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                   0o600)
    try:
        _flock(lock, fcntl.LOCK_SH)
        sock = _connect(directory)
        if sock is None and start:
            _flock(lock, fcntl.LOCK_EX)
            sock = _connect(directory) or _start(directory)
            _flock(lock, fcntl.LOCK_SH)
        try:
            yield sock
        finally:
            if sock is not None:
                sock.close()
    finally:
        os.close(lock)


def _attach_request(ctid, name, max_bytes, timeout, wait=True):
    return {'op': 'attach', 'ctid': int(ctid), 'name': name,
            'max_bytes': int(max_bytes), 'timeout': float(timeout),
            'vzctl': os.path.join(CONF.openvz.tools_dir, 'vzctl'),
            'wait': wait}


def _stop_legacy_logger(directory, dir_fd):
    """Stop the per-container logger an earlier release left running."""
    try:
        fd = _open_regular(LEGACY_PID, dir_fd)
        with os.fdopen(fd, 'rb') as f:
            pid = int(f.read(32).strip())
    except (OSError, ValueError):    # ArgumentRejected included
        return
    if _runs(pid, LEGACY_LOGGER, '--dir', directory):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + LEGACY_STOP_SECONDS
        while _process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _process_alive(pid):
            os.killpg(pid, signal.SIGKILL)
    try:
        os.unlink(LEGACY_PID, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


# -- entrypoints -------------------------------------------------------------

@privsep.vz_pctxt.entrypoint
def attach_console(ctid, directory, max_bytes, timeout):
    """Have the agent hold container ``ctid``'s console, unless it does.

    :returns: the attach's :data:`nova_openvz.privsep.Result`: vzctl
        console's own exit code and message when it failed, exit code None
        when it did not attach in time, 0 when it holds it, with stdout
        :data:`HELD` when it held it already (for this very directory).
    """
    containers.check_nova_ctid(ctid)
    timeout = int(timeout)
    with _instance_dir(directory) as dir_fd:
        _stop_legacy_logger(directory, dir_fd)
        try:
            with agent(start=True) as sock:
                reply = _request(sock, _attach_request(
                    ctid, os.path.basename(directory), max_bytes, timeout),
                    dir_fd, timeout=timeout + REPLY_SECONDS)
        except AgentError as e:
            return privsep.Result(1, '', str(e))
    if reply.get('new') is False:
        return privsep.Result(0, HELD, '')
    if 'exit_code' in reply:
        return privsep.Result(reply['exit_code'], '',
                              reply.get('stderr', ''))
    return privsep.Result(0, '', '')


@privsep.vz_pctxt.entrypoint
def detach_console(directory):
    """Detach the console of ``directory``'s instance.

    :returns: ``(address, port)`` of the serial console it served, or None.
    """
    name = _instance_name(directory)
    try:
        with _instance_dir(directory) as dir_fd:
            _stop_legacy_logger(directory, dir_fd)
    except (FileNotFoundError, privsep.ArgumentRejected):
        pass    # no directory (or a link): nothing of ours is there
    with agent() as sock:
        if sock is None:
            return None
        reply = _request(sock, {'op': 'detach', 'name': name})
    return tuple(reply['serial']) if reply.get('serial') else None


@privsep.vz_pctxt.entrypoint
def serve_serial_console(directory, address, port):
    """Have the agent serve the console on ``address``:``port`` (TCP).

    Only Nova's ``[serial_console] proxyclient_address`` and ports of its
    ``port_range`` are served.  ``port`` None only asks where it serves.

    :returns: ``(address, port)`` where it serves, None when it does not
        (or does not hold the console), or ``errno.EADDRINUSE`` when the
        port is taken.
    """
    name = _instance_name(directory)
    if not CONF.serial_console.enabled:
        raise privsep.ArgumentRejected('the serial console is disabled')
    if address != CONF.serial_console.proxyclient_address:
        raise privsep.ArgumentRejected('%r is not [serial_console] '
                                       'proxyclient_address' % (address,))
    if port is not None:
        start, stop = (int(p) for p in
                       CONF.serial_console.port_range.split(':'))
        if not isinstance(port, int) or not start <= port < stop:
            raise privsep.ArgumentRejected('port %r is outside [serial_'
                                           'console] port_range' % (port,))
    with agent() as sock:
        if sock is None:
            return None
        reply = _request(sock, {'op': 'serve', 'name': name,
                                'address': address, 'port': port})
    if reply.get('errno') == errno.EADDRINUSE:
        return errno.EADDRINUSE
    return tuple(reply['serial']) if reply.get('serial') else None


@privsep.vz_pctxt.entrypoint
def console_agent_status():
    """``{"pid": N, "sessions": [...]}`` of the host's agent, or None."""
    with agent() as sock:
        if sock is None:
            return None
        return _request(sock, {'op': 'list'})


@privsep.vz_pctxt.entrypoint
def console_log_tail(directory, max_bytes):
    """The last ``max_bytes`` of the console log, or None if there is none.

    The log may have been rotated once: its older part is read too.
    """
    chunks, remaining, found = [], int(max_bytes), False
    try:
        with _instance_dir(directory) as dir_fd:
            for name in CONSOLE_FILES:
                if remaining <= 0:
                    break
                try:
                    fd = _open_regular(name, dir_fd)
                except FileNotFoundError:
                    continue
                try:
                    size = os.fstat(fd).st_size
                    start = max(0, size - remaining)
                    data = os.pread(fd, size - start, start)
                finally:
                    os.close(fd)
                found = True
                chunks.insert(0, data)
                remaining -= len(data)
    except FileNotFoundError:
        return None
    return b''.join(chunks) if found else None
