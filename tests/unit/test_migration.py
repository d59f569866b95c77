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

"""vzmigrate's moves and what they leave, between two simulated hosts.

The source host is the configured one; the peer is a second simulated host
tree its vzmigrate reaches through ``sim/hosts.json``.
"""

import json
import os
import uuid

import fixtures
from nova import exception as nova_exception
from nova import objects
from nova.virt import fake
from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import conf as openvz_conf
from nova_openvz import driver
from nova_openvz import exception
from nova_openvz import hosttools
from nova_openvz import inventory
from nova_openvz import migration
from nova_openvz import privsep
from nova_openvz.privsep import migration as priv_migration
from nova_openvz.testing import fixtures as sim_fixture
from nova_openvz import vz4
from vzsim import templates

CONF = openvz_conf.CONF
PEER = 'node2'


class TestRenderer(testtools.TestCase):

    def test_each_move_is_its_own_argv(self):
        self.assertEqual(['--check-only', PEER, '101'],
                         vz4.migrate(101, PEER, check_only=True))
        self.assertEqual(['--check-only', '--online', PEER, '101'],
                         vz4.migrate(101, PEER, online=True, check_only=True))
        self.assertEqual(['-r', 'no', PEER, '101'],
                         vz4.migrate(101, PEER, keep_source=True))
        self.assertEqual(['--online', PEER, '101'],
                         vz4.migrate(101, PEER, online=True))

    def test_an_offline_move_always_keeps_the_source(self):
        self.assertRaises(ValueError, vz4.migrate, 101, PEER)

    def test_a_peer_is_never_an_option(self):
        self.assertRaises(ValueError, vz4.migrate, 101, '--ssh=x',
                          online=True)
        self.assertRaises(ValueError, vz4.migrate, 101, 'a b', online=True)
        # Nova's host names may hold underscores.
        self.assertEqual(['--online', 'dest_host', '101'],
                         vz4.migrate(101, 'dest_host', online=True))


class _TwoHosts(testtools.TestCase):

    def setUp(self):
        super().setUp()
        objects.register_all()
        self.host = self.useFixture(sim_fixture.SimulatedHostFixture())
        self.peer = self.useFixture(
            sim_fixture.SimulatedHostFixture(configure=False))
        with open(self.host.sim_path('hosts.json'), 'w') as f:
            json.dump({PEER: self.peer.root}, f)
        self.useFixture(sim_fixture.InProcessPrivsep())
        self.flags = self.useFixture(config_fixture.Config(CONF)).config
        self.flags(group='openvz', lock_retries=2, lock_retry_interval=0.01)
        for host in (self.host, self.peer):
            templates.write_minimal_template(os.path.join(
                host.root, 'vz/template/cache/nova-test.tar.gz'))
        self.listing = inventory.ContainerListing()

    def create(self, host, ctid):
        instance = objects.Instance(uuid=str(uuid.uuid4()))
        code, _out, err = host.run(
            'vzctl', 'create', ctid, '--ostemplate', 'nova-test',
            '--name', instance.uuid, '--description',
            inventory.describe(instance.uuid))
        self.assertEqual(0, code, err)
        return instance

    def conf(self, host, name):
        return os.path.join(host.root, 'etc/vz/conf', name)


class TestMoves(_TwoHosts):

    def test_a_check_changes_nothing(self):
        instance = self.create(self.host, 101)
        migration.check(self.listing.handle(instance.uuid), PEER)
        self.assertTrue(os.path.exists(self.conf(self.host, '101.conf')))
        self.assertFalse(os.path.exists(self.conf(self.peer, '101.conf')))

    def test_a_ct_id_taken_on_the_peer_is_refused_with_its_words(self):
        instance = self.create(self.host, 101)
        self.create(self.peer, 101)
        container = self.listing.handle(instance.uuid)
        calls = []
        hosttools.add_listener(calls.append)
        self.addCleanup(hosttools.remove_listener, calls.append)
        error = self.assertRaises(nova_exception.MigrationPreCheckError,
                                  migration.check, container, PEER)
        self.assertIn('already exists on destination',
                      error.format_message())
        self.assertIn('exit code 9', error.format_message())
        # Exit 9 of vzmigrate is no lock: asked once, not retried.
        self.assertEqual(['vzmigrate'], [call.tool for call in calls])

    def test_an_unknown_peer_is_unreachable(self):
        instance = self.create(self.host, 101)
        error = self.assertRaises(
            exception.MigrationPeerUnreachable, migration.move,
            self.listing.handle(instance.uuid), 'elsewhere')
        self.assertEqual(4, error.exit_code)
        self.assertTrue(os.path.exists(self.conf(self.host, '101.conf')))

    def test_an_offline_move_keeps_the_source_until_taken_back(self):
        instance = self.create(self.host, 101)
        migration.move(self.listing.handle(instance.uuid), PEER)
        self.assertTrue(os.path.exists(self.conf(self.peer, '101.conf')))
        self.assertTrue(os.path.exists(
            self.conf(self.host, '101.conf.migrated')))
        self.assertIsNone(self.listing.find(instance.uuid, fresh=True))
        container = migration.migrated_container(self.listing, instance)
        self.assertEqual(101, container.ctid)
        self.assertFalse(os.path.exists(
            self.conf(self.host, '101.conf.migrated')))
        self.assertEqual(101, self.listing.find(instance.uuid,
                                                fresh=True).ctid)

    def test_without_a_kept_area_nothing_is_taken_back(self):
        instance = objects.Instance(uuid=str(uuid.uuid4()))
        self.assertRaises(exception.MigratedContainerMissing,
                          migration.migrated_container, self.listing,
                          instance)


