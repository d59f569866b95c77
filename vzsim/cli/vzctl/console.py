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

"""Simulated ``vzctl console <CT> [ttynum]``.

vzctl 4 (``do_console_attach`` in V4 ``src/enter.c``) opens the container's
tty through the kernel, prints ``Attached to CT <id> (ESC . to detach)`` on
stderr, copies what the tty says to stdout from then on, and sends what it
reads on stdin to the tty, with stdin in raw mode when it is a terminal.
Esc then ``.`` at the start of a line detaches (exit 0), Esc then ``!``
sends SAK; when stdin ends it warns ``stdin read error`` and exits 3.
Either way it says ``Detached from CT <id>`` on stderr.  The console is
persistent (reference 1.8): it can be attached while the container is
stopped, and it shows what each boot writes.

The simulated tty 0 (tty1, the console) is the kernel's console file
(:meth:`Kernel.console_path`), followed from its end at attach time; other
ttys never say anything.  What is typed goes to the console's input
(:meth:`Kernel.console_input_path`), a FIFO that is a real container's
init's standard input, with Enter (CR) turned into a newline as a tty's
ICRNL does; there is no echo and no line editing.  Input is dropped while
the container is stopped, on a modelled host and on ttys other than 0.
Unlike a real tty, the simulated one closes when its container is
destroyed or the host directory goes, and vzctl then detaches as if stdin
had ended, so no console session outlives its host.
"""

import os
import select
import sys
import termios
import threading
import tty

E_SYSTEM = 3
E_SYNTAX = 20
E_VALUE = 21
ESC = 0x1b
ENTER = 0x0d
#: How often the follower looks for new console output.
POLL_SECONDS = 0.1


class _Follower(threading.Thread):
    """Copy what is appended to ``path`` to stdout until told to stop."""

    def __init__(self, path, alive):
        super().__init__(daemon=True)
        self.path = path
        self.alive = alive
        self.stop = threading.Event()
        self.closed = threading.Event()
        try:
            self.offset = os.stat(path).st_size
        except FileNotFoundError:
            self.offset = 0

    def run(self):
        try:
            while not self.stop.is_set():
                if not self._copy() and not self.alive():
                    break
                self.stop.wait(POLL_SECONDS)
            self._copy()
        finally:
            self.closed.set()

    def _copy(self):
        try:
            with open(self.path, 'rb') as f:
                if os.fstat(f.fileno()).st_size < self.offset:
                    self.offset = 0    # a new file: follow it from its start
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return False
        if data:
            self.offset += len(data)
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
        return True


def _type(path, data):
    """Send ``data`` to the console's input, if a container reads it."""
    if path is None:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:    # no FIFO (modelled), or nobody reads it (stopped)
        return
    try:
        os.write(fd, data.replace(b'\r', b'\n'))
    except OSError:    # a full pipe: nobody reads what is typed
        pass
    finally:
        os.close(fd)


def _raw_stdin():
    """Put a terminal stdin in raw mode; return how to restore it."""
    try:
        saved = termios.tcgetattr(0)
    except termios.error:
        sys.stderr.write('Unable to get term attr\n')
        return lambda: None
    tty.setraw(0, termios.TCSADRAIN)   # as vzctl: keep pending input
    return lambda: termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _read_byte(follower):
    """One byte of stdin, or None when stdin ended or the tty closed."""
    while True:
        if follower.closed.is_set():
            return None
        ready, _, _ = select.select([0], [], [], POLL_SECONDS)
        if ready:
            data = os.read(0, 1)
            return data[0] if data else None


def attach(call):
    """The ``console`` command; ``call`` is a :class:`vzctl.Call`."""
    words = call.positional
    if len(words) > 1:
        call.out.error('Invalid syntax: too many parameters!')
        return E_SYNTAX
    ttyno = 0
    if words:
        try:
            ttyno = int(words[0])
        except ValueError:
            ttyno = -1
        if ttyno < 0:
            call.out.error('Invalid tty number: %s' % words[0])
            return E_VALUE
    host, ctid = call.host, call.ctid
    path = call.kernel.console_path(ctid) if ttyno == 0 else os.devnull
    typed = call.kernel.console_input_path(ctid) if ttyno == 0 else None
    follower = _Follower(path, lambda: host.has_config(ctid))
    sys.stderr.write('Attached to CT %d (ESC . to detach)\n' % ctid)
    sys.stderr.flush()
    follower.start()
    restore = _raw_stdin()
    code = E_SYSTEM
    try:
        new_line = True
        while True:
            byte = _read_byte(follower)
            if byte is None:
                sys.stderr.write('vzctl: stdin read error\n')
                break
            if byte == ESC and new_line:
                byte = _read_byte(follower)
                if byte is None:
                    sys.stderr.write('vzctl: stdin read error\n')
                    break
                if byte == ord('.'):
                    code = 0
                    break
                if byte == ord('!'):
                    continue    # SAK: nothing to kill in the simulation
                _type(typed, bytes([ESC]))
            new_line = byte == ENTER
            _type(typed, bytes([byte]))
    finally:
        follower.stop.set()
        follower.join()
        restore()
        sys.stderr.write('\nDetached from CT %d\n' % ctid)
    return code
