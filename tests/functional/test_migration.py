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

"""Moving servers between two OpenVZ hosts through Nova's API.

Two nova-compute services, each on its own simulated host tree
(:mod:`nova_openvz.testing.multihost`); the simulated vzmigrate reaches the
other tree as the real one reaches the other host with ssh.  A file
written inside the server must survive each move, which needs the real
kernel backend (a shell in the guest).
"""

import os
import shutil
import time

import fixtures
from nova import context as nova_context
from nova import objects
from nova.tests.fixtures import os_brick as nova_os_brick
from nova.tests.functional.api import client as api_client
from os_brick import privileged as brick_privileged
from oslo_utils import uuidutils

from nova_openvz.privsep import vzconf
from nova_openvz.testing import allinone
from nova_openvz.testing import faults
from nova_openvz.testing import multihost
from tests.functional import test_volumes

FILE = '/root/survivor'


class MigrationTestBase(multihost.TwoHostCloudTestCase):

    def boot_on(self, host, name='ct'):
        return self._create_server(
            name=name, image_uuid=allinone.TEMPLATE_IMAGE_ID, flavor_id='1',
            networks='none', host=host)

    def assert_failed_with(self, server, action, *words):
        """The action's failed event tells vzmigrate's words (2.84)."""
        actions = self.api.get_instance_actions(server['id'])
        request = [a for a in actions if a['action'] == action][0]
        events = self.api.get_instance_action_details(
            server['id'], request['request_id'])['events']
        details = [e.get('details') or '' for e in events
                   if e['result'] == 'Error']
        self.assertTrue(details, events)
        for word in words:
            self.assertIn(word, ' '.join(details))

    def needs_real_kernel(self):
        if self.kernel_backend != 'real':
            self.skipTest('needs the real kernel backend (a shell inside '
                          'the guest); this host runs the %s one'
                          % self.kernel_backend)

    def exec2(self, host, server, command):
        ctid = self.container_on(host, server)['ctid']
        code, out, err = self.vzhosts[host].run('vzctl', 'exec2', ctid,
                                                command)
        self.assertEqual(0, code, err)
        return out

    def write_file(self, host, server):
        self.exec2(host, server,
                   'echo %s > %s && sync' % (server['id'], FILE))

    def assert_file(self, host, server):
        self.assertEqual(server['id'] + '\n',
                         self.exec2(host, server, 'cat %s' % FILE))

    def assert_only_on(self, host, server, status='running',
                       other_has_its_id=False):
        """Running on ``host``; nothing of its container on the other.

        ``other_has_its_id``: the other host has another server's
        container under the same CT ID, so its files are no leftovers.
        """
        self.assertEqual(host, self.host_of(server))
        record = self.container_on(host, server)
        self.assertIsNotNone(record, 'no container on %s' % host)
        self.assertEqual(status, record['status'])
        for other in self.vzhosts:
            if other != host:
                self.assertIsNone(self.container_on(other, server))
                if not other_has_its_id:
                    self.assertEqual([], self.vzhosts[other].leftovers(
                        record['ctid']))


class TestTwoHosts(MigrationTestBase):

    def test_each_host_boots_into_its_own_tree(self):
        first = self.boot_on('host1', 'first')
        second = self.boot_on('host2', 'second')
        self.assertEqual('host1', self.host_of(first))
        self.assertEqual('host2', self.host_of(second))
        self.assertEqual('running',
                         self.container_on('host1', first)['status'])
        self.assertIsNone(self.container_on('host2', first))
        self.assertEqual('running',
                         self.container_on('host2', second)['status'])
        self.assertIsNone(self.container_on('host1', second))


class TestLifecycleEventsOnEachHost(MigrationTestBase):

    def _setup_compute_service(self):
        # Only the poller can tell Nova of a stop made outside it.
        self.flags(sync_power_state_interval=-1)
        self.flags(lifecycle_event_interval=0.5, group='openvz')
        return super()._setup_compute_service()

    def test_each_host_tells_nova_of_its_own_containers(self):
        for host in ('host1', 'host2'):
            server = self.boot_on(host, host)
            poller = self.computes[host].driver.lifecycle_events
            # Two polls after the boot, the poller knows it as running.
            polls = poller.polls + 2
            self._wait_for_assert(lambda: (
                self.assertGreaterEqual(poller.polls, polls),
                self.assertIsNotNone(poller.seen(server['id']))),
                max_retries=60)
            ctid = self.container_on(host, server)['ctid']
            code, _, err = self.vzhosts[host].run('vzctl', 'stop', ctid,
                                                  '--fast')
            self.assertEqual(0, code, err)
            self._wait_for_state_change(server, 'SHUTOFF', max_retries=60)


