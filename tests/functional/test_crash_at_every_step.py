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

"""nova-compute dies after each step of a boot, a delete and others.

A step is one host-tool call, read from the simulated host's call log as
the fault matrix reads them (:mod:`nova_openvz.testing.faults`).  For each,
nova-compute "dies" just before the next call, then a new nova-compute
starts, and the test checks that nothing is orphaned -- every container on
the host belongs to a server Nova lists, and once the servers are deleted
the host holds no container, file or console logger of theirs -- and that
every server is where Nova thinks it is.  A delete cut short is finished
by the new compute (Nova resumes a ``deleting`` instance in ``init_host``)
and must leave the host as empty as before the boot.  A stop, a start
and a hard reboot cut short are done again, a create image is given up
(Nova's ``init_host`` decides which): the server must end in its status
before or after, its container as that status tells.

How nova-compute is killed: Nova's functional harness runs every service
in this one process, so a SIGKILL would take the test with it.  Instead
the next tool call hangs (a fault rule that waits on a file), so the old
compute's thread does nothing more -- no next step, no cleanup, exactly
what a killed process does -- and Nova's ``restart_compute_service``
starts a new ComputeManager with a new driver (``keep_hypervisor_state=
False``: its view of the host comes from the host alone, through
``init_host``).  A dead process's in-memory locks die with it: the new
compute gets fresh ones, or it would wait forever for the instance lock the
hung thread holds.  Nor does a dead process wait for its RPC handlers to
return, as ``Service.stop`` would for the delete running in one.  At the
end the hung calls fail (exit 137, "Killed") while the host still exists,
so the old threads end too.
"""

import time

import fixtures
from oslo_concurrency import lockutils

from nova_openvz import inventory
from nova_openvz.testing import allinone
from nova_openvz.testing import faultmatrix
from nova_openvz.testing import faults
from tests.functional import test_fault_matrix


class TestCrashAtEveryStep(test_fault_matrix.FaultMatrixTestCase):

    def _setup_compute_service(self):
        # A hung vzlist must not time out while the test goes on: a dead
        # compute does nothing more, not even give up on a call.
        self.flags(query_timeout=3600, group='openvz')
        return super()._setup_compute_service()

    def kill_compute_before(self, position, start):
        """Run ``start()``; kill nova-compute before ``position``."""
        if not self.hung:
            self.addCleanup(faults.release, self.vzhost)
        faults.hang_at(self.vzhost, position)
        result = start()
        for _ in range(240):
            if faults.held(self.vzhost, position):
                break
            time.sleep(0.25)
        else:
            self.fail('nova-compute never reached %s' % position)
        self.hung.append(position)
        faults.clear(self.vzhost)   # the new compute's calls run
        self.useFixture(fixtures.MockPatch(
            'oslo_concurrency.lockutils._semaphores',
            lockutils.Semaphores()))
        # Nor does it wait for its RPC handlers (a delete runs in one), not
        # even when the test's cleanup stops it again: no fixture undoes it.
        self.compute._wait_rpc_server = lambda *args: None
        self.compute = self.restart_compute_service(
            self.compute, keep_hypervisor_state=False)
        return result

    def assert_nothing_orphaned(self, where):
        """Every container on the host is a server Nova lists."""
        servers = {s['id']: s for s in self.api.get_servers()}
        for record in self.vzlist():
            self.assertIn(record.get('name'), servers, where)

    def discover(self, action):
        start = faults.mark(self.vzhost)
        result = action()
        return result, faults.positions(
            faults.calls_since(self.vzhost, start), skip=faultmatrix.SKIPPED)

    def setUp(self):
        super().setUp()
        self.hung = []
        self.delete(self.boot(name='warm-up'))
        self.empty_host = self.host_state()

    def test_crash_at_every_step_of_a_boot(self):
        server, steps = self.discover(lambda: self.boot(name='fm'))
        self.delete(server)
        for position in steps:
            where = 'killed before %s of a boot' % (position,)
            server = self.kill_compute_before(
                position, lambda: self._create_server(
                    name='fm', image_uuid=allinone.TEMPLATE_IMAGE_ID,
                    flavor_id='1', networks='none', expected_state='BUILD'))
            self.assert_nothing_orphaned(where)
            # The restarted compute puts a boot it did not finish in ERROR.
            server = self.wait_idle(server)
            self.assertEqual('ERROR', server['status'], where)
            self.delete_cleanly(server, where)

    def test_crash_at_every_step_of_a_delete(self):
        server = self.boot(name='fm')
        _, steps = self.discover(lambda: self.delete(server))
        self.assertIn('vzctl destroy #1', [str(p) for p in steps])
        for position in steps:
            where = 'killed before %s of a delete' % (position,)
            server = self.boot(name='fm')
            self.kill_compute_before(
                position, lambda: self.api.delete_server(server['id']))
            self.wait_gone(server)
            self.assert_host(self.empty_host, where)

    def check_crash(self, key):
        """Kill nova-compute before each call of ``key``; Nova finishes it.

        For the operations whose task state Nova's ``init_host`` takes up
        again (it retries a stop, a start and a reboot, and gives up a
        snapshot): the server ends where Nova says, its container as its
        status tells, and a delete leaves the host empty.
        """
        op = faultmatrix.BY_KEY[key]
        body = test_fault_matrix.ACTIONS[key]
        server = self.ready(op, None)
        _, steps = self.discover(lambda: self.run_operation(op, server))
        self.assertTrue(steps, key)
        for position in steps:
            where = 'killed before %s of %s' % (position, key)
            server = self.ready(op, server)
            self.kill_compute_before(position, lambda: self.api.
                                     post_server_action(server['id'], body))
            server = self.wait_idle(server)
            self.assertIn(server['status'], (op.before, op.after), where)
            self.assertEqual(
                test_fault_matrix.CONTAINER_STATUS[server['status']],
                sorted(c['status'] for c in self.vzlist()), where)
            # Running as Nova shows it: no process left frozen (a snapshot
            # freezes it), which vzlist would still list as running.
            for record in self.vzlist():
                self.assertFalse(self.vzhost.frozen(record['ctid']), where)
                self.assertNotIn(inventory.SNAPSHOT_FREEZE_WORD,
                                 record.get('description') or '', where)
        self.delete_cleanly(server, key)

    def test_crash_at_every_step_of_a_stop(self):
        self.check_crash('stop')

    def test_crash_at_every_step_of_a_start(self):
        self.check_crash('start')

    def test_crash_at_every_step_of_a_hard_reboot(self):
        self.check_crash('reboot-hard')

    def test_crash_at_every_step_of_a_snapshot(self):
        self.check_crash('snapshot')
