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

"""The console: the host's agent, its privileged side, the log, the port.

The agent runs for real (its own process, the simulated host's real
``vzctl console``); the simulated containers are modelled, so the tests
write to the simulated kernel's console file as a container's init would.
Functional tests type on real containers' consoles through Nova's API.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import fixtures
from nova.console import serial as serial_console
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
from nova_openvz.privsep import consoleagent
from nova_openvz.testing import fixtures as privsep_fixture
from tests import fixtures as sim_fixtures

CONF = openvz_conf.CONF
CTID = 101
HANDLE = container.Container(CTID)
PORTS = (27300, 27400)


class ConsoleTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # An agent left idle goes soon, so no test leaves one behind.
        self.useFixture(fixtures.MockPatchObject(consoleagent,
                                                 'IDLE_SECONDS', 1))
        self.host = self.useFixture(
            sim_fixtures.SimulatedHostFixture(kernel='modelled'))
        self.useFixture(privsep_fixture.InProcessPrivsep())
        self.instances = self.useFixture(fixtures.TempDir()).path
        self.config = self.useFixture(config_fixture.Config(CONF))
        self.config.config(instances_path=self.instances)
        self.config.config(group='serial_console', enabled=True,
                           port_range='%d:%d' % PORTS)
        self.instance = self.make_container(CTID)
        self.directory = self.dir_of(self.instance)
        self.calls = []
        hosttools.add_listener(self.calls.append)
        self.addCleanup(hosttools.remove_listener, self.calls.append)
        self.addCleanup(self.stop_agent)

    def make_container(self, ctid):
        # Named as the driver names its own: the helper serves no other.
        instance = objects.Instance(uuid=str(uuid.uuid4()))
        rc, _, err = self.host.vzctl(
            'create', ctid, '--ostemplate', sim_fixtures.DEFAULT_TEMPLATE,
            '--name', instance.uuid,
            '--description', 'nova-instance=' + instance.uuid)
        self.assertEqual(0, rc, err)
        return instance

    def dir_of(self, instance):
        return os.path.join(self.instances, instance.uuid)

    def print_on_console(self, text, ctid=CTID):
        path = self.host.path('var/lib/vzsim/%d.console' % ctid)
        with open(path, 'ab') as f:
            f.write(text.encode() if isinstance(text, str) else text)

    def logged(self, name='console.log', instance=None):
        directory = self.dir_of(instance) if instance else self.directory
        try:
            with open(os.path.join(directory, name), 'rb') as f:
                return f.read().decode()
        except FileNotFoundError:
            return ''

    def wait_for(self, check, what, timeout=10):
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                self.fail('timed out waiting for %s' % what)
            time.sleep(0.05)

    def wait_logged(self, text, instance=None):
        self.wait_for(lambda: self.logged(instance=instance).endswith(text),
                      'console.log to end with %r' % text)

    def status(self):
        return priv_console.console_agent_status()

    def wait_dead(self, pid):
        self.wait_for(lambda: not priv_console._process_alive(pid),
                      'process %d to end' % pid)

    def stop_agent(self):
        """Whatever a test left attached goes with the agent."""
        status = self.status()
        if status is not None:
            os.kill(status['pid'], signal.SIGTERM)
            self.wait_dead(status['pid'])

    def console_sessions(self, ctid=CTID):
        """Pids of ``vzctl console <ctid>`` processes of this host."""
        vzctl = os.path.join(self.host.tools_dir, 'vzctl')
        found = []
        for pid in os.listdir('/proc'):
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    argv = f.read().decode().split('\0')
            except (OSError, ValueError):
                continue
            if vzctl in argv and argv[argv.index(vzctl) + 1:][:2] == \
                    ['console', str(ctid)] and \
                    priv_console._process_alive(int(pid)):
                found.append(int(pid))
        return found


class TestConsoleLog(ConsoleTestCase):

    def test_attach_logs_what_the_console_prints(self):
        console.attach(self.instance, HANDLE)
        self.print_on_console('init: starting\n')
        self.wait_logged('init: starting\n')
        self.assertEqual([('console', str(CTID))],
                         [c.argv for c in self.calls])
        self.assertEqual(0o600, os.stat(os.path.join(
            self.directory, 'console.log')).st_mode & 0o777)

    def test_attach_twice_keeps_one_session(self):
        console.attach(self.instance, HANDLE)
        sessions = self.status()['sessions']
        console.attach(self.instance, HANDLE)
        self.assertEqual(sessions, self.status()['sessions'])
        self.assertEqual(1, len(self.calls))
        self.assertEqual(1, len(self.console_sessions()))

    def test_one_agent_holds_every_console_of_the_host(self):
        other = self.make_container(CTID + 1)
        console.attach(self.instance, HANDLE)
        agent = self.status()['pid']
        console.attach(other, container.Container(CTID + 1))
        status = self.status()
        self.assertEqual(agent, status['pid'])
        self.assertEqual({(self.instance.uuid, CTID), (other.uuid, CTID + 1)},
                         {(s['name'], s['ctid']) for s in status['sessions']})
        self.print_on_console('first\n')
        self.print_on_console('second\n', ctid=CTID + 1)
        self.wait_logged('first\n')
        self.wait_logged('second\n', instance=other)
        self.assertNotIn('second', self.logged())
        # The agent is root's only, and no child of nova-compute's.
        run_dir = priv_console.run_dir()
        self.assertEqual(0o700, os.stat(run_dir).st_mode & 0o777)
        self.assertEqual(0, os.stat(os.path.join(
            run_dir, consoleagent.SOCKET_NAME)).st_mode & 0o077)
        with open('/proc/%d/stat' % agent) as f:
            ppid = int(f.read().rpartition(')')[2].split()[1])
        self.assertNotEqual(os.getpid(), ppid)

    def test_attach_failure_carries_vzctl_message_and_code(self):
        os.makedirs(self.directory)
        error = self.assertRaises(exception.ContainerConfigMissing,
                                  hosttools.attach_console, 999,
                                  self.directory)
        self.assertEqual(14, error.kwargs['exit_code'])
        self.assertIn('Container config file does not exist',
                      error.format_message())
        self.assertEqual([], os.listdir(self.directory))
        self.assertEqual([], (self.status() or {'sessions': []})['sessions'])

    def test_detach_ends_vzctl_and_keeps_the_log(self):
        console.attach(self.instance, HANDLE)
        self.print_on_console('last words\n')
        self.wait_logged('last words\n')
        console.detach(self.instance)
        self.assertEqual([], self.console_sessions())
        self.assertEqual([], self.status()['sessions'])
        self.assertEqual(['console.log'], os.listdir(self.directory))
        # The simulated host logged the session once vzctl detached: with
        # Esc ., so exit 0.
        sessions = [c for c in self.host.calls()
                    if c['argv'][:1] == ['console']]
        self.assertEqual([0], [c['exit_code'] for c in sessions])

    def test_remove_deletes_the_log(self):
        console.attach(self.instance, HANDLE)
        self.print_on_console('gone soon\n')
        self.wait_logged('gone soon\n')
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
        self.assertEqual(['console.log', 'console.log.0'],
                         sorted(os.listdir(self.directory)))

    def test_session_ends_with_its_container_and_the_idle_agent_leaves(self):
        console.attach(self.instance, HANDLE)
        agent = self.status()['pid']
        rc, _, err = self.host.vzctl('destroy', CTID)
        self.assertEqual(0, rc, err)
        self.wait_for(lambda: not self.console_sessions(), 'vzctl to end')
        self.wait_dead(agent)
        run_dir = priv_console.run_dir()
        self.assertEqual([consoleagent.LOCK_NAME], os.listdir(run_dir))

    def test_an_agent_that_died_is_replaced_and_given_its_sessions(self):
        other = self.make_container(CTID + 1)
        console.attach(self.instance, HANDLE)
        console.attach(other, container.Container(CTID + 1))
        agent = self.status()['pid']
        os.kill(agent, signal.SIGKILL)
        self.wait_dead(agent)
        # Its vzctl sessions lose their terminal and detach.
        self.wait_for(lambda: not self.console_sessions(CTID) and
                      not self.console_sessions(CTID + 1),
                      'the sessions to end')
        self.print_on_console('missed while detached\n', ctid=CTID + 1)
        # The next call starts a new agent, which takes over both.
        console.output(self.instance, HANDLE)
        status = self.status()
        self.assertNotEqual(agent, status['pid'])
        self.assertEqual({CTID, CTID + 1},
                         {s['ctid'] for s in status['sessions']})
        self.wait_for(lambda: self.console_sessions(CTID + 1),
                      'the session to come back')
        self.wait_for(lambda: all(s['attached'] for s in
                                  self.status()['sessions']), 'attached')
        self.print_on_console('seen again\n', ctid=CTID + 1)
        self.wait_logged('seen again\n', instance=other)
        self.assertNotIn('missed', self.logged(instance=other))

    def test_a_stopped_agent_keeps_its_sessions_for_the_next(self):
        console.attach(self.instance, HANDLE)
        self.stop_agent()
        self.assertEqual([], self.console_sessions())
        console.attach(self.instance, HANDLE)
        self.assertEqual([CTID], [s['ctid'] for s in
                                  self.status()['sessions']])


class TestOutput(ConsoleTestCase):

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
        self.print_on_console(b'\x1b[1mbold\x1b[0m caf\xc3\xa9\r\n')
        self.wait_logged('\r\n')
        self.assertEqual(b'\x1b[1mbold\x1b[0m caf\xc3\xa9\r\n',
                         console.output(self.instance,
                                        HANDLE).encode('latin-1'))

    def test_output_attaches_a_lost_session_again(self):
        console.attach(self.instance, HANDLE)
        for pid in self.console_sessions():
            os.kill(pid, signal.SIGKILL)
        self.wait_for(lambda: not self.status()['sessions'],
                      'the agent to see the session end')
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


class TestSerialConsole(ConsoleTestCase):

    def connect(self, where):
        client = socket.create_connection((where.host, where.port), 5)
        self.addCleanup(client.close)
        return client

    def receive(self, client, text):
        data = b''
        while text.encode() not in data:
            chunk = client.recv(4096)
            self.assertTrue(chunk, 'the agent closed the connection')
            data += chunk
        return data

    def test_a_client_sees_the_console_while_it_is_logged(self):
        where = console.serial(self.instance, HANDLE)
        self.assertEqual('127.0.0.1', where.host)
        self.assertTrue(PORTS[0] <= where.port < PORTS[1])
        self.assertIn((where.host, where.port),
                      serial_console.ALLOCATED_PORTS)
        first, second = self.connect(where), self.connect(where)
        self.wait_for(lambda: self.status()['sessions'][0]['clients'] == 2,
                      'the agent to accept both clients')
        self.print_on_console('to every client\n')
        self.receive(first, 'to every client\n')
        self.receive(second, 'to every client\n')
        self.wait_logged('to every client\n')
        # The same port until the console is detached.
        self.assertEqual(where.port, console.serial(self.instance,
                                                    HANDLE).port)
        console.detach(self.instance)
        self.assertEqual(b'', first.recv(10))
        self.assertNotIn((where.host, where.port),
                         serial_console.ALLOCATED_PORTS)
        self.assertRaises(ConnectionRefusedError, socket.create_connection,
                          (where.host, where.port), 5)

    def test_a_port_taken_by_someone_else_is_skipped(self):
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(('127.0.0.1', 0))
        # Nova's allocator tries the port first; it is taken meanwhile.
        self.useFixture(fixtures.MockPatchObject(
            serial_console, 'acquire_port',
            side_effect=[taken.getsockname()[1], PORTS[0] + 7]))
        self.config.config(group='serial_console',
                           port_range='%d:%d' % (1024, 65535))
        taken.listen(1)
        where = console.serial(self.instance, HANDLE)
        self.assertEqual(PORTS[0] + 7, where.port)

    def test_disabled_serial_console_is_unavailable(self):
        self.config.config(group='serial_console', enabled=False)
        self.assertRaises(nova_exception.ConsoleTypeUnavailable,
                          console.serial, self.instance, HANDLE)
        console.attach(self.instance, HANDLE)
        self.assertRaises(privsep.ArgumentRejected,
                          priv_console.serve_serial_console, self.directory,
                          '127.0.0.1', PORTS[0])

    def test_only_nova_address_and_port_range_are_served(self):
        console.attach(self.instance, HANDLE)
        for address, port in (('0.0.0.0', PORTS[0]), ('127.0.0.1', 22),
                              ('127.0.0.1', PORTS[1]), ('127.0.0.1', '1')):
            self.assertRaises(privsep.ArgumentRejected,
                              priv_console.serve_serial_console,
                              self.directory, address, port)
        self.assertIsNone(self.status()['sessions'][0]['serial'])

    def test_no_console_no_serial_console(self):
        self.assertRaises(nova_exception.ConsoleNotAvailable,
                          console.serial, self.instance,
                          container.Container(999))


class TestTyping(testtools.TestCase):
    """What a client types reaches vzctl, except vzctl's own commands."""

    def typed(self, *chunks, line_start=True):
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        session = consoleagent.Session.__new__(consoleagent.Session)
        session.master, session.escape = write, False
        session.line_start = line_start
        for chunk in chunks:
            session.typed(chunk)
        os.close(write)
        return os.read(read, 4096), session

    def test_text_and_escape_sequences_go_through(self):
        self.assertEqual(b'ls\r\x1b[A\x1bx', self.typed(b'ls\r\x1b[A\x1bx')[0])

    def test_esc_dot_and_esc_bang_at_a_line_start_are_dropped(self):
        data, session = self.typed(b'\x1b.', b'a\r\x1b', b'!b\r\x1b')
        self.assertEqual(b'a\rb\r', data)
        self.assertTrue(session.escape)    # held until the next byte

    def test_esc_dot_within_a_line_goes_through(self):
        self.assertEqual(b'x\x1b.', self.typed(b'x\x1b.')[0])
        self.assertEqual(b'\x1b.', self.typed(b'\x1b.', line_start=False)[0])

    def detached(self, line_start):
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        sleeper = subprocess.Popen(['sleep', '60'], start_new_session=True)
        self.addCleanup(sleeper.wait)
        self.addCleanup(sleeper.kill)
        session = consoleagent.Session.__new__(consoleagent.Session)
        session.master, session.line_start, session.kill_at = write, \
            line_start, None
        session.proc = sleeper
        session.detach()
        os.close(write)
        return os.read(read, 10), sleeper

    def test_detach_at_a_line_start_is_esc_dot(self):
        sent, vzctl = self.detached(line_start=True)
        self.assertEqual(b'\x1b.', sent)
        self.assertIsNone(vzctl.poll())

    def test_detach_after_an_unfinished_line_kills_vzctl(self):
        # No Enter: it would run what a client left on the line.
        sent, vzctl = self.detached(line_start=False)
        self.assertEqual(b'', sent)
        self.assertEqual(-signal.SIGKILL, vzctl.wait(10))


