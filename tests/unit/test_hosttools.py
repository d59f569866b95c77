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

"""The choke point that runs every host tool, against a simulated host.

Failures come from the simulated host's real executables, either by fault
injection (DIR/sim/faults.json) or by the host's own state.
"""

import json
import os
import subprocess
import sys
import threading
import time

from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import conf as openvz_conf
from nova_openvz import exception
from nova_openvz import hosttools
from nova_openvz import inventory
from nova_openvz.privsep import vzconf
from nova_openvz.testing import fixtures as sim_fixture
from nova_openvz import vz4

CONF = openvz_conf.CONF


class _HostToolsTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(sim_fixture.SimulatedHostFixture())
        self.useFixture(sim_fixture.InProcessPrivsep())
        self.flags = self.useFixture(config_fixture.Config(CONF)).config
        self.flags(group='openvz', lock_retries=3, lock_retry_interval=0.01)
        self.seen = []
        hosttools.add_listener(self.seen.append)
        self.addCleanup(hosttools.remove_listener, self.seen.append)

    def only_fault(self, **rule):
        """Make ``rule`` the host's only fault rule."""
        for name in ('faults.json', 'faults.state'):
            try:
                os.unlink(self.host.sim_path(name))
            except FileNotFoundError:
                pass
        self.host.inject_fault(**rule)


class TestErrors(_HostToolsTest):

    def test_each_exit_code_becomes_its_typed_error(self):
        self.flags(group='openvz', lock_retries=0)
        for code, error_class in sorted(hosttools.VZCTL_ERRORS.items()):
            stderr = 'simulated failure %d' % code
            self.only_fault(tool='vzctl', command='start', exit_code=code,
                            stderr=stderr)
            error = self.assertRaises(exception.HostToolError,
                                      hosttools.run, 'vzctl', 'start', 101)
            self.assertIs(error_class, type(error), code)
            self.assertEqual(code, error.exit_code)
            self.assertEqual('vzctl', error.tool)
            self.assertEqual('start', error.command)
            self.assertEqual(stderr + '\n', error.stderr)
            message = error.format_message()
            self.assertIn(stderr, message)
            self.assertIn('exit code %d' % code, message)

    def test_a_real_failure_carries_what_vzctl_said(self):
        # No fault injected: CT 101 does not exist, so vzctl itself fails.
        error = self.assertRaises(exception.ContainerConfigMissing,
                                  hosttools.run, 'vzctl', 'start', 101)
        self.assertEqual(14, error.exit_code)
        self.assertIn('Container config file does not exist',
                      error.format_message())

    def test_unknown_exit_codes_are_a_generic_tool_error(self):
        self.only_fault(tool='vzctl', command='start', exit_code=133,
                        stderr='Container start failed')
        error = self.assertRaises(exception.HostToolError,
                                  hosttools.run, 'vzctl', 'start', 101)
        self.assertIs(exception.HostToolError, type(error))
        self.assertEqual(133, error.exit_code)
        self.assertIn('Container start failed', error.format_message())

    def test_vzctl_codes_are_not_applied_to_vzlist(self):
        self.only_fault(tool='vzlist', exit_code=14, stderr='odd')
        error = self.assertRaises(exception.HostToolError,
                                  hosttools.run, 'vzlist', *vz4.list_all())
        self.assertIs(exception.HostToolError, type(error))
        self.assertEqual('vzlist', error.tool)

    def test_ploop_exit_codes_become_their_typed_errors(self):
        from nova_openvz.privsep import images as priv_images

        mount_dir = priv_images.ploop_mount_dir(
            '6d3c3bd2-8d0d-4c7b-9a7e-0d9b6f1e8a21')
        for code, error_class in sorted(hosttools.PLOOP_ERRORS.items()) + [
                (14, exception.HostToolError)]:
            self.only_fault(tool='ploop', command='umount', exit_code=code,
                            stderr='ploop said %d' % code)
            error = self.assertRaises(exception.HostToolError,
                                      hosttools.run, 'ploop', 'umount', '-m',
                                      mount_dir)
            self.assertIs(error_class, type(error), code)
            self.assertEqual(('ploop', 'umount', code),
                             (error.tool, error.command, error.exit_code))
            self.assertIn('ploop umount failed with exit code %d: ploop '
                          'said %d' % (code, code), error.format_message())

    def test_ploop_exit_9_is_not_a_lock_to_wait_out(self):
        from nova_openvz.privsep import images as priv_images

        self.only_fault(tool='ploop', command='umount', exit_code=9,
                        stderr='Can not read sysfs')
        error = self.assertRaises(
            exception.HostToolError, hosttools.run, 'ploop', 'umount', '-m',
            priv_images.ploop_mount_dir(
                '6d3c3bd2-8d0d-4c7b-9a7e-0d9b6f1e8a21'))
        self.assertIs(exception.HostToolError, type(error))
        self.assertEqual([9], [c.exit_code for c in self.seen])

    def test_without_stderr_the_end_of_stdout_is_the_message(self):
        stdout = '\n'.join('line %d' % i for i in range(1, 9))
        self.only_fault(tool='vzctl', command='start', exit_code=133,
                        stdout=stdout)
        error = self.assertRaises(exception.HostToolError,
                                  hosttools.run, 'vzctl', 'start', 101)
        message = error.format_message()
        self.assertIn('line 4 line 5 line 6 line 7 line 8', message)
        self.assertNotIn('line 3', message)

    def test_without_any_output_the_message_says_so(self):
        self.only_fault(tool='vzctl', command='start', exit_code=133)
        error = self.assertRaises(exception.HostToolError,
                                  hosttools.run, 'vzctl', 'start', 101)
        self.assertIn('(no output)', error.format_message())

    def test_ok_codes_count_as_success(self):
        call = hosttools.run('vzctl', 'start', 101, ok_codes=(0, 14))
        self.assertEqual(14, call.exit_code)
        self.assertIn('Container config file does not exist', call.stderr)