class TestColdMigration(MigrationTestBase):

    def test_migrate_and_confirm_moves_the_server_with_its_files(self):
        self.needs_real_kernel()
        server = self.boot_on('host1')
        ctid = self.container_on('host1', server)['ctid']
        self.write_file('host1', server)
        server = self._migrate_server(server)
        self.assertEqual('host2', self.host_of(server))
        self.assertEqual('running',
                         self.container_on('host2', server)['status'])
        # Until the confirm, host1 keeps the area for a revert.
        self.assertIsNone(self.container_on('host1', server))
        self.assertNotEqual([], self.vzhosts['host1'].leftovers(ctid))
        self._confirm_resize(server)
        self.assert_only_on('host2', server)
        self.assertEqual(ctid, self.container_on('host2', server)['ctid'])
        self.assert_file('host2', server)

    def test_revert_brings_the_server_back_as_it_was(self):
        self.needs_real_kernel()
        server = self.boot_on('host1')
        ctid = self.container_on('host1', server)['ctid']
        self.write_file('host1', server)
        server = self._migrate_server(server)
        self.assertEqual('host2', self.host_of(server))
        # A change on the destination is dropped with it.
        self.exec2('host2', server, 'echo changed > %s' % FILE)
        server = self._revert_resize(server)
        self.assert_only_on('host1', server)
        self.assertEqual(ctid, self.container_on('host1', server)['ctid'])
        self.assert_file('host1', server)

    def test_resize_to_the_other_host_applies_the_new_flavor(self):
        server = self.boot_on('host1')   # m1.tiny: 512 MB, 1 GB disk
        bigger = self._create_flavor(name='bigger', memory_mb=2048, vcpu=1,
                                     disk=2, ephemeral=0)
        server = self._resize_server(server, bigger)
        self.assertEqual('host2', self.host_of(server))
        self._confirm_resize(server)
        record = self.container_on('host2', server)
        self.assertEqual('running', record['status'])
        self.assertEqual(2048 * 256, record['physpages']['limit'])
        config = vzconf.read(os.path.join(
            self.vzhosts['host2'].root,
            'etc/vz/conf/%d.conf' % record['ctid']))
        self.assertEqual('%d:%d' % (2 * 1024 ** 2, 2 * 1024 ** 2),
                         config['DISKSPACE'])
        if self.kernel_backend == 'real':
            # The guest sees the grown disk.
            size_kb = int(self.exec2('host2', server,
                                     'df -k / | tail -n 1').split()[1])
            self.assertGreater(size_kb, 1.5 * 1024 ** 2)
        self.assert_only_on('host2', server)

    def test_a_stopped_server_moves_stopped(self):
        server = self._stop_server(self.boot_on('host1'))
        server = self._migrate_server(server)
        self.assertEqual('stopped',
                         self.container_on('host2', server)['status'])
        self.api.post_server_action(server['id'], {'confirmResize': None})
        server = self._wait_for_state_change(server, 'SHUTOFF')
        self._wait_for_migration_status(server, ['confirmed'])
        self.assert_only_on('host2', server, status='stopped')


class _VolumeMovesBase(MigrationTestBase):
    """A volume on a loop partition, through os-brick's local connector.

    Both hosts see the same device, as two hosts of one iSCSI target see
    one disk.
    """

    def setUp(self):
        super().setUp()
        self.needs_real_kernel()
        missing = [t for t in test_volumes.HOST_TOOLS if not shutil.which(t)]
        if missing:
            self.skipTest('needs %s on this machine' % ', '.join(missing))
        # As tests/functional/test_volumes.py: os-brick in this process.
        self.useFixture(fixtures.MockPatchObject(
            brick_privileged.default, 'client_mode', False))
        self.useFixture(fixtures.MonkeyPatch(
            'os_brick.initiator.connector.get_connector_properties',
            nova_os_brick.get_connector_properties))
        self.cinder.VOLUME_CONNECTION_INFO = dict(
            self.cinder.VOLUME_CONNECTION_INFO)

    def boot_with_volume(self):
        """A server on host1 with a volume at /dev/vdb holding a file."""
        server = self.boot_on('host1')
        backing = self.useFixture(test_volumes.LoopVolume(
            self.useFixture(fixtures.TempDir()).path, test_volumes.GiB))
        volume_id = uuidutils.generate_uuid()
        self.cinder.VOLUME_CONNECTION_INFO[volume_id] = {
            'driver_volume_type': 'local',
            'data': {'device_path': backing.path}}
        self._attach_volume(server, volume_id)
        self.exec2('host1', server,
                   'mkdir -p /data && mount /dev/vdb /data && '
                   'echo kept > /data/kept && umount /data')
        return server

    def assert_volume_data(self, host, server):
        self.assertEqual('kept\n', self.exec2(
            host, server, 'mount -o ro /dev/vdb /data && cat /data/kept; '
                          'code=$?; umount /data; exit $code'))


