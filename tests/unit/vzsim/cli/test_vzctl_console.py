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

"""The simulated ``vzctl console``, run as the real wrapper executable.

Reference 1.8: consoles are persistent, can be attached while the
container is stopped, and Esc then ``.`` detaches; vzctl 4's
``do_console_attach`` (V4 src/enter.c) for the messages and exit codes.
On the modelled backend nothing runs in a container, so these tests write
to the simulated kernel's console file, as a container's init would.
"""

import os
import select
import shutil
import subprocess
import time

import testtools

from tests import fixtures as sim_fixtures

CTID = 101
ATTACHED = 'Attached to CT %d (ESC . to detach)\n' % CTID


class ConsoleTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(
            sim_fixtures.SimulatedHostFixture(kernel='modelled'))
        rc, _, err = self.host.vzctl('create', CTID, '--ostemplate',
                                     sim_fixtures.DEFAULT_TEMPLATE)
        self.assertEqual(0, rc, err)
        self.console_file = self.host.path('var/lib/vzsim/%d.console' % CTID)

    def attach(self, *extra):
        """A running ``vzctl console`` with pipes on all three streams."""
        proc = subprocess.Popen(
            [os.path.join(self.host.tools_dir, 'vzctl'), 'console',
             str(CTID)] + list(extra),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.addCleanup(self._end, proc)
        line = self._read_line(proc.stderr)
        self.assertEqual(ATTACHED, line)
        return proc

    def _end(self, proc):
        if proc.poll() is None:
            proc.kill()
        proc.communicate()

    def _read_line(self, stream, timeout=10):
        """One line, a byte at a time: nothing else stays in a buffer.

        ``communicate()`` later reads the pipe itself, past the stream's
        buffer: a buffered readline could swallow the next line with it.
        """
        line = b''
        deadline = time.monotonic() + timeout
        while not line.endswith(b'\n'):
            ready, _, _ = select.select(
                [stream], [], [], max(0, deadline - time.monotonic()))
            self.assertTrue(ready, 'vzctl console said nothing')
            byte = os.read(stream.fileno(), 1)
            if not byte:
                break
            line += byte
        return line.decode()

    def print_on_console(self, text):
        """What a container's init printing ``text`` does to the tty."""
        with open(self.console_file, 'ab') as f:
            f.write(text.encode())

    def read_output(self, proc, expected, timeout=10):
        data = b''
        deadline = time.monotonic() + timeout
        while len(data) < len(expected) and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            if ready:
                data += os.read(proc.stdout.fileno(), 4096)
        return data.decode()


class TestConsole(ConsoleTestCase):

    def test_shows_what_the_console_prints_from_attach_on(self):
        self.print_on_console('before attach\n')
        proc = self.attach()
        self.print_on_console('first boot\n')
        self.print_on_console('second line\n')
        self.assertEqual('first boot\nsecond line\n',
                         self.read_output(proc, 'first boot\nsecond line\n'))

    def test_attaches_to_a_stopped_container(self):
        rc, out, _ = self.host.vzctl('status', CTID)
        self.assertIn('down', out)
        proc = self.attach()
        self.assertIsNone(proc.poll())

    def test_esc_dot_detaches_with_exit_0(self):
        proc = self.attach()
        proc.stdin.write(b'\x1b.')
        proc.stdin.flush()
        out, err = proc.communicate(timeout=10)
        self.assertEqual(0, proc.returncode)
        # Not a terminal: vzctl says so, and works on.
        self.assertEqual('Unable to get term attr\n\nDetached from CT %d\n'
                         % CTID, err.decode())

    def test_esc_dot_after_other_input_on_the_line_does_not_detach(self):
        proc = self.attach()
        proc.stdin.write(b'x\x1b.')
        proc.stdin.flush()
        time.sleep(0.5)
        self.assertIsNone(proc.poll())
        # Enter starts a new line, where Esc . detaches.
        proc.stdin.write(b'\r\x1b.')
        proc.stdin.flush()
        proc.communicate(timeout=10)
        self.assertEqual(0, proc.returncode)

    def test_end_of_stdin_detaches_with_exit_3(self):
        proc = self.attach()
        out, err = proc.communicate(input=b'', timeout=10)
        self.assertEqual(3, proc.returncode)
        self.assertIn('stdin read error', err.decode())
        self.assertTrue(err.decode().endswith('Detached from CT %d\n' % CTID))

    def test_session_ends_when_the_container_is_destroyed(self):
        proc = self.attach()
        rc, _, err = self.host.vzctl('destroy', CTID)
        self.assertEqual(0, rc, err)
        proc.communicate(timeout=10)
        self.assertEqual(3, proc.returncode)

    def test_session_outliving_its_host_leaves_no_tree_behind(self):
        proc = self.attach()
        # Gone at once, as a test's temp dir is (rmtree could race with
        # the session's own files).
        gone = self.host.root + '.gone'
        os.rename(self.host.root, gone)
        self.addCleanup(shutil.rmtree, gone)
        proc.communicate(timeout=10)
        self.assertEqual(3, proc.returncode)
        # Its call is not logged into a new DIR/sim/calls.log.
        self.assertFalse(os.path.exists(self.host.root))

    def test_other_ttys_are_silent(self):
        proc = self.attach('1')
        self.print_on_console('only on tty1\n')
        self.assertEqual('', self.read_output(proc, 'x', timeout=1))


class TestConsoleErrors(ConsoleTestCase):

    def test_bad_tty_number_exits_21(self):
        rc, out, err = self.host.vzctl('console', CTID, 'tty2')
        self.assertEqual(21, rc)
        self.assertEqual('Invalid tty number: tty2\n', err)

    def test_two_tty_numbers_exit_20(self):
        rc, out, err = self.host.vzctl('console', CTID, '1', '2')
        self.assertEqual(20, rc)
        self.assertEqual('Invalid syntax: too many parameters!\n', err)

    def test_container_without_config_exits_14(self):
        rc, out, err = self.host.vzctl('console', 999)
        self.assertEqual(14, rc)
        self.assertEqual('Container config file does not exist\n', err)

    def test_takes_no_lock(self):
        # Reference 1.1: console, like exec, works while a vzctl holds
        # the container's lock.
        with open(self.host.path('vz/lock/%d.lck' % CTID), 'w') as f:
            f.write('%d\nstarting\n' % os.getpid())
        self.attach()
