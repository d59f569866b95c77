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

"""The console log: the logger process, its privileged side, the reader.

The logger runs for real (its own process, the simulated host's real
``vzctl console``); the simulated container is modelled, so the tests
write to the simulated kernel's console file as the container's init
would.  Functional tests read real init output through Nova's API.
"""

import os
import signal
import subprocess
import time
import uuid

import fixtures
from nova import exception as nova_exception
from nova import objects
from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import conf as openvz_conf
from nova_openvz import console
from nova_openvz import container
from nova_openvz import exception
from nova_openvz import hosttools
from nova_openvz import privsep
from nova_openvz.privsep import console as priv_console
from nova_openvz.testing import fixtures as privsep_fixture
from tests import fixtures as sim_fixtures

CONF = openvz_conf.CONF
CTID = 101
HANDLE = container.Container(CTID)


class ConsoleLogTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(
            sim_fixtures.SimulatedHostFixture(kernel='modelled'))
        self.useFixture(privsep_fixture.InProcessPrivsep())
        self.instances = self.useFixture(fixtures.TempDir()).path
        self.config = self.useFixture(config_fixture.Config(CONF))
        self.config.config(instances_path=self.instances)
        rc, _, err = self.host.vzctl('create', CTID, '--ostemplate',
                                     sim_fixtures.DEFAULT_TEMPLATE)
        self.assertEqual(0, rc, err)
        self.instance = objects.Instance(uuid=str(uuid.uuid4()))
        self.directory = os.path.join(self.instances, self.instance.uuid)
        self.console_file = self.host.path('var/lib/vzsim/%d.console' % CTID)
        self.calls = []
        hosttools.add_listener(self.calls.append)
        self.addCleanup(hosttools.remove_listener, self.calls.append)
        # Whatever a test leaves attached is detached before the host goes.
        self.addCleanup(console.remove, self.instance)

    def print_on_console(self, text):
        with open(self.console_file, 'ab') as f:
            f.write(text.encode())

    def logged(self, name='console.log'):
        try:
            with open(os.path.join(self.directory, name), 'rb') as f:
                return f.read().decode()
        except FileNotFoundError:
            return ''

    def wait_logged(self, text, timeout=10):
        deadline = time.monotonic() + timeout
        while not self.logged().endswith(text):
            if time.monotonic() > deadline:
                self.fail('console.log never ended with %r: %r'
                          % (text, self.logged()[-200:]))
            time.sleep(0.05)

    def logger_pid(self):
        with open(os.path.join(self.directory, 'console.pid')) as f:
            return int(f.read())

    def kill(self, pid):
        """SIGKILL ``pid`` and wait until it is dead (or a zombie).

        kill() returns before the process is gone; the driver must not
        find it still running, as a host reboot would leave it.
        """
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open('/proc/%d/stat' % pid) as f:
                    if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                        return
            except FileNotFoundError:
                return
            time.sleep(0.01)
        self.fail('process %d did not die' % pid)

    def console_sessions(self):
        """Pids of ``vzctl console <CTID>`` processes of this host."""
        vzctl = os.path.join(self.host.tools_dir, 'vzctl')
        found = []
        for pid in os.listdir('/proc'):
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    argv = f.read().decode().split('\0')
            except (OSError, ValueError):
                continue
            if vzctl in argv and argv[argv.index(vzctl) + 1:][:2] == \
                    ['console', str(CTID)]:
                found.append(int(pid))
        return found