class TestColdMigrationWithVolume(_VolumeMovesBase):
    """A volume's data is there after the move."""

    def test_a_volume_follows_the_server(self):
        server = self.boot_with_volume()
        server = self._migrate_server(server)
        self._confirm_resize(server)
        self.assert_only_on('host2', server)
        self.assert_volume_data('host2', server)


class TestLiveMigrationWithVolume(_VolumeMovesBase):

    def test_a_volume_not_mounted_inside_moves_live(self):
        server = self.boot_with_volume()
        ctid = self.container_on('host1', server)['ctid']
        self._live_migrate(server)
        server = self.api.get_server(server['id'])
        self.assertEqual('ACTIVE', server['status'])
        self.assert_only_on('host2', server)
        self.assertEqual(ctid, self.container_on('host2', server)['ctid'])
        # Granted again on the peer, node and all: the guest reads it.
        self.assert_volume_data('host2', server)

    def test_a_failed_move_gives_the_volume_back(self):
        server = self.boot_with_volume()
        # The move itself fails, after the pre-check (vzmigrate's first
        # call, --check-only) and after the volume's access was withheld.
        faults.fail_at(self.vzhosts['host1'],
                       faults.Position('vzmigrate', None, 2))
        self._live_migrate(server, migration_expected_state='failed')
        server = self.api.get_server(server['id'])
        self.assertEqual('ACTIVE', server['status'])
        self.assert_only_on('host1', server)
        self.assert_volume_data('host1', server)

    def test_a_volume_mounted_inside_keeps_the_server_on_the_source(self):
        server = self.boot_with_volume()
        self.exec2('host1', server, 'mount /dev/vdb /data')
        # The source's pre-check refuses, with the driver's words in the
        # conductor's log; Nova's scheduler finds no other host and the
        # migration ends in error (this harness' casts run as calls, so
        # the API request itself fails here).
        self.assertRaises(
            api_client.OpenStackApiException, self.api.post_server_action,
            server['id'], {'os-migrateLive': {'host': None,
                                              'block_migration': 'auto'}})
        self._wait_for_migration_status(server, ['error'])
        self.assertIn('/dev/vdb at /data; unmount it in the guest',
                      self.stdlog.logger.output)
        server = self.api.get_server(server['id'])
        self.assertEqual('ACTIVE', server['status'])
        self.assert_only_on('host1', server)
        # Nothing was taken away: the guest still uses its mount.
        self.assertEqual('kept\n',
                         self.exec2('host1', server, 'cat /data/kept'))


class TestColdMigrationFailures(MigrationTestBase):
    """A refused or failed move leaves the server running on its host.

    Nova casts resize_instance to the source; the harness's usual
    cast-as-call would carry the source's error back into the
    destination's prep_resize (which then reschedules), so these tests
    keep casts as casts, as in a real cloud.
    """

    CAST_AS_CALL = False

    def test_a_ct_id_taken_on_the_destination_refuses_the_move(self):
        # vzmigrate keeps the CT ID: with it taken on host2 (exit 9), the
        # move is refused before anything changes.
        taken = self.boot_on('host2', 'taken')
        server = self.boot_on('host1')
        self.assertEqual(self.container_on('host2', taken)['ctid'],
                         self.container_on('host1', server)['ctid'])
        self.api.post_server_action(server['id'], {'migrate': None})
        self._wait_for_migration_status(server, ['error'])
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assert_only_on('host1', server, other_has_its_id=True)
        self.assertEqual('running',
                         self.container_on('host2', taken)['status'])
        self.assert_failed_with(server, 'migrate', 'exit code 9',
                                'already exists on destination')

    def test_a_failed_copy_leaves_the_server_running_on_the_source(self):
        server = self.boot_on('host1')
        # The second vzmigrate call: the copy, after the checks passed.
        self.vzhosts['host1'].inject_fault(
            'vzmigrate', call=2, exit_code=6,
            stderr='Error: Failed to sync container private areas')
        self.api.post_server_action(server['id'], {'migrate': None})
        self._wait_for_migration_status(server, ['error'])
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assert_only_on('host1', server)
        self.assertEqual([], self.vzhosts['host2'].all_leftovers())
        self.assert_failed_with(server, 'migrate', 'exit code 6',
                                'Failed to sync container private areas')