class TestPrivilegedSide(ConsoleTestCase):

    def test_directory_must_be_an_instance_directory(self):
        os.makedirs(self.directory)
        elsewhere = self.useFixture(fixtures.TempDir()).path
        link = os.path.join(self.instances, str(uuid.uuid4()))
        os.symlink(elsewhere, link)
        for bad in (elsewhere, os.path.join(self.instances, 'not-a-uuid'),
                    link, self.directory + '/../' + self.instance.uuid,
                    self.instances):
            self.assertRaises(privsep.ArgumentRejected,
                              priv_console.attach_console, CTID, bad,
                              65536, 10)
            self.assertRaises(privsep.ArgumentRejected,
                              priv_console.console_log_tail, bad, 100)
        for bad in (elsewhere, os.path.join(self.instances, 'not-a-uuid'),
                    self.directory + '/../' + self.instance.uuid):
            self.assertRaises(privsep.ArgumentRejected,
                              priv_console.detach_console, bad)
        self.assertIsNone(self.status())

    def test_a_foreign_socket_in_the_run_directory_is_not_trusted(self):
        run_dir = priv_console.run_dir()
        impostor = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(impostor.close)
        impostor.bind(os.path.join(run_dir, consoleagent.SOCKET_NAME))
        impostor.listen(5)
        heard = []

        def listen():
            try:
                conn, _ = impostor.accept()
                heard.append(conn.recv(65536))
                conn.send(json.dumps({'new': False}).encode())
            except OSError:
                pass
        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 5)
        self.addCleanup(impostor.shutdown, socket.SHUT_RDWR)
        # It runs in this very process, not as our agent: it is replaced.
        console.attach(self.instance, HANDLE)
        self.assertNotEqual(os.getpid(), self.status()['pid'])
        self.assertEqual([b''], heard)    # connected, checked, left
        self.assertEqual(1, len(self.console_sessions()))

    def test_a_run_directory_open_to_others_is_refused(self):
        run_dir = priv_console.run_dir()
        os.chmod(run_dir, 0o755)
        self.addCleanup(os.chmod, run_dir, 0o700)
        self.assertRaises(priv_console.AgentError, priv_console.run_dir)
        os.makedirs(self.directory)
        code, _, message = priv_console.attach_console(
            CTID, self.directory, 65536, 10)
        self.assertEqual(1, code)
        self.assertIn('only its owner', message)

    def test_the_agent_answers_only_its_owner(self):
        if os.geteuid() != 0:
            self.skipTest('needs root to try as another user')
        console.attach(self.instance, HANDLE)
        path = os.path.join(priv_console.run_dir(), consoleagent.SOCKET_NAME)
        pid = os.fork()
        if pid == 0:    # as nobody: the run directory is closed to it
            code = 1
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                probe.connect(path)
            except PermissionError:
                code = 0
            finally:
                os._exit(code)
        self.assertEqual(0, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))

    def test_a_legacy_logger_pid_file_kills_nothing_else(self):
        os.makedirs(self.directory)
        sleeper = subprocess.Popen(['sleep', '60'])
        self.addCleanup(sleeper.wait)
        self.addCleanup(sleeper.kill)
        with open(os.path.join(self.directory, 'console.pid'), 'w') as f:
            f.write('%d\n' % sleeper.pid)
        console.attach(self.instance, HANDLE)
        self.assertIsNone(sleeper.poll())
        self.assertFalse(os.path.exists(os.path.join(self.directory,
                                                     'console.pid')))

    def test_a_legacy_logger_is_stopped_on_attach_and_on_delete(self):
        for action in (lambda: console.attach(self.instance, HANDLE),
                       lambda: console.remove(self.instance)):
            os.makedirs(self.directory, exist_ok=True)
            # What /proc shows of an earlier release's logger of this
            # directory.
            logger = subprocess.Popen(
                [sys.executable, '-c', 'import time; time.sleep(60)',
                 '-m', priv_console.LEGACY_LOGGER[1].decode(), '--dir',
                 self.directory])
            self.addCleanup(logger.wait)
            self.addCleanup(logger.kill)
            self.wait_for(lambda: priv_console._runs(
                logger.pid, priv_console.LEGACY_LOGGER, '--dir',
                self.directory), 'the logger to start')
            with open(os.path.join(self.directory, 'console.pid'), 'w') as f:
                f.write('%d\n' % logger.pid)
            action()
            self.assertEqual(-signal.SIGTERM, logger.wait(10))
            self.assertFalse(os.path.exists(os.path.join(self.directory,
                                                         'console.pid')))

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

    def test_the_agent_never_writes_through_a_planted_link(self):
        os.makedirs(self.directory)
        elsewhere = self.useFixture(fixtures.TempDir()).path
        target = os.path.join(elsewhere, 'precious')
        with open(target, 'w') as f:
            f.write('precious\n')
        os.symlink(target, os.path.join(self.directory, 'console.log'))
        console.attach(self.instance, HANDLE)
        self.print_on_console('not there\n')
        time.sleep(0.5)
        with open(target) as f:
            self.assertEqual('precious\n', f.read())
        # The console goes on (for a serial client), unlogged.
        self.assertEqual(1, len(self.status()['sessions']))

    def test_a_swapped_directory_sends_the_agent_nowhere_else(self):
        # Whoever owns the instance directory (nova-compute) swaps it for
        # a link while the agent runs: the agent keeps writing and
        # rotating in the directory it was given, nowhere else.
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
        self.wait_for(lambda: self._read(moved, 'console.log').endswith(
            'after\n'), 'the agent to log in its directory')
        self.assertTrue(self._read(moved, 'console.log.0').startswith(
            'before\n'))
        self.assertEqual(precious, {name: self._read(elsewhere, name)
                                    for name in precious})
        self.assertEqual(sorted(precious), sorted(os.listdir(elsewhere)))
        # The link is refused; once the directory is back, detach works.
        self.assertRaises(privsep.ArgumentRejected,
                          priv_console.console_log_tail, self.directory, 100)
        self.assertRaises(privsep.ArgumentRejected,
                          priv_console.attach_console, CTID, self.directory,
                          65536, 10)
        os.unlink(self.directory)
        os.rename(moved, self.directory)
        self.assertIsNone(priv_console.detach_console(self.directory))
        self.assertEqual([], self.status()['sessions'])

    def test_a_new_directory_of_the_same_name_gets_a_new_session(self):
        console.attach(self.instance, HANDLE)
        pids = self.console_sessions()
        os.rename(self.directory, self.directory + '.old')
        os.makedirs(self.directory)
        console.attach(self.instance, HANDLE)
        self.wait_for(lambda: len(self.console_sessions()) == 1 and
                      self.console_sessions() != pids, 'the new session')
        self.print_on_console('into the new one\n')
        self.wait_logged('into the new one\n')

    @staticmethod
    def _read(directory, name):
        try:
            with open(os.path.join(directory, name)) as f:
                return f.read()
        except FileNotFoundError:
            return ''


class TestAgentRequests(ConsoleTestCase):
    """The agent refuses what the privileged side never sends."""

    def request(self, message, fd=None):
        with priv_console.agent(start=True) as sock:
            try:
                return priv_console._request(sock, message, fd)
            except priv_console.AgentError as e:
                return str(e)

    def test_bad_requests_are_answered_with_an_error(self):
        self.assertIn('unknown request',
                      self.request({'op': 'shutdown'}))
        self.assertIn('needs the instance directory', self.request(
            {'op': 'attach', 'name': self.instance.uuid, 'ctid': CTID}))
        fd = os.open(self.instances, os.O_RDONLY)
        self.addCleanup(os.close, fd)
        self.assertIn('not an instance UUID', self.request(
            {'op': 'attach', 'name': '../x', 'ctid': CTID, 'max_bytes': 1,
             'timeout': 1, 'vzctl': '/bin/true'}, fd))
        self.assertIn('bad attach request', self.request(
            {'op': 'attach', 'name': self.instance.uuid, 'ctid': 0,
             'max_bytes': 1, 'timeout': 1, 'vzctl': '/bin/true'}, fd))
        self.assertEqual([], self.status()['sessions'])