class TestConsoleLogger(ConsoleLogTestCase):

    def test_attach_logs_what_the_console_prints(self):
        console.attach(self.instance, HANDLE)
        self.print_on_console('init: starting\n')
        self.wait_logged('init: starting\n')
        self.assertEqual([('console', str(CTID))],
                         [c.argv for c in self.calls])
        self.assertEqual(0o600, os.stat(os.path.join(
            self.directory, 'console.log')).st_mode & 0o777)

    def test_attach_twice_keeps_one_logger(self):
        console.attach(self.instance, HANDLE)
        pid = self.logger_pid()
        console.attach(self.instance, HANDLE)
        self.assertEqual(pid, self.logger_pid())
        self.assertEqual(1, len(self.calls))
        self.assertEqual(1, len(self.console_sessions()))

    def test_attach_failure_carries_vzctl_message_and_code(self):
        error = self.assertRaises(exception.ContainerConfigMissing,
                                  hosttools.attach_console, 999,
                                  self._directory())
        self.assertEqual(14, error.kwargs['exit_code'])
        self.assertIn('Container config file does not exist',
                      error.format_message())
        self.assertEqual([], os.listdir(self.directory))

    def _directory(self):
        os.makedirs(self.directory, exist_ok=True)
        return self.directory

    def test_detach_ends_logger_and_vzctl_and_keeps_the_log(self):
        console.attach(self.instance, HANDLE)
        pid = self.logger_pid()
        self.print_on_console('last words\n')
        self.wait_logged('last words\n')
        console.detach(self.instance)
        self.assertFalse(priv_console._process_alive(pid))
        self.assertEqual([], self.console_sessions())
        self.assertEqual(['console.log'], os.listdir(self.directory))
        # The simulated host logged the session once vzctl detached: with
        # Esc ., so exit 0.
        sessions = [c for c in self.host.calls()
                    if c['argv'][:1] == ['console']]
        self.assertEqual([0], [c['exit_code'] for c in sessions])

    def test_remove_deletes_the_log(self):
        console.attach(self.instance, HANDLE)
        console.remove(self.instance)
        self.assertEqual([], os.listdir(self.directory))
        self.assertEqual([], self.console_sessions())

    def test_full_log_is_rotated_once(self):
        self.config.config(group='openvz', console_log_max_bytes=64 * 1024)
        console.attach(self.instance, HANDLE)
        lines = ['line %06d %s\n' % (n, 'x' * 60) for n in range(3000)]
        for n in range(0, len(lines), 100):
            self.print_on_console(''.join(lines[n:n + 100]))
        self.wait_logged(lines[-1])
        written = ''.join(lines)
        older, newer = self.logged('console.log.0'), self.logged()
        self.assertLessEqual(len(older), 64 * 1024)
        self.assertLessEqual(len(newer), 64 * 1024)
        self.assertTrue(written.endswith(older + newer))
        self.assertEqual(['console.log', 'console.log.0', 'console.pid'],
                         sorted(os.listdir(self.directory)))

    def test_logger_outlives_its_starter_and_ends_with_the_container(self):
        console.attach(self.instance, HANDLE)
        pid = self.logger_pid()
        rc, _, err = self.host.vzctl('destroy', CTID)
        self.assertEqual(0, rc, err)
        deadline = time.monotonic() + 10
        while priv_console._process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(priv_console._process_alive(pid))
        self.assertEqual([], self.console_sessions())
        self.assertFalse(os.path.exists(os.path.join(self.directory,
                                                     'console.pid')))


class TestOutput(ConsoleLogTestCase):

    def test_output_is_the_last_100_kib_across_the_rotated_log(self):
        self.config.config(group='openvz', console_log_max_bytes=96 * 1024)
        console.attach(self.instance, HANDLE)
        lines = ['boot line %06d\n' % n for n in range(12000)]
        for n in range(0, len(lines), 500):
            self.print_on_console(''.join(lines[n:n + 500]))
        self.wait_logged(lines[-1])
        output = console.output(self.instance, HANDLE)
        self.assertIsInstance(output, str)
        self.assertEqual(console.MAX_OUTPUT_BYTES, len(output))
        self.assertTrue(''.join(lines).endswith(output))
        self.assertTrue(os.path.exists(os.path.join(self.directory,
                                                    'console.log.0')))

    def test_bytes_come_back_unchanged(self):
        console.attach(self.instance, HANDLE)
        with open(self.console_file, 'ab') as f:
            f.write(b'\x1b[1mbold\x1b[0m caf\xc3\xa9\r\n')
        self.wait_logged('\r\n')
        self.assertEqual(b'\x1b[1mbold\x1b[0m caf\xc3\xa9\r\n',
                         console.output(self.instance,
                                        HANDLE).encode('latin-1'))

    def test_output_attaches_a_lost_logger_again(self):
        console.attach(self.instance, HANDLE)
        self.kill(self.logger_pid())   # as a host reboot would
        for pid in self.console_sessions():
            self.kill(pid)
        self.print_on_console('missed while detached\n')
        console.output(self.instance, HANDLE)
        self.print_on_console('seen again\n')
        self.wait_logged('seen again\n')
        self.assertNotIn('missed', self.logged())

    def test_silent_console_reads_empty(self):
        self.assertEqual('', console.output(self.instance, HANDLE))

    def test_no_log_is_console_not_available(self):
        self.assertRaises(nova_exception.ConsoleNotAvailable,
                          console.output, self.instance,
                          container.Container(999))


