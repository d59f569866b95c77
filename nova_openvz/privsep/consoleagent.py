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

"""The host's console agent: every container's console, logged and served.

vzctl offers a container's console only as an interactive session
(``vzctl console <CT>``, reference 1.8): persistent, attachable while the
container is stopped, left with Esc then ``.``.  One agent per host holds
each container's session on a pseudo-terminal of its own and

* appends everything the console prints to ``console.log`` in the
  instance's directory, renaming a full log to ``console.log.0`` so at
  most two files of ``max_bytes`` each are kept;
* on request, listens on a TCP port (Nova's serial console) and copies
  the console to each client and what a client types to the console, the
  log recording all the while.

It is started, found and driven only by the privileged entrypoints of
:mod:`nova_openvz.privsep.console`, through a unix socket in a root-only
run directory::

    python -I <this file> --run-dir DIR

It runs as a script, not as a module of its package, so that it loads
nothing but the standard library (the package would load oslo.privsep and
Nova's options).

Requests are JSON datagrams on that ``SOCK_SEQPACKET`` socket, each with an
``id`` its reply repeats; an ``attach`` carries the instance directory's
descriptor (``SCM_RIGHTS``), opened by the privileged side without
following links.  Every file the agent writes is opened relative to that
descriptor, never by path: the directory belongs to nova-compute, which
could swap it (or any path to it) for a link at any time.

The agent keeps ``sessions.json`` in its run directory (what it holds, so
that a new agent can take over after this one died), exits when it has held
no session for :data:`IDLE_SECONDS`, and exits at once, detaching
everything, when its socket is no longer in the run directory (nobody
could reach it to stop it).  SIGTERM detaches every session and exits.
Standard library only, so that the agent stays small.
"""

import argparse
import array
import errno
import fcntl
import json
import os
import re
import resource
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import termios
import time
import tty

SOCKET_NAME = 'console-agent.sock'
LOCK_NAME = 'console-agent.lock'
STATE_NAME = 'sessions.json'
LOG_NAME = 'console.log'
#: What vzctl prints on stderr once the console is open (V4 src/enter.c).
ATTACHED = b'Attached to CT'
#: Esc then '.' at the start of a line: vzctl's detach sequence.
DETACH = b'\x1b.'
ESC = 0x1b
#: Bytes after which a line starts, for vzctl's Esc sequences.
LINE_ENDS = b'\r\n'
#: What Esc at the start of a line followed by one of these means to vzctl
#: (detach, SAK): never passed on from a serial client.
VZCTL_COMMANDS = b'.!'
#: How long vzctl may take to detach before it is killed.
DETACH_SECONDS = 5
#: How long the agent stays without any session before it exits.
IDLE_SECONDS = 10
TICK_SECONDS = 1
READ_SIZE = 65536
#: vzctl's messages kept to report a failure.
MESSAGE_BYTES = 4096
MAX_REQUEST = 65536
#: Serial clients of one console at a time; more are turned away.
MAX_CLIENTS = 4
#: Output queued for a slow serial client before it is disconnected.
CLIENT_BACKLOG = 256 * 1024
VEID_MAX = 2147483644
UUID_RE = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                     r'[0-9a-f]{12}\Z')
TOOL_ENV = {'LC_ALL': 'C', 'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'}


class RequestError(ValueError):
    """A request the agent does not accept."""


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
            self.close()
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
            self.fd = None


