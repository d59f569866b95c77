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

"""Every host-tool call of every move fails in turn, through Nova's API.

Each test first runs its flow once, successfully, and reads the calls it
made from both hosts' call logs (:mod:`nova_openvz.testing.faultsteps`);
then, for each call, a new server goes through the same flow with that one
call failing.  Whatever failed, the server must end whole on exactly one
host (the one Nova names, its file inside), with nothing of it on the
other (container, areas, mounts, processes, console session), and the
tool's words and exit code must reach the user as a fault or a failed
action.  Deleting the server then leaves both hosts empty.

The console's ``vzctl console`` calls are left out: they last as long as
the container, and a console that cannot attach never fails an operation
(:func:`nova_openvz.console.attach_quietly`).
"""

import json
import os
import subprocess
import sys
import time

from nova import context as nova_context
from nova import objects

from nova_openvz.privsep import console as priv_console
from nova_openvz.testing import faults
from nova_openvz.testing import faultsteps
from tests.functional import test_migration

#: What the real kernel backend still holds for a host (processes, mounts,
#: loop devices, cgroups, network devices), asked in a child process: Nova's
#: test base forbids reading /proc and /sys in the test process.
_KERNEL_LEFTOVERS = '''
import json, sys
from nova_openvz.testing import cleanhost
from vzsim import hostfs
from vzsim.kernel import real
host = hostfs.Host(sys.argv[1])
left = real.leftovers(host, cleanhost._ctids(host))
left['processes'] = [p for p in left['processes']
                     if cleanhost._ours(host, p)]
print(json.dumps({k: v for k, v in left.items() if v}))
'''

COLD_DONE = ('finished', 'confirmed', 'reverted', 'error', 'failed')
LIVE_DONE = ('completed', 'error', 'failed', 'cancelled')


