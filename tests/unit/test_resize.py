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

"""Same-host live resize on a simulated host's containers.

The checks, the live settings and their rollback run the real simulated
tools (modelled kernel); the flow through Nova's API, with real
processes, is in tests/functional/test_resize.py.
"""

import os
from unittest import mock
import uuid

import fixtures
from nova.compute import task_states
import nova.conf
from nova import exception as nova_exception
from nova import objects
from nova.virt import fake
from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import container as vz_container
from nova_openvz import driver
from nova_openvz import inventory
from nova_openvz.privsep import vzconf
from nova_openvz import resize
from nova_openvz.testing import fixtures as sim_fixture
from vzsim import templates

CONF = nova.conf.CONF
CTID = 101
GB_KB = 1024 ** 2


def flavor(name='small', memory_mb=512, vcpus=1, root_gb=1, ephemeral_gb=0,
           **specs):
    return objects.Flavor(name=name, memory_mb=memory_mb, vcpus=vcpus,
                          root_gb=root_gb, ephemeral_gb=ephemeral_gb, swap=0,
                          extra_specs=specs)


def migration(source='compute', dest='compute', node=None):
    return objects.Migration(source_compute=source, dest_compute=dest,
                             source_node=node or source,
                             dest_node=node or dest)


class TestSameHost(testtools.TestCase):

    def test_a_migration_to_the_same_node_stays(self):
        self.assertTrue(resize.stays_on_host(migration()))

    def test_another_host_or_node_does_not_stay(self):
        self.assertFalse(resize.stays_on_host(migration(dest='other')))
        other_node = migration()
        other_node.dest_node = 'node2'
        self.assertFalse(resize.stays_on_host(other_node))
        self.assertFalse(resize.stays_on_host(None))

    def _instance(self, task_state, found):
        instance = objects.Instance(
            uuid=str(uuid.uuid4()), task_state=task_state,
            migration_context=objects.MigrationContext(migration_id=7))
        self.useFixture(fixtures.MockPatchObject(
            objects.Migration, 'get_by_id', return_value=found))
        return instance

    def test_destroy_in_a_same_host_revert_keeps_the_container(self):
        instance = self._instance(task_states.RESIZE_REVERTING, migration())
        self.assertTrue(resize.keeps_container('ctxt', instance))

    def test_destroy_in_a_revert_across_hosts_removes_it(self):
        instance = self._instance(task_states.RESIZE_REVERTING,
                                  migration(dest='other'))
        self.assertFalse(resize.keeps_container('ctxt', instance))

    def test_destroy_outside_a_revert_removes_it(self):
        instance = self._instance(task_states.DELETING, migration())
        self.assertFalse(resize.keeps_container('ctxt', instance))
        self.assertFalse(resize.keeps_container('ctxt', objects.Instance(
            uuid=str(uuid.uuid4()), task_state=None,
            migration_context=None)))


class _HostTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        objects.register_all()
        self.host = self.useFixture(sim_fixture.SimulatedHostFixture())
        self.useFixture(sim_fixture.InProcessPrivsep())
        self.useFixture(config_fixture.Config(CONF))
        templates.write_minimal_template(os.path.join(
            self.host.root, 'vz/template/cache/nova-test.tar.gz'))
        self.instance = objects.Instance(
            id=1, uuid=str(uuid.uuid4()), flavor=flavor(),
            system_metadata={},
            image_ref='a5983393-bd48-46e7-8023-3b49cb4d6789')
        self.vzctl('create', CTID, '--ostemplate', 'nova-test', '--layout',
                   'ploop', '--diskspace', '1G:1G', '--name',
                   self.instance.uuid, '--description',
                   inventory.describe(self.instance.uuid))
        self.vzctl('set', CTID, '--save', '--ram', '512M', '--swap', '0M',
                   '--cpus', '1', '--cpuunits', '1000')
        self.vzctl('start', CTID, '--wait')
        self.container = vz_container.Container(CTID, self.instance.uuid,
                                                status='running')

    def vzctl(self, *argv):
        code, out, err = self.host.run('vzctl', *argv)
        self.assertEqual(0, code, err)

    def config(self):
        return vzconf.read(os.path.join(self.host.root,
                                        'etc/vz/conf/%d.conf' % CTID))

    def sets(self, since=0):
        return [c['argv'] for c in self.host.calls()[since:]
                if c['tool'] == 'vzctl' and c['argv'][0] == 'set']

    def assert_refused(self, new, words):
        before = len(self.host.calls())
        error = self.assertRaises(nova_exception.InstanceFaultRollback,
                                  resize.apply, self.container,
                                  self.instance, new)
        self.assertIsInstance(error.inner_exception,
                              nova_exception.ResizeError)
        self.assertIn(words, error.inner_exception.format_message())
        self.assertEqual([], self.sets(before))