class TestPrivilegedSide(ConsoleLogTestCase):

    def test_directory_must_be_an_instance_directory(self):
        os.makedirs(self.directory)
        elsewhere = self.useFixture(fixtures.TempDir()).path
        link = os.path.join(self.instances, str(uuid.uuid4()))
        os.symlink(elsewhere, link)
        for bad in (elsewhere, os.path.join(self.instances, 'not-a-uuid'),
                    link, self.directory + '/../' + self.instance.uuid,
                    self.instances):
            self.assertRaises(privsep.ArgumentRejected,
                              priv_console.start_console_logger, CTID, bad,
                              65536, 10)
            self.assertRaises(privsep.ArgumentRejected,
                              priv_console.console_log_tail, bad, 100)

    def test_a_planted_pid_file_kills_nothing(self):
        os.makedirs(self.directory)
        sleeper = subprocess.Popen(['sleep', '60'])
        self.addCleanup(sleeper.wait)
        self.addCleanup(sleeper.kill)
        with open(os.path.join(self.directory, 'console.pid'), 'w') as f:
            f.write('%d\n' % sleeper.pid)
        self.assertFalse(priv_console.stop_console_logger(self.directory))
        self.assertIsNone(sleeper.poll())
        # Nor does it stop a real logger from being attached.
        console.attach(self.instance, HANDLE)
        self.assertNotEqual(sleeper.pid, self.logger_pid())

    def test_reading_never_follows_a_planted_link(self):
        os.makedirs(self.directory)
        secret = os.path.join(self.useFixture(fixtures.TempDir()).path,
                              'secret')
        with open(secret, 'w') as f:
            f.write('root only')
        os.symlink(secret, os.path.join(self.directory, 'console.log'))
        self.assertRaises(OSError, priv_console.console_log_tail,
                          self.directory, 100)

    def test_reading_never_follows_a_hard_link(self):
        os.makedirs(self.directory)
        secret = os.path.join(self.directory, 'secret')
        with open(secret, 'w') as f:
            f.write('root only')
        os.link(secret, os.path.join(self.directory, 'console.log'))
        self.assertRaises(privsep.ArgumentRejected,
                          priv_console.console_log_tail, self.directory, 100)

    def test_a_swapped_directory_sends_the_logger_nowhere_else(self):
        # Whoever owns the instance directory (nova-compute) swaps it for
        # a link while the root logger runs: the logger keeps writing and
        # rotating in the directory it was started on, nowhere else.
        self.config.config(group='openvz', console_log_max_bytes=64 * 1024)
        console.attach(self.instance, HANDLE)
        self.print_on_console('before\n')
        self.wait_logged('before\n')
        elsewhere = self.useFixture(fixtures.TempDir()).path
        precious = {name: 'precious %s\n' % name
                    for name in ('console.log', 'console.log.0')}
        for name, text in precious.items():
            with open(os.path.join(elsewhere, name), 'w') as f:
                f.write(text)
        moved = self.directory + '.moved'
        os.rename(self.directory, moved)
        os.symlink(elsewhere, self.directory)
        self.print_on_console('x' * (70 * 1024) + '\nafter\n')
        deadline = time.monotonic() + 10
        while not self._read(moved, 'console.log').endswith('after\n'):
            if time.monotonic() > deadline:
                self.fail('the logger stopped logging in its directory')
            time.sleep(0.05)
        self.assertTrue(self._read(moved, 'console.log.0').startswith(
            'before\n'))
        self.assertEqual(precious, {name: self._read(elsewhere, name)
                                    for name in precious})
        self.assertEqual(sorted(precious), sorted(os.listdir(elsewhere)))
        # The link is refused; once the directory is back, detach works.
        self.assertRaises(privsep.ArgumentRejected,
                          priv_console.console_log_tail, self.directory, 100)
        os.unlink(self.directory)
        os.rename(moved, self.directory)
        self.assertTrue(priv_console.stop_console_logger(self.directory))

    @staticmethod
    def _read(directory, name):
        try:
            with open(os.path.join(directory, name)) as f:
                return f.read()
        except FileNotFoundError:
            return ''