class MoveFaultsBase(test_migration.MigrationTestBase):

    # A failure on a compute host must end in the server's fault or
    # action, as between real services, not in the API call.
    CAST_AS_CALL = False

    def other(self, host):
        return [name for name in self.vzhosts if name != host][0]

    def boot_with_file(self, host='host1'):
        server = self.boot_on(host)
        if self.kernel_backend == 'real':
            self.write_file(host, server)
        return server

    def record(self, flow, server):
        """The steps of ``flow(server)`` run once without a fault."""
        recorder = faultsteps.Recorder(self.vzhosts)
        server = flow(server)
        steps = recorder.steps()
        self.assertNotEqual([], steps)
        return server, steps

    def cases(self, steps, prepare, flow, check, reusable=None):
        """Each step fails in its own run of ``flow``.

        ``prepare()`` makes a server ready for the flow; ``check(server,
        step)`` looks at the end state.  A server ``reusable(server)``
        (back as it was, whole) goes through the next case too; any other
        is deleted, which must leave both hosts empty.
        """
        server = None
        for step in steps:
            server = server or prepare()
            self.since = self.reports(server)
            words = faultsteps.fail(self.vzhosts, step)
            try:
                server = flow(server)
                check(server, step)
            except Exception as e:
                raise AssertionError('%s failing (%s): %s' % (
                    step, words, e)) from e
            finally:
                for vzhost in self.vzhosts.values():
                    faults.clear(vzhost)
            if not (reusable and reusable(server)):
                self.delete_and_assert_empty(server)
                server = None
        if server:
            self.delete_and_assert_empty(server)

    def back_on_host1(self, server):
        return server['status'] == 'ACTIVE' and \
            self.host_of(server) == 'host1'

    # The end state -----------------------------------------------------

    def act(self, server, action, statuses, new=True):
        """Ask for ``action``; the server once its migration is over.

        Only the newest migration counts (made by this action when
        ``new``; a confirm or revert ends the last one): a server going
        through several cases has older ones.
        """
        def newest():
            found = [m for m in self.api.api_get(
                '/os-migrations').body['migrations']
                if m['instance_uuid'] == server['id']]
            return max(found, key=lambda m: m['id']) if found else None

        before = newest()
        self.api.post_server_action(server['id'], action)
        for _attempt in range(self.WAIT_RETRIES):
            migration = newest()
            if migration and migration['status'].lower() in statuses and \
                    not (new and before and migration['id'] == before['id']):
                self.last_status = migration['status'].lower()
                return self.wait_idle(server)
            time.sleep(0.5)
        self.fail('no migration of %s reached %s' % (server['id'], statuses))

    def revert(self, server):
        return self.act(server, {'revertResize': None},
                        ('reverted', 'error'), new=False)

    def confirm(self, server):
        # A confirm sets no task state: wait for the server to leave
        # VERIFY_RESIZE (ACTIVE, or ERROR when it failed).
        self.act(server, {'confirmResize': None}, ('confirmed', 'error'),
                 new=False)
        for _attempt in range(self.WAIT_RETRIES):
            server = self.api.get_server(server['id'])
            if server['status'] != 'VERIFY_RESIZE':
                return server
            time.sleep(0.5)
        self.fail('%s stays in VERIFY_RESIZE' % server['id'])

    def wait_idle(self, server):
        return self._wait_for_server_parameter(
            server, {'OS-EXT-STS:task_state': None})

    def reports(self, server):
        """``{id: text}`` of the server's faults and failed events."""
        faults_ = objects.InstanceFaultList.get_by_instance_uuids(
            nova_context.get_admin_context(), [server['id']])
        texts = {('fault', f.id): f.message + ' ' + (f.details or '')
                 for f in faults_}
        for action in self.api.get_instance_actions(server['id']):
            events = self.api.get_instance_action_details(
                server['id'], action['request_id'])['events']
            texts.update({(action['request_id'], e['event']):
                          e.get('details') or '' for e in events
                          if e['result'] == 'Error'})
        return texts

    def reported(self, server):
        """What the server was told since this case started."""
        since = getattr(self, 'since', {})
        return ' '.join(text for key, text in self.reports(server).items()
                        if key not in since)

    def assert_reported(self, server, step):
        text = self.reported(server)
        for word in faultsteps.expected_words(step):
            self.assertIn(word, text)

    def kernel_leftovers(self, host):
        proc = subprocess.run(
            [sys.executable, '-c', _KERNEL_LEFTOVERS,
             self.vzhosts[host].root],
            check=True, capture_output=True, text=True)
        return json.loads(proc.stdout)

    def console_session(self, host, server):
        with self.host_config.active(host):
            agent = priv_console.console_agent_status() or {'sessions': []}
        return [s for s in agent['sessions'] if s['name'] == server['id']]

    def assert_nothing_on(self, host, server):
        self.assertIsNone(self.container_on(host, server))
        self.assertEqual([], self.vzhosts[host].all_leftovers())
        self.assertEqual({}, self.kernel_leftovers(host))
        self.assertEqual([], self.console_session(host, server))

    def assert_whole_on(self, host, server, status='running'):
        """The server is on ``host`` only, with its file inside."""
        self.assertEqual(host, self.host_of(server))
        record = self.container_on(host, server)
        self.assertIsNotNone(record, 'no container on %s' % host)
        self.assertEqual(status, record['status'])
        if self.kernel_backend == 'real':
            if status != 'running':
                self.vzhosts[host].run('vzctl', 'mount', record['ctid'])
            ctid = record['ctid']
            root = self.vzhosts[host].root
            if status == 'running':
                self.assert_file(host, server)
            else:
                path = '%s/vz/root/%d%s' % (root, ctid, test_migration.FILE)
                with open(path) as f:
                    self.assertEqual(server['id'] + '\n', f.read())
                self.vzhosts[host].run('vzctl', 'umount', ctid)
        self.assert_nothing_on(self.other(host), server)

    def assert_kept_on_destination(self, server, status=None):
        """The server on host2; host1's hidden copy goes at its next update.

        Nova calls the source no more once the destination holds the
        server: the copy ``vzmigrate -r no`` left there stays hidden from
        vzctl until the source's periodic resource update (run here at
        once) finds its server settled on host2.
        """
        self.assertEqual('host2', self.host_of(server))
        record = self.container_on('host2', server)
        self.assertIsNotNone(record)
        if status:
            self.assertEqual(status, record['status'])
        self.assertIsNone(self.container_on('host1', server))
        self.assertIn('%d.conf.migrated' % record['ctid'],
                      [os.path.basename(p) for p in
                       self.vzhosts['host1'].all_leftovers()])
        with self.host_config.active('host1'):
            self.computes['host1'].manager.update_available_resource(
                nova_context.get_admin_context())
        self.assert_nothing_on('host1', server)

    def delete_and_assert_empty(self, server):
        self._delete_server(server)
        for host in self.vzhosts:
            self.assertEqual([], self.vzhosts[host].all_leftovers())
            self.assertEqual({}, self.kernel_leftovers(host))