class TestColdMigrationDestinationFailure(MigrationTestBase):
    """The destination took the container but cannot start it.

    Nova has made the destination the server's host by then (the source
    finished ``resize_instance``): it puts the server in ERROR there and
    says a hard reboot may recover it.  The driver keeps the container
    there, stopped, with the server's files, and undoes the rest.
    """

    CAST_AS_CALL = False

    def test_the_server_is_kept_on_the_destination_for_a_hard_reboot(self):
        server = self.boot_on('host1')
        ctid = self.container_on('host1', server)['ctid']
        if self.kernel_backend == 'real':
            self.write_file('host1', server)
        self.vzhosts['host2'].inject_fault(
            'vzctl', command='start', call=1, exit_code=133,
            stderr='Container start failed: init did not start')
        self.api.post_server_action(server['id'], {'migrate': None})
        self._wait_for_migration_status(server, ['error'])
        server = self._wait_for_state_change(server, 'ERROR')
        self.assertEqual('host2', self.host_of(server))
        self.assertIn('exit code 133', server['fault']['message'])
        self.assertIn('init did not start', server['fault']['message'])
        # Kept stopped, and not listed on the source (only its hidden copy).
        self.assertEqual('stopped',
                         self.container_on('host2', server)['status'])
        self.assertIsNone(self.container_on('host1', server))

        # Nova's advice works: the hard reboot starts it where it is.
        self._reboot_server(server, hard=True)
        self.assertEqual('running',
                         self.container_on('host2', server)['status'])
        self.assertEqual('ACTIVE',
                         self.api.get_server(server['id'])['status'])
        if self.kernel_backend == 'real':
            self.assert_file('host2', server)

        # The source still holds its copy, hidden from vzctl and vzlist;
        # Nova never calls the source again for this move, so the source
        # removes it at its next resource update (a periodic task, run
        # here at once), seeing the server settled on host2.
        self.assertIsNone(self.container_on('host1', server))
        self.assertIn(
            'etc/vz/conf/%d.conf.migrated' % ctid,
            [os.path.relpath(p, self.vzhosts['host1'].root)
             for p in self.vzhosts['host1'].leftovers(ctid)])
        with self.host_config.active('host1'):
            self.computes['host1'].manager.update_available_resource(
                nova_context.get_admin_context())
        self.assertEqual([], self.vzhosts['host1'].leftovers(ctid))
        self.assertEqual('running',
                         self.container_on('host2', server)['status'])


class TestLiveMigration(MigrationTestBase):

    def test_live_migration_moves_a_running_server(self):
        self.needs_real_kernel()
        server = self.boot_on('host1')
        ctid = self.container_on('host1', server)['ctid']
        self.write_file('host1', server)
        self._live_migrate(server)
        self.assert_only_on('host2', self.api.get_server(server['id']))
        self.assertEqual(ctid, self.container_on('host2', server)['ctid'])
        self.assertEqual('ACTIVE',
                         self.api.get_server(server['id'])['status'])
        self.assert_file('host2', server)

    def test_a_refused_live_migration_keeps_the_server_on_the_source(self):
        self.boot_on('host2', 'taken')
        server = self.boot_on('host1')
        self._live_migrate(server, migration_expected_state='failed')
        server = self.api.get_server(server['id'])
        self.assertEqual('ACTIVE', server['status'])
        self.assert_only_on('host1', server, other_has_its_id=True)
        # Nova's rollback leaves the server ACTIVE (no fault shown in the
        # API then); the driver recorded vzmigrate's words as its fault.
        faults = objects.InstanceFaultList.get_by_instance_uuids(
            nova_context.get_admin_context(), [server['id']])
        self.assertIn('exit code 9', faults[0].message)
        self.assertIn('already exists on destination', faults[0].message)


class TestLiveMigrationAbort(MigrationTestBase):

    # The abort comes while the migration runs: casts stay casts.
    CAST_AS_CALL = False

    def test_abort_stops_vzmigrate_and_the_server_stays_on_the_source(self):
        server = self.boot_on('host1')
        # vzmigrate takes its time (before its first step, here), so the
        # abort finds it running.
        self.vzhosts['host1'].set_latency('vzmigrate', 60)
        self.api.post_server_action(
            server['id'],
            {'os-migrateLive': {'host': None, 'block_migration': 'auto'}})
        migration = self._wait_for_migration_status(server, ['running'])
        self.api.api_delete('/servers/%s/migrations/%s'
                            % (server['id'], migration['id']))
        self._wait_for_migration_status(server, ['cancelled'])
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assert_only_on('host1', server)