class TestApply(_HostTest):

    def test_limits_and_disk_change_live_in_two_sets(self):
        before = len(self.host.calls())
        resize.apply(self.container, self.instance,
                     flavor(memory_mb=1024, vcpus=2, root_gb=3))
        config = self.config()
        self.assertEqual('0:%d' % (1024 * 256), config['PHYSPAGES'])
        self.assertEqual('2', config['CPUS'])
        self.assertEqual('%d:%d' % (3 * GB_KB, 3 * GB_KB),
                         config['DISKSPACE'])
        sets = self.sets(before)
        self.assertEqual(2, len(sets))
        self.assertIn('--ram', sets[0])
        self.assertEqual(['--diskspace', '3G:3G'], sets[1][-2:])
        self.assertEqual([], [c for c in self.host.calls()[before:]
                              if c['argv'][0] in ('stop', 'restart')])

    def test_the_same_disk_size_is_not_set_again(self):
        before = len(self.host.calls())
        resize.apply(self.container, self.instance, flavor(memory_mb=1024))
        self.assertEqual(1, len(self.sets(before)))

    def test_a_failed_disk_set_puts_the_old_limits_back(self):
        self.host.inject_fault('vzctl', command='set', call=2,
                               exit_code=154, stderr='resize failed')
        error = self.assertRaises(
            nova_exception.InstanceFaultRollback, resize.apply,
            self.container, self.instance,
            flavor(memory_mb=1024, vcpus=2, root_gb=3))
        self.assertIn('resize failed', error.inner_exception.format_message())
        self.assertEqual(154, error.inner_exception.exit_code)
        config = self.config()
        self.assertEqual('0:%d' % (512 * 256), config['PHYSPAGES'])
        self.assertEqual('1', config['CPUS'])
        self.assertEqual('%d:%d' % (GB_KB, GB_KB), config['DISKSPACE'])

    def test_a_failed_limits_set_changes_nothing(self):
        self.host.inject_fault('vzctl', command='set', call=1,
                               exit_code=3, stderr='no vswap')
        self.assertRaises(nova_exception.InstanceFaultRollback,
                          resize.apply, self.container, self.instance,
                          flavor(memory_mb=1024, root_gb=3))
        self.assertEqual('0:%d' % (512 * 256), self.config()['PHYSPAGES'])
        self.assertEqual('%d:%d' % (GB_KB, GB_KB),
                         self.config()['DISKSPACE'])


class TestCheck(_HostTest):

    def test_shrinking_below_what_is_used_is_refused(self):
        resize.apply(self.container, self.instance, flavor(root_gb=3))
        self.instance.flavor = flavor(root_gb=3)
        with mock.patch.object(vz_container.Container, 'disk_usage_kb',
                               return_value=int(1.5 * GB_KB)):
            self.assert_refused(flavor(root_gb=1), 'the disk holds 1.5 GB')

    def test_shrinking_above_what_is_used_is_allowed(self):
        resize.apply(self.container, self.instance, flavor(root_gb=3))
        self.instance.flavor = flavor(root_gb=3)
        resize.apply(self.container, self.instance, flavor(root_gb=2))
        self.assertEqual('%d:%d' % (2 * GB_KB, 2 * GB_KB),
                         self.config()['DISKSPACE'])

    def test_a_disk_below_the_image_minimum_is_refused(self):
        # Nova keeps the image's properties in the system metadata.
        self.instance.system_metadata = {'image_min_disk': '5'}
        self.assert_refused(flavor(root_gb=3), 'at least 5 GB')

    def test_the_layout_cannot_change(self):
        self.assert_refused(flavor(**{'openvz:layout': 'simfs'}),
                            'layout cannot change')

    def test_the_ephemeral_disk_cannot_change(self):
        self.assert_refused(flavor(ephemeral_gb=1), 'ephemeral disk')