class TestLockRetry(_HostToolsTest):

    def test_a_lock_on_the_first_call_is_retried(self):
        self.only_fault(tool='vzctl', command='set', call=1, exit_code=9,
                        stderr='Container already locked')
        call = hosttools.run('vzctl', 'set', 101, '--save', '--cpus', '1')
        self.assertEqual(0, call.exit_code)
        self.assertIn('CT configuration saved', call.stdout)
        self.assertEqual([9, 0], [c.exit_code for c in self.seen])

    def test_a_lock_that_persists_raises_container_locked(self):
        self.only_fault(tool='vzctl', command='set', exit_code=9,
                        stderr='Container already locked')
        started = time.monotonic()
        error = self.assertRaises(exception.ContainerLocked,
                                  hosttools.run, 'vzctl', 'set', 101, '--save',
                                  '--cpus', '1')
        # One call and three retries, waiting 0.01 + 0.02 + 0.04 s.
        self.assertEqual([9] * 4, [c.exit_code for c in self.seen])
        self.assertGreaterEqual(time.monotonic() - started, 0.07)
        self.assertIn('Container already locked', error.format_message())

    def test_no_retries_when_configured_so(self):
        self.flags(group='openvz', lock_retries=0)
        self.only_fault(tool='vzctl', command='set', exit_code=9)
        self.assertRaises(exception.ContainerLocked,
                          hosttools.run, 'vzctl', 'set', 101, '--save',
                          '--cpus', '1')
        self.assertEqual(1, len(self.seen))

    def test_a_lock_held_by_a_live_process_is_waited_out(self):
        # A real lock file naming a live process (this one), released
        # while the driver waits: vzctl itself reports the conflict.
        self.flags(group='openvz', lock_retries=5, lock_retry_interval=0.1)
        instance = '0d00ffe6-70fd-4352-b52a-28779e5faa9c'
        self.assertEqual(0, self.host.run(
            'vzctl', 'set', 101, '--save', '--cpus', '1', '--name', instance,
            '--description', 'nova-instance=' + instance)[0])
        lock = os.path.join(self.host.root, 'vz', 'lock', '101.lck')
        with open(lock, 'w') as f:
            f.write('%d\nsetting\n' % os.getpid())
        release = threading.Timer(0.3, os.unlink, [lock])
        release.start()
        self.addCleanup(release.cancel)

        hosttools.run('vzctl', 'set', 101, '--save', '--cpus', '2')

        codes = [c.exit_code for c in self.seen]
        self.assertEqual(0, codes[-1])
        self.assertIn(9, codes)
        self.assertEqual('2', self.host_config('101')['CPUS'])

    def host_config(self, ctid):
        return vzconf.read(os.path.join(self.host.root, 'etc', 'vz', 'conf',
                                        '%s.conf' % ctid))