class TestEvacuation(MigrationTestBase):

    def test_evacuate_rebuilds_on_the_other_host_and_the_old_one_cleans(self):
        server = self.boot_on('host1')
        bystander = self.boot_on('host1', 'bystander')
        ctid = self.container_on('host1', server)['ctid']
        compute = self.computes['host1']
        compute.stop()
        service = self.api.get_services(host='host1',
                                        binary='nova-compute')[0]
        self.api.put_service(service['id'], {'forced_down': 'true'})
        # Since microversion 2.95 an evacuated server arrives stopped.
        server = self._evacuate_server(server, expected_host='host2',
                                       expected_state='SHUTOFF')
        self.assertEqual('stopped',
                         self.container_on('host2', server)['status'])
        self._start_server(server)
        self.assertEqual('running',
                         self.container_on('host2', server)['status'])
        # host1 comes back: only the evacuated container goes.
        self.restart_compute_service(compute)
        self.api.put_service(service['id'], {'forced_down': 'false'})
        self.assertIsNone(self.container_on('host1', server))
        self.assertEqual([], self.vzhosts['host1'].leftovers(ctid))
        self.assertEqual('running',
                         self.container_on('host1', bystander)['status'])
        self.assertEqual('ACTIVE',
                         self.api.get_server(bystander['id'])['status'])
        self.assertEqual('host2', self.host_of(server))


class TestMovesWithPorts(MigrationTestBase):
    """A server's port works at the destination: a peer still pings it.

    Both simulated hosts share this machine's network stack and one Open
    vSwitch (whose bridge stands for the network joining real hosts), so
    a port's device has one name on both: the driver must never take back
    on the source what the destination plugged.
    """

    NETWORKING = True

    def ping(self, host, server, address, timeout=20):
        """One ping answered within ``timeout`` seconds of trying."""
        ctid = self.container_on(host, server)['ctid']
        deadline = time.monotonic() + timeout
        while True:
            code, out, err = self.vzhosts[host].run(
                'vzctl', 'exec2', ctid, 'ping -c 1 -W 1 %s' % address)
            if code == 0 or time.monotonic() > deadline:
                break
        self.assertEqual(0, code, 'no answer from %s within %d s: %s%s'
                         % (address, timeout, out, err))

    def setUp(self):
        super().setUp()
        # Neutron's agent on the destination reports the port plugged
        # there before a live migration; with one switch for both hosts
        # the harness's agent sees no change to report (the port never
        # left the bridge), so Nova is told not to wait for it.
        self.flags(live_migration_wait_for_vif_plug=False, group='compute')
        self.peer_port, self.port = self.make_port(), self.make_port()
        self.peer = self.boot_on_ports('peer', [self.peer_port],
                                       host='host1')
        self.server = self.boot_on_ports('server', [self.port],
                                         host='host1')
        self.address = self.port['fixed_ips'][0]['ip_address']
        self.ping('host1', self.peer, self.address)

    def test_cold_migration_and_confirm_keep_the_port_working(self):
        server = self._migrate_server(self.server)
        self.assertEqual('host2', self.host_of(server))
        self.ping('host1', self.peer, self.address)
        self._confirm_resize(server)
        self.assert_only_on('host2', server)
        self.ping('host1', self.peer, self.address)
        # And back the other way: host2's server reaches the peer.
        self.ping('host2', server,
                  self.peer_port['fixed_ips'][0]['ip_address'])

    def test_revert_keeps_the_port_working_on_the_source(self):
        server = self._migrate_server(self.server)
        server = self._revert_resize(server)
        self.assert_only_on('host1', server)
        self.ping('host1', self.peer, self.address)

    def test_live_migration_of_a_server_on_a_port_completes(self):
        # Not pinged afterwards: on one machine the source's unplug after
        # the switch (os-vif deletes the device named after the port)
        # removes the destination's device of that name, which separate
        # hosts never share.  A network namespace per simulated host would
        # lift this.
        self._live_migrate(self.server)
        server = self.api.get_server(self.server['id'])
        self.assertEqual('ACTIVE', server['status'])
        self.assert_only_on('host2', server)