def _terminal():
    """A pseudo-terminal pair, raw, 80x24 (vzctl copies the size)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 80, 0, 0))
    os.set_blocking(master, False)
    return master, slave


class Session(object):
    """One container's ``vzctl console``, its log and its serial port."""

    def __init__(self, name, ctid, dir_fd, max_bytes, vzctl, timeout):
        self.name = name
        self.ctid = ctid
        self.dir_fd = dir_fd
        info = os.fstat(dir_fd)
        self.directory = (info.st_dev, info.st_ino)
        self.max_bytes = max_bytes
        self.log = RotatingLog(dir_fd, max_bytes)
        self.messages = b''
        self.attached = False
        self.waiters = []          # (connection, id) awaiting the attach
        self.detach_waiters = []   # (connection, id) awaiting the end
        self.attach_by = time.monotonic() + timeout
        self.kill_at = None
        self.listener = None
        self.serial = None         # (address, port) while listening
        self.clients = {}          # socket -> bytearray of pending output
        self.line_start = True     # of what was sent to vzctl
        self.escape = False        # a client's Esc at a line start, held
        self.master, slave = _terminal()
        try:
            # In a session of its own: its process group goes with it.
            self.proc = subprocess.Popen(
                [vzctl, 'console', str(ctid)], stdin=slave, stdout=slave,
                stderr=subprocess.PIPE, close_fds=True,
                start_new_session=True, env=TOOL_ENV)
        except BaseException:
            os.close(self.master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(self.proc.stderr.fileno(), False)

    def describe(self):
        return {'name': self.name, 'ctid': self.ctid, 'pid': self.proc.pid,
                'attached': self.attached,
                'serial': list(self.serial) if self.serial else None,
                'clients': len(self.clients)}

    def state(self):
        return {'name': self.name, 'ctid': self.ctid,
                'max_bytes': self.max_bytes}

    def same(self, ctid, dir_fd):
        info = os.fstat(dir_fd)
        return ctid == self.ctid and \
            (info.st_dev, info.st_ino) == self.directory

    def send_to_console(self, data):
        """Input for the container; dropped when vzctl does not keep up."""
        try:
            os.write(self.master, data)
        except (BlockingIOError, OSError):
            pass
        if data:
            self.line_start = data[-1:] in (b'\r', b'\n')

    def typed(self, data):
        """What a serial client typed, without vzctl's own commands.

        Esc at the start of a line followed by ``.`` or ``!`` would detach
        the session or send SAK: both are dropped; any other Esc goes on.
        """
        out = bytearray()
        line_start = self.line_start
        for byte in data:
            if self.escape:
                self.escape = False
                if byte in VZCTL_COMMANDS:
                    continue
                out.append(ESC)
            elif byte == ESC and line_start:
                self.escape = True
                continue
            out.append(byte)
            line_start = byte in LINE_ENDS
        if out:
            self.send_to_console(bytes(out))

    def detach(self):
        """Ask vzctl to detach (Esc ``.``); kill it if it does not.

        Esc ``.`` detaches only at the start of a line.  After a client's
        unfinished line vzctl is killed instead: an Enter to start a new
        line would run what the client typed.
        """
        if self.kill_at is None:
            if self.line_start:
                self.send_to_console(DETACH)
                self.kill_at = time.monotonic() + DETACH_SECONDS
            else:
                self.kill()
                self.kill_at = time.monotonic()

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass


class Agent(object):

    def __init__(self, run_dir, idle_seconds=IDLE_SECONDS):
        # Everything in the run directory is reached through the working
        # directory, opened once without following links.
        os.umask(0o077)
        run_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY |
                         os.O_NOFOLLOW | os.O_CLOEXEC)
        os.fchdir(run_fd)
        os.close(run_fd)
        self.idle_seconds = idle_seconds
        self.sessions = {}      # name -> Session
        self.ending = []        # sessions detached or replaced, not yet gone
        self.connections = set()
        self.idle_since = time.monotonic()
        self.stopping = False
        self.keep_state = False
        self.selector = selectors.DefaultSelector()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.server.bind(SOCKET_NAME)
        self.server_inode = os.stat(SOCKET_NAME).st_ino
        self.server.listen(64)
        self.selector.register(self.server, selectors.EVENT_READ,
                               ('server', None))
        self.wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT,
                       signal.SIGHUP):
            signal.signal(signum, lambda *_: None)
        self.selector.register(self.wake_read, selectors.EVENT_READ,
                               ('signal', None))
        # A host with hundreds of containers needs a few descriptors each.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    # -- the loop ------------------------------------------------------------

    def run(self):
        next_tick = time.monotonic()
        while True:
            timeout = max(0, next_tick - time.monotonic())
            for key, mask in self.selector.select(timeout):
                if self.selector.get_map().get(key.fd) is not key:
                    continue    # closed by an earlier event of this round
                kind, owner = key.data
                try:
                    getattr(self, '_on_' + kind)(key.fileobj, owner, mask)
                except Exception:    # noqa: B902 - one bad peer, not all
                    if kind in ('connection', 'client'):
                        self._drop(key.fileobj, owner)
                    elif owner is not None:
                        self._end(owner, kill=True)
                    else:
                        raise
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK_SECONDS
                if self._tick():
                    return

    def _tick(self):
        """Timers; True when the agent should exit."""
        now = time.monotonic()
        self._reap()
        for session in list(self.sessions.values()) + self.ending:
            if not session.attached and session.kill_at is None and \
                    now >= session.attach_by:
                session.messages += (b'vzctl console did not attach in '
                                     b'time')
                session.kill_at = now
            if session.kill_at is not None and now >= session.kill_at:
                session.kill()
        try:
            ours = os.stat(SOCKET_NAME).st_ino == self.server_inode
        except OSError:
            ours = False
        if not ours or self.stopping:
            # Nobody can reach this agent any more: let nothing outlive it.
            self._stop_all()
            return True
        if self.sessions or self.ending or self.connections:
            self.idle_since = now
        elif now - self.idle_since >= self.idle_seconds:
            return self._leave_if_unused()
        return False

    def _leave_if_unused(self):
        """Exit unless a privileged caller holds the lock (is talking)."""
        lock = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW |
                       os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)
            return False
        # Under the lock nobody connects: the socket can go.
        for name in (SOCKET_NAME, STATE_NAME):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
        return True

    def _stop_all(self):
        # What was held stays in sessions.json: a new agent takes it over.
        self.keep_state = True
        for session in list(self.sessions.values()):
            self._end(session)
        deadline = time.monotonic() + DETACH_SECONDS
        while self.ending and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for session in self.ending:
            session.kill()
        self._reap()

    # -- control connections ------------------------------------------------

    def _on_signal(self, fd, _owner, _mask):
        for signum in os.read(fd, READ_SIZE):
            if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                self.stopping = True
        self._reap()

    def _on_server(self, server, _owner, _mask):
        try:
            conn, _ = server.accept()
        except OSError:
            return
        uid = struct.unpack('3i', conn.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED,
            struct.calcsize('3i')))[1]
        if uid != os.geteuid():
            conn.close()
            return
        conn.settimeout(5)
        self.connections.add(conn)
        self.selector.register(conn, selectors.EVENT_READ,
                               ('connection', None))

    def _on_connection(self, conn, _owner, _mask):
        fds = array.array('i')
        data, ancdata, _, _ = conn.recvmsg(
            MAX_REQUEST, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) -
                                      len(payload) % fds.itemsize])
        if not data:
            for fd in fds:
                os.close(fd)
            self._drop(conn, None)
            return
        request = {}
        try:
            request = json.loads(data)
            if not isinstance(request, dict):
                raise RequestError('a request is a JSON object')
            op = request.get('op')
            handler = getattr(self, '_op_%s' % op, None)
            if op not in ('attach', 'detach', 'serve', 'list'):
                raise RequestError('unknown request %r' % (op,))
            fd = fds.pop(0) if fds else None
            reply = handler(conn, request, fd)
        except (ValueError, TypeError, KeyError, OSError) as e:
            reply = {'error': str(e),
                     'errno': getattr(e, 'errno', None) or 0}
        finally:
            for fd in fds:
                os.close(fd)
        if reply is not None:
            self._reply(conn, request.get('id'), reply)

    def _reply(self, conn, request_id, reply):
        reply = dict(reply, id=request_id)
        try:
            conn.send(json.dumps(reply).encode())
        except OSError:
            self._drop(conn, None)

    def _unregister(self, fileobj):
        try:
            self.selector.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    def _drop(self, sock, session):
        if session is not None:
            session.clients.pop(sock, None)
        else:
            self.connections.discard(sock)
        self._unregister(sock)
        sock.close()

    # -- requests -------------------------------------------------------------

    def _op_list(self, _conn, _request, fd):
        if fd is not None:
            os.close(fd)
        return {'pid': os.getpid(),
                'sessions': [s.describe() for s in self.sessions.values()]}

    def _op_attach(self, conn, request, fd):
        """Hold ``ctid``'s console for the instance ``name`` (idempotent).

        Replies ``{"new": false}`` when it was held already, ``{"new":
        true}`` once vzctl said it attached (at once with ``"wait":
        false``), else vzctl's ``exit_code`` and ``stderr``.
        """
        if fd is None:
            raise RequestError('attach needs the instance directory')
        try:
            name = _uuid(request['name'])
            ctid = int(request['ctid'])
            max_bytes = int(request['max_bytes'])
            timeout = float(request['timeout'])
            vzctl = request['vzctl']
            if not 1 <= ctid <= VEID_MAX or max_bytes < 1 or \
                    not isinstance(vzctl, str) or not os.path.isabs(vzctl):
                raise RequestError('bad attach request')
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise RequestError('not a directory')
            held = self.sessions.get(name)
            if held is not None and held.same(ctid, fd):
                os.close(fd)
                if held.attached or not request.get('wait', True):
                    return {'new': False}
                held.waiters.append((conn, request.get('id')))
                return None
            # The instance has another container or directory now, or the
            # container another instance: the old session must not log it.
            for other in list(self.sessions.values()):
                if other.name == name or other.ctid == ctid:
                    self._end(other, kill=True)
            session = Session(name, ctid, fd, max_bytes, vzctl, timeout)
        except BaseException:
            os.close(fd)
            raise
        self.sessions[name] = session
        self.selector.register(session.master, selectors.EVENT_READ,
                               ('console', session))
        self.selector.register(session.proc.stderr, selectors.EVENT_READ,
                               ('messages', session))
        self._save_state()
        if not request.get('wait', True):
            return {'new': True}
        session.waiters.append((conn, request.get('id')))
        return None

    def _op_detach(self, conn, request, fd):
        """Detach ``name``'s console; the reply comes once vzctl is gone."""
        if fd is not None:
            os.close(fd)
        session = self.sessions.get(_uuid(request['name']))
        if session is None:
            return {'detached': False, 'serial': None}
        session.detach_waiters.append((conn, request.get('id')))
        self._end(session)
        return None

    def _op_serve(self, _conn, request, fd):
        """Listen for serial clients of ``name``'s console.

        Replies where it listens: already, or now on ``address``/``port``
        (``port`` null: only if already).
        """
        if fd is not None:
            os.close(fd)
        session = self.sessions.get(_uuid(request['name']))
        if session is None:
            return {'serial': None, 'attached': False}
        if session.serial is None and request.get('port') is not None:
            address, port = str(request['address']), int(request['port'])
            family, kind, proto, _, where = socket.getaddrinfo(
                address, port, 0, socket.SOCK_STREAM)[0]
            listener = socket.socket(family, kind, proto)
            try:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(where)
                listener.listen(MAX_CLIENTS)
                listener.setblocking(False)
            except OSError:
                listener.close()
                raise
            session.listener = listener
            session.serial = (address, port)
            self.selector.register(listener, selectors.EVENT_READ,
                                   ('listener', session))
        return {'serial': list(session.serial) if session.serial else None,
                'attached': True}

    # -- sessions -------------------------------------------------------------

    def _on_console(self, fd, session, _mask):
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:    # EIO: vzctl closed the terminal
            data = b''
        if not data:
            self._unregister(fd)
            self._reap()
            return
        try:
            session.log.write(data)
        except OSError:
            # A full disk, or the directory went: the console goes on.
            session.log.close()
        for client in list(session.clients):
            self._to_client(client, session, data)

    def _on_messages(self, pipe, session, _mask):
        try:
            data = os.read(pipe.fileno(), READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            self._unregister(pipe)
            self._reap()
            return
        session.messages = (session.messages + data)[-MESSAGE_BYTES:]
        if not session.attached and ATTACHED in session.messages:
            session.attached = True
            for conn, request_id in session.waiters:
                self._reply(conn, request_id, {'new': True})
            session.waiters = []

    def _on_listener(self, listener, session, _mask):
        try:
            client, _ = listener.accept()
        except OSError:
            return
        if len(session.clients) >= MAX_CLIENTS:
            client.close()
            return
        client.setblocking(False)
        session.clients[client] = bytearray()
        self.selector.register(client, selectors.EVENT_READ,
                               ('client', session))

    def _on_client(self, client, session, mask):
        if mask & selectors.EVENT_WRITE:
            self._to_client(client, session, b'')
        if mask & selectors.EVENT_READ:
            try:
                data = client.recv(READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                self._drop(client, session)
                return
            session.typed(data)

    def _to_client(self, client, session, data):
        pending = session.clients.get(client)
        if pending is None:
            return
        pending += data
        try:
            sent = client.send(pending) if pending else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(client, session)
            return
        del pending[:sent]
        if len(pending) > CLIENT_BACKLOG:
            self._drop(client, session)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if pending
                                         else 0)
        if self.selector.get_key(client).events != events:
            self.selector.modify(client, events, ('client', session))

    def _close_serial(self, session):
        for client in list(session.clients):
            self._drop(client, session)
        if session.listener is not None:
            self._unregister(session.listener)
            session.listener.close()
            session.listener = None

    def _end(self, session, kill=False):
        """Stop logging and serving ``session``; vzctl detaches or dies."""
        if self.sessions.get(session.name) is session:
            del self.sessions[session.name]
            self.ending.append(session)
            self._save_state()
        self._close_serial(session)
        if kill:
            session.kill()
        else:
            session.detach()

    def _reap(self):
        """Finish every session whose vzctl exited."""
        for session in list(self.sessions.values()) + self.ending:
            if session.proc.poll() is not None:
                self._finish(session)

    def _finish(self, session):
        for fileobj in (session.master, session.proc.stderr):
            self._unregister(fileobj)
        try:
            while True:    # what vzctl said last (a failed attach)
                data = os.read(session.proc.stderr.fileno(), READ_SIZE)
                if not data:
                    break
                session.messages = (session.messages + data)[-MESSAGE_BYTES:]
        except OSError:
            pass
        try:    # and what the console printed last
            while True:
                data = os.read(session.master, READ_SIZE)
                if not data:
                    break
                session.log.write(data)
        except OSError:
            pass
        self._close_serial(session)
        os.close(session.master)
        session.proc.stderr.close()
        session.log.close()
        os.close(session.dir_fd)
        for conn, request_id in session.waiters:
            # Never attached: vzctl's exit code, None when it was killed.
            self._reply(conn, request_id, {
                'exit_code': session.proc.returncode
                if session.kill_at is None else None,
                'stderr': session.messages.decode('utf-8', 'replace')})
        for conn, request_id in session.detach_waiters:
            self._reply(conn, request_id, {
                'detached': True,
                'serial': list(session.serial) if session.serial else None})
        if self.sessions.get(session.name) is session:
            del self.sessions[session.name]    # the container went
            self._save_state()
        elif session in self.ending:
            self.ending.remove(session)

    def _save_state(self):
        """Write what the agent holds, for a successor if it dies."""
        if self.keep_state:
            return
        data = json.dumps({'sessions': [s.state() for s in
                                        self.sessions.values()]}).encode()
        try:
            fd = os.open(STATE_NAME + '.tmp', os.O_WRONLY | os.O_CREAT |
                         os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.replace(STATE_NAME + '.tmp', STATE_NAME)
        except OSError:
            pass    # the run directory went: the agent leaves at its tick


def _uuid(name):
    if not isinstance(name, str) or not UUID_RE.match(name):
        raise RequestError('%r is not an instance UUID' % (name,))
    return name


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
    return None, report_write


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='nova-openvz console agent')
    parser.add_argument('--run-dir', required=True)
    parser.add_argument('--idle-seconds', type=float, default=IDLE_SECONDS)
    return parser.parse_args(argv)


def main(argv=None):
    """Start the agent in the background once its socket listens.

    Exits 0 then; else 1 with the reason on stderr.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report, report_fd = _daemonize()
    if report_fd is None:
        if report != b'listening\n':
            sys.stderr.write(report.decode('utf-8', 'replace') or
                             'console agent ended before listening')
            return 1
        return 0
    try:
        try:
            agent = Agent(args.run_dir, args.idle_seconds)
        except Exception as e:    # noqa: B902 - reported to the starter
            os.write(report_fd, ('console agent: %s' % e).encode())
            return 1
        os.write(report_fd, b'listening\n')
        os.close(report_fd)
        agent.run()
    finally:
        os._exit(0)


if __name__ == '__main__':
    sys.exit(main())
