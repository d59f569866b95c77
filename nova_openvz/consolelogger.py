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

"""Keep a container's console attached and append what it says to a log.

vzctl offers a container's console only as an interactive session
(``vzctl console <CT>``, reference 1.8): persistent, attachable while the
container is stopped, left with Esc then ``.``.  This small process is that
session's terminal.  It runs vzctl console on a pseudo-terminal and appends
everything the console prints to ``<dir>/console.log``, renaming a full log
to ``console.log.0`` so at most two files of ``--max-bytes`` each are kept.
SIGTERM makes it detach the way a user would (Esc ``.``) and exit.

It is started by the privileged entrypoint
:func:`nova_openvz.privsep.console.start_console_logger`, never by hand::

    python -m nova_openvz.consolelogger --vzctl PATH --ctid N --dir DIR \\
        --dir-fd FD --max-bytes N --timeout SECONDS

Every file it writes is opened relative to the instance directory's
descriptor ``FD``, inherited from the entrypoint, never by path: the
directory belongs to nova-compute, which could swap it (or any path to
it) for a link while the logger runs.  ``--dir`` only names the logger.

The first process waits until vzctl says it attached, then exits 0 and
leaves the logger running in its own session; if vzctl fails first, it
exits with vzctl's exit code and passes on vzctl's message.  Standard
library only, so each logger stays small.
"""

import argparse
import errno
import fcntl
import os
import selectors
import signal
import stat
import struct
import subprocess
import sys
import termios
import time
import tty

LOG_NAME = 'console.log'
PID_NAME = 'console.pid'
#: What vzctl prints on stderr once the console is open (V4 src/enter.c).
ATTACHED = b'Attached to CT'
#: Esc then '.' at the start of a line: vzctl's detach sequence.
DETACH = b'\x1b.'
#: How long vzctl may take to detach before it is killed.
DETACH_SECONDS = 5
READ_SIZE = 65536
#: vzctl's messages kept to report a failure.
MESSAGE_BYTES = 4096


def _open_file(name, dir_fd, flags):
    """A plain file of the directory: never a link, nor linked elsewhere."""
    fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                 dir_fd=dir_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise OSError(errno.EPERM, 'not a plain file of its own', name)
    return fd


class RotatingLog(object):
    """``console.log`` in a directory, renamed to ``.0`` when full."""

    def __init__(self, dir_fd, max_bytes):
        self.dir_fd = dir_fd
        self.max_bytes = max_bytes
        self.fd = None   # opened at the first output: a failed attach
        self.size = 0    # leaves no log

    def _open(self):
        self.fd = _open_file(LOG_NAME, self.dir_fd,
                             os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        self.size = os.fstat(self.fd).st_size

    def write(self, data):
        if self.fd is None:
            self._open()
        elif self.size and self.size + len(data) > self.max_bytes:
            os.close(self.fd)
            os.replace(LOG_NAME, LOG_NAME + '.0', src_dir_fd=self.dir_fd,
                       dst_dir_fd=self.dir_fd)
            self._open()
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.size += len(data)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)


def _report(fd, code, message=b''):
    """Tell the waiting first process how attaching went (once)."""
    if fd is not None:
        os.write(fd, b'%d\n' % code + message[-MESSAGE_BYTES:])
        os.close(fd)


def _write_pid(dir_fd):
    fd = _open_file(PID_NAME, dir_fd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, b'%d\n' % os.getpid())
    finally:
        os.close(fd)


def _remove_pid(dir_fd):
    try:
        with os.fdopen(_open_file(PID_NAME, dir_fd, os.O_RDONLY), 'rb') as f:
            mine = f.read().strip() == b'%d' % os.getpid()
        if mine:
            os.unlink(PID_NAME, dir_fd=dir_fd)
    except OSError:
        pass


def _terminal():
    """A pseudo-terminal pair, raw, 80x24 (vzctl copies the size)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 80, 0, 0))
    return master, slave


def run(args, report_fd):
    """Attach, log until told to stop or vzctl ends; vzctl's exit code."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: None)
    log = RotatingLog(args.dir_fd, args.max_bytes)
    master, slave = _terminal()
    proc = None
    messages = b''
    try:
        # vzctl shares this process group: killing the group takes both.
        proc = subprocess.Popen(
            [args.vzctl, 'console', str(args.ctid)], stdin=slave,
            stdout=slave, stderr=subprocess.PIPE, close_fds=True,
            env={'LC_ALL': 'C', 'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'})
        os.close(slave)
        _write_pid(args.dir_fd)
        selector = selectors.DefaultSelector()
        selector.register(master, selectors.EVENT_READ, 'console')
        selector.register(proc.stderr, selectors.EVENT_READ, 'messages')
        selector.register(wake_read, selectors.EVENT_READ, 'signal')
        attach_by = time.monotonic() + args.timeout
        kill_at = None
        while True:
            deadline = attach_by if report_fd is not None else kill_at
            timeout = None if deadline is None else \
                max(0, deadline - time.monotonic())
            for key, _ in selector.select(timeout):
                if key.data == 'console':
                    try:
                        data = os.read(master, READ_SIZE)
                    except OSError:    # EIO: vzctl closed the terminal
                        data = b''
                    if not data:
                        return proc.wait()
                    log.write(data)
                elif key.data == 'messages':
                    data = os.read(proc.stderr.fileno(), READ_SIZE)
                    if not data:
                        selector.unregister(proc.stderr)
                    messages = (messages + data)[-MESSAGE_BYTES:]
                    if report_fd is not None and ATTACHED in messages:
                        _report(report_fd, 0)
                        report_fd = None
                else:
                    os.read(wake_read, READ_SIZE)
                    if kill_at is None:
                        os.write(master, DETACH)
                        kill_at = time.monotonic() + DETACH_SECONDS
            now = time.monotonic()
            if report_fd is not None and now >= attach_by:
                messages += b'vzctl console did not attach within %ds' % \
                    args.timeout
                return None
            if kill_at is not None and now >= kill_at:
                return None
    finally:
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            code = proc.wait()
            messages += proc.stderr.read()
        _report(report_fd, code or 1, messages)
        log.close()
        _remove_pid(args.dir_fd)


def _daemonize():
    """Fork; the parent returns the report it gets, the child ``None``."""
    report_read, report_write = os.pipe()
    if os.fork():
        os.close(report_write)
        chunks = []
        while True:
            chunk = os.read(report_read, READ_SIZE)
            if not chunk:
                break
            chunks.append(chunk)
        return b''.join(chunks), None
    os.close(report_read)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    os.chdir('/')
    return None, report_write


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='nova-openvz console logger')
    parser.add_argument('--vzctl', required=True)
    parser.add_argument('--ctid', type=int, required=True)
    parser.add_argument('--dir', required=True)
    parser.add_argument('--dir-fd', type=int, required=True)
    parser.add_argument('--max-bytes', type=int, required=True)
    parser.add_argument('--timeout', type=int, default=60)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report, report_fd = _daemonize()
    if report_fd is None:
        code, _, message = report.partition(b'\n')
        if not code:
            code, message = b'1', b'console logger ended before attaching'
        sys.stderr.write(message.decode('utf-8', 'replace'))
        return int(code)
    try:
        run(args, report_fd)
    finally:
        os._exit(0)


if __name__ == '__main__':
    sys.exit(main())