class TestMigratedConfigs(_TwoHosts):

    def setUp(self):
        super().setUp()
        self.instance = self.create(self.host, 101)
        os.rename(self.conf(self.host, '101.conf'),
                  self.conf(self.host, '101.conf.migrated'))

    def test_found_by_the_instance_uuid(self):
        self.assertEqual(101, priv_migration.migrated_ctid(
            self.instance.uuid))
        self.assertIsNone(priv_migration.migrated_ctid(str(uuid.uuid4())))

    def test_a_link_is_never_read(self):
        os.rename(self.conf(self.host, '101.conf.migrated'),
                  self.conf(self.host, 'elsewhere'))
        os.symlink(self.conf(self.host, 'elsewhere'),
                   self.conf(self.host, '101.conf.migrated'))
        self.assertIsNone(priv_migration.migrated_ctid(self.instance.uuid))
        self.assertRaises(privsep.ArgumentRejected,
                          priv_migration.restore_migrated_config, 101)

    def test_an_existing_config_is_never_replaced(self):
        with open(self.conf(self.host, '101.conf'), 'w') as f:
            f.write('NAME="someone-else"\n')
        self.assertRaises(privsep.ArgumentRejected,
                          priv_migration.restore_migrated_config, 101)
        with open(self.conf(self.host, '101.conf')) as f:
            self.assertEqual('NAME="someone-else"\n', f.read())

    def test_every_kept_copy_is_listed_by_its_instance(self):
        self.assertEqual({self.instance.uuid: 101},
                         priv_migration.kept_copies())

    def test_hidden_again_after_a_restore(self):
        priv_migration.restore_migrated_config(101)
        priv_migration.hide_config(101)
        self.assertFalse(os.path.exists(self.conf(self.host, '101.conf')))
        self.assertEqual(101, priv_migration.migrated_ctid(
            self.instance.uuid))

    def test_a_container_not_novas_is_never_hidden(self):
        with open(self.conf(self.host, '102.conf'), 'w') as f:
            f.write('NAME="someone-else"\n')
        self.assertRaises(privsep.ArgumentRejected,
                          priv_migration.hide_config, 102)
        self.assertTrue(os.path.exists(self.conf(self.host, '102.conf')))

    def test_only_container_ids_of_nova(self):
        self.assertRaises(privsep.ArgumentRejected,
                          priv_migration.restore_migrated_config, 0)
        self.assertRaises(privsep.ArgumentRejected,
                          priv_migration.migrated_ctid, '../etc')


class TestLiveChecks(_TwoHosts):

    def setUp(self):
        super().setUp()
        self.moves = migration.CrossHost(
            driver.OpenVZDriver(fake.FakeVirtAPI()))

    def test_a_stopped_container_cannot_move_live(self):
        instance = self.create(self.host, 101)
        error = self.assertRaises(nova_exception.MigrationPreCheckError,
                                  self.moves.check_source, instance, None,
                                  None)
        self.assertIn('not running', error.format_message())

    def test_volumes_not_mounted_inside_let_a_container_move_live(self):
        # tests/functional/test_migration.py moves one, and refuses a
        # mounted one, on the real kernel backend.
        instance = self.create(self.host, 101)
        self.useFixture(fixtures.MockPatchObject(
            self.moves.listing.handle(instance.uuid).__class__, 'running',
            True))
        bdi = {'block_device_mapping': [{'mount_device': '/dev/vdb',
                                         'connection_info': {}}]}
        self.assertEqual('data', self.moves.check_source(instance, 'data',
                                                         bdi))

    def test_the_destination_says_nothing_is_shared(self):
        data = self.moves.check_destination()
        self.assertFalse(data.is_shared_instance_path)


class TestStop(_TwoHosts):

    def test_only_a_vzmigrate_this_helper_runs_is_stopped(self):
        # Nothing runs for CT 101: nothing is signalled.
        self.assertFalse(priv_migration.stop_migration(101))
        self.assertRaises(privsep.ArgumentRejected,
                          priv_migration.stop_migration, 1)
