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

"""Console loggers: start, find, stop them and read their log.

What runs as root: the logger (:mod:`nova_openvz.consolelogger`, which runs
``vzctl console``), signals to it, and reads of its log.
"""

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time

from nova_openvz import privsep

CONF = privsep.CONF

# A container's console is an interactive vzctl session (reference 1.8), so
# a small logger process (nova_openvz.consolelogger) holds one open per
# container and appends it to console.log in the instance's directory.  Its
# pid file lives there too; since nova-compute owns that directory, a pid is
# trusted only if /proc shows our logger for that very directory.

CONSOLE_LOGGER = 'nova_openvz.consolelogger'
CONSOLE_FILES = ('console.log', 'console.log.0')
CONSOLE_PID = 'console.pid'
#: A logger detaches within its own 5 seconds, or is killed.
CONSOLE_STOP_SECONDS = 10


@contextlib.contextmanager
def _instance_dir(directory):
    """An fd of the instance directory (see :func:`.open_instance_dir`)."""
    fd = privsep.open_instance_dir(directory)
    try:
        yield fd
    finally:
        os.close(fd)


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


def _console_logger_pid(directory, dir_fd, ctid=None):
    """Pid of the live logger of ``directory`` (and ``ctid``), or None."""
    try:
        fd = _open_regular(CONSOLE_PID, dir_fd)
        with os.fdopen(fd, 'rb') as f:
            pid = int(f.read(32).strip())
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            argv = f.read().split(b'\0')
    except (OSError, ValueError):    # ArgumentRejected included
        return None
    wanted = [(b'-m', CONSOLE_LOGGER), (b'--dir', directory)]
    if ctid is not None:
        wanted.append((b'--ctid', str(ctid)))
    for flag, value in wanted:
        pairs = zip(argv, argv[1:])
        if (flag, value.encode()) not in pairs:
            return None
    return pid if _process_alive(pid) else None


@privsep.vz_pctxt.entrypoint
def console_logger_attached(ctid, directory):
    """Whether a logger holds container ``ctid``'s console already."""
    privsep.check_ctid(str(int(ctid)))
    try:
        with _instance_dir(directory) as dir_fd:
            return _console_logger_pid(directory, dir_fd, ctid) is not None
    except FileNotFoundError:
        return False


@privsep.vz_pctxt.entrypoint
def start_console_logger(ctid, directory, max_bytes, timeout):
    """Attach a logger to container ``ctid``'s console, unless one is.

    :returns: the attach's :data:`nova_openvz.privsep.Result`: vzctl
        console's own exit code and message when it failed; success with
        no output when a logger was attached already.
    """
    privsep.check_ctid(str(int(ctid)))
    with _instance_dir(directory) as dir_fd:
        if _console_logger_pid(directory, dir_fd, ctid) is not None:
            return privsep.Result(0, '', '')
        timeout = int(timeout)
        # The logger writes only through the descriptor it inherits;
        # ``--dir`` only names it, for _console_logger_pid.
        argv = [sys.executable, '-I', '-m', CONSOLE_LOGGER,
                '--vzctl', os.path.join(CONF.openvz.tools_dir, 'vzctl'),
                '--ctid', str(int(ctid)), '--dir', directory,
                '--dir-fd', str(dir_fd), '--max-bytes', str(int(max_bytes)),
                '--timeout', str(timeout)]
        try:
            proc = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True,
                env={'LC_ALL': 'C', 'PATH': privsep.TOOL_PATH},
                pass_fds=(dir_fd,), timeout=timeout + 10, check=False)
        except subprocess.TimeoutExpired:
            return privsep.Result(None, '', '')
    return privsep.Result(proc.returncode,
                          proc.stdout.decode('utf-8', 'replace'),
                          proc.stderr.decode('utf-8', 'replace'))


@privsep.vz_pctxt.entrypoint
def stop_console_logger(directory):
    """Detach the console logger of ``directory``; True if one ran."""
    try:
        with _instance_dir(directory) as dir_fd:
            pid = _console_logger_pid(directory, dir_fd)
    except FileNotFoundError:
        return False
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + CONSOLE_STOP_SECONDS
    while _process_alive(pid):
        if time.monotonic() > deadline:
            # The logger leads its own process group, with its vzctl.
            os.killpg(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    return True


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
