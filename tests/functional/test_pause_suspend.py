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

"""Pause and suspend through Nova's API, checked from the host's kernel.

Pause freezes the container's processes (vzctl chkpnt --suspend); suspend
checkpoints it to ``$DUMPDIR/Dump.<CTID>`` and stops it (vzctl chkpnt),
resume restores it (vzctl restore).
"""

import os

from nova.compute import power_state
from nova import context as nova_context
from nova import objects

from nova_openvz.testing import allinone

#: Half-second looks: a shared, loaded test machine may take a minute.
WAIT = 120


class _Patient(allinone.OpenVZCloudTestCase):
    """Waits longer than Nova's helpers (five seconds) for each state."""

    def boot(self, name='ct', flavor_id='1', expected_state='ACTIVE'):
        server = super().boot(name, flavor_id, expected_state='BUILD')
        return self._wait_for_state_change(server, expected_state,
                                           max_retries=WAIT)

    def _action(self, server, action, expected_state):
        self.api.post_server_action(server['id'], {action: None})
        return self._wait_for_server_parameter(
            server, {'status': expected_state,
                     'OS-EXT-STS:task_state': None}, max_retries=WAIT)


class TestPause(_Patient):

    def setUp(self):
        super().setUp()
        if self.kernel_backend != 'real':
            self.skipTest('needs the real kernel backend (the freezer '
                          'cgroup); this host runs the %s one'
                          % self.kernel_backend)

    def _pause(self, server):
        return self._action(server, 'pause', 'PAUSED')

    def _sync_power_state(self, server):
        """Nova's own power-state sync of this server, run now."""
        ctxt = nova_context.get_admin_context()
        instance = objects.Instance.get_by_uuid(ctxt, server['id'])
        self.compute.manager._query_driver_power_state_and_sync(ctxt,
                                                                instance)

    def test_pause_freezes_and_stays_paused_across_a_compute_restart(self):
        server = self.boot(name='paused')
        ctid = self.container(server)['ctid']
        self.assertFalse(self.vzhost.frozen(ctid))
        server = self._pause(server)
        self.assertEqual(power_state.PAUSED,
                         server['OS-EXT-STS:power_state'])
        self.assertTrue(self.vzhost.frozen(ctid))
        # vzlist itself still lists a frozen container as running.
        self.assertEqual('running', self.container(server)['status'])

        self.compute = self.restart_compute_service(
            self.compute, keep_hypervisor_state=False)
        self._sync_power_state(server)
        server = self.api.get_server(server['id'])
        self.assertEqual('PAUSED', server['status'])
        self.assertEqual(power_state.PAUSED,
                         server['OS-EXT-STS:power_state'])
        self.assertTrue(self.vzhost.frozen(ctid))

        # A snapshot of the paused server leaves it frozen: no second
        # freeze, no thaw.
        before = len(self.vzhost.calls())
        self.api.post_server_action(server['id'],
                                    {'createImage': {'name': 'paused'}})
        server = self._wait_for_server_parameter(
            server, {'OS-EXT-STS:task_state': None, 'status': 'PAUSED'},
            max_retries=WAIT)
        self.assertEqual([], [c['argv'] for c in self.vzhost.calls()[before:]
                              if c['argv'][:1] == ['chkpnt']])
        self.assertTrue(self.vzhost.frozen(ctid))

        server = self._action(server, 'unpause', 'ACTIVE')
        self.assertEqual(power_state.RUNNING,
                         server['OS-EXT-STS:power_state'])
        self.assertFalse(self.vzhost.frozen(ctid))
        code, out, err = self.vzhost.run('vzctl', 'exec2', ctid,
                                         'echo thawed')
        self.assertEqual((0, 'thawed\n'), (code, out), err)

    def test_a_paused_server_can_be_rebooted_and_deleted(self):
        server = self._pause(self.boot(name='paused'))
        ctid = self.container(server)['ctid']
        # Nova allows a hard reboot of a paused server: it runs again.
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None},
            max_retries=WAIT)
        self.assertFalse(self.vzhost.frozen(ctid))
        server = self._pause(server)
        self._delete_server(server)
        self.assertIsNone(self.container(server))
        self.assertEqual([], self.vzhost.leftovers(ctid))


class TestSuspend(_Patient):

    def _dump(self, ctid):
        return os.path.join(self.vzhost.root, 'vz/dump/Dump.%d' % ctid)

    def test_suspend_writes_the_dump_and_resume_keeps_the_files(self):
        server = self.boot(name='suspended')
        ctid = self.container(server)['ctid']
        real = self.kernel_backend == 'real'
        if real:
            code, _, err = self.vzhost.run(
                'vzctl', 'exec2', ctid, 'echo kept > /root/mark && sync')
            self.assertEqual(0, code, err)
        server = self._action(server, 'suspend', 'SUSPENDED')
        self.assertEqual(power_state.SUSPENDED,
                         server['OS-EXT-STS:power_state'])
        self.assertTrue(os.path.isfile(self._dump(ctid)))
        self.assertEqual('suspended', self.container(server)['status'])
        code, out, _ = self.vzhost.run('vzctl', 'status', ctid)
        self.assertTrue(out.split()[-1] == 'suspended', out)

        server = self._action(server, 'resume', 'ACTIVE')
        self.assertEqual(power_state.RUNNING,
                         server['OS-EXT-STS:power_state'])
        self.assertFalse(os.path.exists(self._dump(ctid)))
        self.assertEqual('running', self.container(server)['status'])
        if real:
            code, out, err = self.vzhost.run('vzctl', 'exec2', ctid,
                                             'cat /root/mark')
            self.assertEqual((0, 'kept\n'), (code, out), err)

    def test_delete_of_a_suspended_server_removes_the_dump(self):
        server = self._action(self.boot(name='suspended'), 'suspend',
                              'SUSPENDED')
        ctid = self.container(server)['ctid']
        self.assertTrue(os.path.isfile(self._dump(ctid)))
        self._delete_server(server)
        self.assertIsNone(self.container(server))
        self.assertFalse(os.path.exists(self._dump(ctid)))
        self.assertEqual([], self.vzhost.leftovers(ctid))