class TestListeners(_HostToolsTest):

    def test_listeners_see_every_call(self):
        hosttools.run('vzctl', '--version')
        self.assertRaises(exception.HostToolError, hosttools.run, 'vzctl',
                          'start', 101)
        self.assertEqual([('vzctl', ('--version',), 0),
                          ('vzctl', ('start', '101'), 14)],
                         [(c.tool, c.argv, c.exit_code) for c in self.seen])
        self.assertIn('vzctl version', self.seen[0].stdout)
        self.assertTrue(all(c.seconds > 0 for c in self.seen))

    def test_a_removed_listener_hears_nothing(self):
        heard = []
        hosttools.add_listener(heard.append)
        hosttools.remove_listener(heard.append)
        hosttools.run('vzctl', '--version')
        self.assertEqual([], heard)
        self.assertEqual(1, len(self.seen))


#: Runs a hung vzlist in an eventlet-patched process, as nova-compute is,
#: with the privileged side in process; prints what was raised and which
#: vzlist processes were left running.
EVENTLET_TIMEOUT = """
import eventlet
eventlet.monkey_patch()
import json, os, sys
from nova_openvz import conf, exception, hosttools, vz4
from nova_openvz.testing import fixtures as sim
options = json.loads(sys.argv[1])
for name, value in options.items():
    conf.CONF.set_override(name, value, group='openvz')
with sim.InProcessPrivsep():
    try:
        hosttools.run('vzlist', *vz4.list_all())
        raised = None
    except exception.ToolTimeout as e:
        raised = 'ToolTimeout: ' + e.format_message()
    except BaseException as e:
        raised = '%s.%s' % (type(e).__module__, type(e).__name__)
tool = os.path.join(options['tools_dir'], 'vzlist').encode()
left = []
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        with open('/proc/%s/cmdline' % pid, 'rb') as f:
            if tool in f.read().split(b'\\0'):
                left.append(pid)
    except OSError:
        pass
print(json.dumps([raised, left]))
"""


class TestTimeout(_HostToolsTest):

    def test_a_call_over_the_timeout_is_killed(self):
        self.flags(group='openvz', tool_timeout=1)
        self.host.set_latency('vzctl stop', 10)
        started = time.monotonic()
        error = self.assertRaises(exception.ToolTimeout,
                                  hosttools.run, 'vzctl', 'stop', 101)
        self.assertLess(time.monotonic() - started, 5)
        self.assertIn('1 seconds', error.format_message())
        self.assertIsNone(self.seen[-1].exit_code)
        # The next call is not affected.
        self.assertEqual(0, hosttools.run('vzctl', '--version').exit_code)

    def test_a_hung_listing_is_killed_at_the_query_timeout(self):
        # Every state query waits for the listing in progress: a hung
        # vzlist must not hold them for tool_timeout.
        self.flags(group='openvz', tool_timeout=900, query_timeout=1)
        self.host.set_latency('vzlist', 30)
        error = self.assertRaises(exception.ToolTimeout,
                                  inventory.ContainerListing().all)
        self.assertIn('vzlist', error.format_message())
        self.assertIn('1 seconds', error.format_message())
        self.assertIsNone(self.seen[-1].exit_code)

    def test_a_hung_tool_under_eventlet_is_killed_and_a_tool_timeout(self):
        # nova-compute runs eventlet-patched; there processutils raises
        # eventlet's own TimeoutExpired, which must not escape raw with the
        # tool left running.
        self.host.set_latency('vzlist', 60)
        options = dict(self.host.options(), query_timeout=1)
        proc = subprocess.run(
            [sys.executable, '-c', EVENTLET_TIMEOUT, json.dumps(options)],
            capture_output=True, text=True, check=True, timeout=50)
        raised, left = json.loads(proc.stdout.splitlines()[-1])
        self.assertEqual('ToolTimeout: vzlist -a did not finish within 1 '
                         'seconds and was killed', raised)
        self.assertEqual([], left)