class TestRevert(_HostTest):

    def test_the_old_limits_and_disk_come_back(self):
        resize.apply(self.container, self.instance,
                     flavor(memory_mb=1024, vcpus=2, root_gb=3))
        resize.revert(self.container, self.instance)
        config = self.config()
        self.assertEqual('0:%d' % (512 * 256), config['PHYSPAGES'])
        self.assertEqual('1', config['CPUS'])
        self.assertEqual('%d:%d' % (GB_KB, GB_KB), config['DISKSPACE'])

    def test_a_disk_that_cannot_shrink_back_stays_larger(self):
        resize.apply(self.container, self.instance,
                     flavor(memory_mb=1024, root_gb=3))
        before = len(self.host.calls())
        self.host.inject_fault('vzctl', command='set', call=2,
                               exit_code=154, stderr='cannot shrink')
        resize.revert(self.container, self.instance)
        self.assertEqual(2, len(self.sets(before)))
        config = self.config()
        self.assertEqual('0:%d' % (512 * 256), config['PHYSPAGES'])
        self.assertEqual('%d:%d' % (3 * GB_KB, 3 * GB_KB),
                         config['DISKSPACE'])


class TestDriverBranches(_HostTest):
    """The driver's resize methods: this host here, another host apart."""

    def setUp(self):
        super().setUp()
        self.driver = driver.OpenVZDriver(fake.FakeVirtAPI())
        self.instance.migration_context = objects.MigrationContext(
            migration_id=7)

    def _moving(self, found):
        self.useFixture(fixtures.MockPatchObject(
            objects.Migration, 'get_by_id', return_value=found))

    def test_the_first_half_of_a_same_host_revert_keeps_the_container(self):
        self._moving(migration())
        self.instance.task_state = task_states.RESIZE_REVERTING
        self.driver.destroy('ctxt', self.instance, [])
        self.assertTrue(self.driver.instance_exists(self.instance))
        self.assertEqual([], [c for c in self.host.calls()
                              if c['argv'][0] in ('stop', 'destroy')])

    def test_a_revert_from_another_host_removes_the_copy(self):
        self._moving(migration(source='other'))
        self.instance.task_state = task_states.RESIZE_REVERTING
        self.driver.destroy('ctxt', self.instance, [])
        self.assertFalse(self.driver.instance_exists(self.instance))

    def test_a_move_to_another_host_changes_nothing_here(self):
        # migration.py moves it with vzmigrate; this host has no peer, so
        # its check fails before any limit is set here.
        self._moving(migration(dest='other'))
        before = len(self.host.calls())
        self.assertRaises(nova_exception.NovaException,
                          self.driver.migrate_disk_and_power_off, 'ctxt',
                          self.instance, '192.0.2.2', flavor(memory_mb=1024),
                          [])
        self.assertIn('vzmigrate', [c['tool'] for c in
                                    self.host.calls()[before:]])
        self.assertEqual([], self.sets(before))

    def test_the_same_host_path_through_the_driver(self):
        here = migration()
        self._moving(here)
        before = len(self.host.calls())
        self.assertEqual('[]', self.driver.migrate_disk_and_power_off(
            'ctxt', self.instance, '192.0.2.1', flavor(memory_mb=1024), []))
        self.assertEqual('0:%d' % (1024 * 256), self.config()['PHYSPAGES'])
        # Nova now holds the new flavor; a revert brings the old one back.
        self.driver.finish_migration('ctxt', here, self.instance, '[]', [],
                                     None, True, {})
        self.driver.finish_revert_migration('ctxt', self.instance, [], here)
        self.assertEqual('0:%d' % (512 * 256), self.config()['PHYSPAGES'])
        self.driver.confirm_migration('ctxt', here, self.instance, [])
        self.assertTrue(self.driver.instance_exists(self.instance))
        self.assertEqual([], [c for c in self.host.calls()[before:]
                              if c['argv'][0] in ('stop', 'start',
                                                  'restart', 'destroy')])