class TestColdMigrationFaults(MoveFaultsBase):

    def migrate(self, server):
        return self.act(server, {'migrate': None}, COLD_DONE)

    def test_each_call_of_a_cold_migration_fails_in_turn(self):
        server, steps = self.record(self.migrate, self.boot_with_file())
        self.assertEqual('VERIFY_RESIZE', server['status'])
        self._confirm_resize(server)
        self.delete_and_assert_empty(server)

        def check(server, step):
            if step.host == 'host1' or step.nested:
                # The source's move: back on the source, ACTIVE.
                self.assertEqual('ACTIVE', server['status'])
                self.assert_whole_on('host1', server)
            else:
                self.check_arrival_failed(server)
            self.assert_reported(server, step)

        self.cases(steps, self.boot_with_file, self.migrate, check,
                   reusable=self.back_on_host1)

    def check_arrival_failed(self, server):
        """A failure on the destination after the move: kept there.

        Nova made the destination the server's host and puts the server
        in ERROR; its container waits there, stopped, for a hard reboot.
        """
        self.assertEqual('ERROR', server['status'])
        self.assert_kept_on_destination(server, status='stopped')

    def test_each_call_of_a_revert_and_a_confirm_fails_in_turn(self):
        server = self.migrate(self.boot_with_file())
        server, revert_steps = self.record(self.revert, server)
        self.assertEqual('ACTIVE', server['status'])
        server, confirm_steps = self.record(self.confirm,
                                            self.migrate(server))
        self.assertEqual('ACTIVE', server['status'])
        self.delete_and_assert_empty(server)

        def moved():
            return self.migrate(self.boot_with_file())

        def revert_failed(server, step):
            self.assertEqual('ERROR', server['status'])
            if step.host == 'host2':
                # The destination could not give the server up: Nova
                # keeps it there.
                self.assert_kept_on_destination(server)
            else:
                # Back on the source, not started: a hard reboot starts it.
                self.assert_whole_on('host1', server, status='stopped')
            self.assert_reported(server, step)

        self.cases(revert_steps, moved, self.revert, revert_failed)

        def confirm_failed(server, step):
            # Nova errors the server out; it runs on at the destination.
            self.assertEqual('ERROR', server['status'])
            self.assert_kept_on_destination(server, status='running')
            self.assert_reported(server, step)

        self.cases(confirm_steps, moved, self.confirm, confirm_failed)


class TestLiveMigrationFaults(MoveFaultsBase):

    def live(self, server):
        return self.act(server, {'os-migrateLive': {
            'host': None, 'block_migration': 'auto'}}, LIVE_DONE)

    def test_each_call_of_a_live_migration_fails_in_turn(self):
        server, steps = self.record(self.live, self.boot_with_file())
        self.assert_whole_on('host2', server)
        self.delete_and_assert_empty(server)

        def check(server, step):
            # vzmigrate undoes its steps up to the switch: the server runs
            # on the source, the failure told.  A failure of its clean-up
            # on the source after the switch does not fail the move: the
            # server runs on the destination, the copy left here removed.
            self.assertEqual('ACTIVE', server['status'])
            if self.last_status == 'completed':
                self.assert_whole_on('host2', server)
            else:
                self.assert_whole_on('host1', server)
                self.assert_reported(server, step)

        self.cases(steps, self.boot_with_file, self.live, check,
                   reusable=self.back_on_host1)


class TestPeerUnreachable(MoveFaultsBase):
    """The network to the peer is cut: vzmigrate cannot reach it (exit 4)."""

    def test_no_move_starts_and_the_server_stays(self):
        server = self.boot_with_file()
        with open(self.vzhosts['host1'].sim_path('hosts.json'), 'w') as f:
            f.write('{}')
        self.api.post_server_action(server['id'], {'migrate': None})
        self._wait_for_migration_status(server, ['error'])
        server = self.wait_idle(server)
        self.assertEqual('ACTIVE', server['status'])
        self.assert_whole_on('host1', server)
        self.assert_failed_with(server, 'migrate', 'exit code 4',
                                "Can't connect to destination")

        self.since = self.reports(server)
        self._live_migrate(server, migration_expected_state='failed')
        server = self.wait_idle(server)
        self.assertEqual('ACTIVE', server['status'])
        self.assert_whole_on('host1', server)
        self.assertIn('exit code 4', self.reported(server))
        self.assertIn("Can't connect to destination", self.reported(server))


class TestEvacuationFaults(MoveFaultsBase):

    #: Servers booted on host1 before it goes down (one to record).
    SERVERS = 6

    def evacuate(self, server):
        return self.act(server, {'evacuate': {}},
                        ('done', 'failed', 'error'))

    def test_each_call_of_an_evacuation_fails_in_turn(self):
        # host2 has a CT 101 of its own: an evacuated server gets another.
        taken = self.boot_on('host2', 'taken')
        servers = [self.boot_with_file() for _ in range(self.SERVERS)]
        self.computes['host1'].stop()
        service = self.api.get_services(host='host1',
                                        binary='nova-compute')[0]
        self.api.put_service(service['id'], {'forced_down': 'true'})

        server, steps = self.record(self.evacuate, servers.pop(0))
        self.assertEqual('SHUTOFF', server['status'])
        self.assertEqual('host2', self.host_of(server))
        ctids = {self.container_on('host2', s)['ctid']
                 for s in (taken, server)}
        self.assertEqual(2, len(ctids))
        self._delete_server(server)
        self._delete_server(taken)
        self.assertEqual([], self.vzhosts['host2'].all_leftovers())
        self.assertLessEqual(len(steps), len(servers),
                             'raise SERVERS: %s' % (steps,))

        def check(server, step):
            self.assertIsNotNone(self.container_on('host1', server))
            if self.container_on('host2', server) is not None:
                # Only the stop after the rebuild failed (2.95 evacuates
                # stopped): Nova fails the evacuation, keeps the server on
                # the dead host and leaves the rebuilt container.  Once the
                # server is deleted, Nova's reaping of running deleted
                # instances (a periodic task of host2) removes it.
                self.assertEqual('ERROR', server['status'])
                self.assertEqual('host1', self.host_of(server))
                self.assert_reported(server, step)
                self._delete_server(server)
                manager = self.computes['host2'].manager
                manager._cleanup_running_deleted_instances(
                    nova_context.get_admin_context())
                self.assertEqual([], self.vzhosts['host2'].all_leftovers())
                return
            # Rebuilt from its image or not at all: nothing on host2, the
            # original still on the dead host, for a new evacuation.
            self.assertEqual('ERROR', server['status'])
            self.assert_nothing_on('host2', server)
            self.assert_reported(server, step)

        for step in steps:
            server = servers.pop(0)
            words = faultsteps.fail(self.vzhosts, step)
            try:
                check(self.evacuate(server), step)
            except Exception as e:
                raise AssertionError('%s failing (%s): %s' % (
                    step, words, e)) from e
            finally:
                faults.clear(self.vzhosts['host2'])
