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

"""Nova's generic virt driver tests, run against the OpenVZ driver.

``nova.tests.unit.virt.test_virt_drivers._VirtDriverTestCase`` is the suite
Nova runs against its own drivers.  Here it drives OpenVZDriver on a fresh
simulated OpenVZ host per test, through the host's real executables.

The suite's ``catch_notimplementederror`` decorator lets a test pass when
the driver raises NotImplementedError.  This module records every such
case and holds it against :data:`NOT_IMPLEMENTED`, so a test cannot pass
silently on a missing feature: an unexpected NotImplementedError fails the
test, and so does an expected one that no longer happens.
doc/source/reference/conformance.rst lists the same table.
"""

import io
import json
import logging
import os
import re

import fixtures
from nova import exception as nova_exception
from nova import test
from nova.tests.unit.virt import test_virt_drivers
import testtools

from nova_openvz.testing import allinone
from nova_openvz.testing import fixtures as sim_fixture

#: The image _get_running_instance boots (image_ref of Nova's test instance).
TEST_IMAGE_ID = 'cedef40a-ed67-4d10-800e-17455edce175'

DOC = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, 'doc',
                   'source', 'reference', 'conformance.rst')

#: test -> (driver method that raises NotImplementedError, Nova feature).
NOT_IMPLEMENTED = {
    'test_poll_rebooting_instances': ('poll_rebooting_instances',
                                      'reboot timeout polling'),
    'test_trigger_crash_dump': ('trigger_crash_dump', 'crash dump (NMI)'),
    'test_soft_delete': ('soft_delete', 'soft delete'),
    'test_restore_running': ('restore', 'soft delete'),
    'test_restore_soft_deleted': ('soft_delete', 'soft delete'),
    'test_block_stats': ('block_stats', 'per-disk counters'),
    'test_get_vnc_console': ('get_vnc_console', 'remote consoles'),
    'test_get_spice_console': ('get_spice_console', 'remote consoles'),
    'test_get_mks_console': ('get_mks_console', 'remote consoles'),
    'test_live_migration_force_complete': ('live_migration_force_complete',
                                           'live migration'),
    'test_set_host_enabled': ('set_host_enabled', 'host maintenance'),
    'test_host_power_action_reboot': ('host_power_action',
                                      'host power actions'),
    'test_host_power_action_shutdown': ('host_power_action',
                                        'host power actions'),
    'test_host_power_action_startup': ('host_power_action',
                                       'host power actions'),
    'test_get_instance_disk_info': ('get_instance_disk_info',
                                    'live migration'),
    'test_get_device_name_for_instance': ('get_device_name_for_instance',
                                          'volumes'),
}


class _NotImplementedRecorder(logging.Handler):
    """Hears what catch_notimplementederror logs when it swallows one."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.hits = []

    def emit(self, record):
        args = record.args
        if isinstance(args, dict) and 'method' in args and 'test' in args:
            self.hits.append((args['test'], args['method']))


class OpenVZDriverConformance(test_virt_drivers._VirtDriverTestCase,
                              test.TestCase):

    # The template cache takes an external lock per image.
    REQUIRES_LOCKING = True

    def setUp(self):
        self.driver_module = 'nova_openvz.driver.OpenVZDriver'
        super().setUp()
        self.recorder = _NotImplementedRecorder()
        logger = logging.getLogger(test_virt_drivers.__name__)
        logger.addHandler(self.recorder)
        self.addCleanup(logger.removeHandler, self.recorder)
        self.addCleanup(self._check_not_implemented)

        self.vzhost = self.useFixture(sim_fixture.SimulatedHostFixture())
        # The suite moves servers to 'dest_host' (cold) and 'otherhost'
        # (live): a second simulated host that vzmigrate reaches.
        peer = self.useFixture(sim_fixture.SimulatedHostFixture(
            configure=False))
        with open(self.vzhost.sim_path('hosts.json'), 'w') as f:
            json.dump({'dest_host': peer.root, 'otherhost': peer.root}, f)
        self.useFixture(sim_fixture.InProcessPrivsep())
        # The suite's fake ports name a switch nobody runs; routed mode
        # gives their addresses to venet.  test_network plugs real ports.
        self.flags(network_mode='routed', group='openvz')
        # Where the console logs go (the default is inside Nova's package).
        self.flags(instances_path=self.useFixture(fixtures.TempDir()).path)
        # test_get_serial_console asks for it; Nova's default is off.
        self.flags(enabled=True, group='serial_console')
        self._upload_template()
        # The suite made its driver before the host existed; make it again
        # as nova-compute would, with the [openvz] options in place.
        self.connection = test_virt_drivers.importutils.import_object(
            self.driver_module, test_virt_drivers.fake.FakeVirtAPI())
        self.connection.init_host('myhostname')
        # As nova-compute at its stop: the event poller must not outlive
        # the host it polls.
        self.addCleanup(self.connection.cleanup_host, 'myhostname')

    def _upload_template(self):
        """Make the suite's test image an OS template (raw, bare).

        The busybox guest: its shell and tools run in the container, so
        set_admin_password really works even on the modelled kernel.
        """
        self.image_service.delete(self.ctxt, TEST_IMAGE_ID)
        self.image_service.create(self.ctxt, {
            'id': TEST_IMAGE_ID,
            'name': 'nova-openvz-busybox',
            'status': 'active',
            'disk_format': 'raw',
            'container_format': 'bare',
            'visibility': 'public',
            'properties': {},
        }, data=io.BytesIO(allinone.busybox_template()))

    def _check_not_implemented(self):
        name = self._testMethodName
        hits = sorted({method for test_name, method in self.recorder.hits
                       if test_name == name})
        expected = NOT_IMPLEMENTED.get(name)
        if expected is None and hits:
            raise AssertionError(
                '%s hit NotImplementedError in %s; implement it or add it '
                'to NOT_IMPLEMENTED and conformance.rst' %
                (name, ', '.join(hits)))
        if expected is not None and hits != [expected[0]]:
            raise AssertionError(
                '%s was expected to hit NotImplementedError in %s but hit '
                '%s; update NOT_IMPLEMENTED and conformance.rst' %
                (name, expected[0], hits or 'none'))

    # Nova's test has no catch_notimplementederror; give it one so the
    # missing feature is recorded like the others.
    @test_virt_drivers.catch_notimplementederror
    def test_live_migration(self):
        super().test_live_migration()

    # Nova's test first fills LibvirtDriver.active_migrations, an attribute
    # only the libvirt and fake drivers have; make the same call without it.
    @test_virt_drivers.catch_notimplementederror
    def test_live_migration_force_complete(self):
        instance, _ = self._get_running_instance()
        self.connection.live_migration_force_complete(instance)

    # Nova's test aborts when no migration runs; the driver says so.
    def test_live_migration_abort(self):
        instance, _ = self._get_running_instance()
        self.assertRaises(nova_exception.NoActiveMigrationForInstance,
                          self.connection.live_migration_abort, instance)

    # The suite attaches volumes of the type "fake", which only Nova's
    # libvirt driver knows; this driver connects what os-brick knows and
    # refuses other types (VolumeDriverNotFound).  Attach, detach and their
    # power states are tested with real block devices through Nova's API in
    # tests/functional/test_volumes.py.
    _FAKE_VOLUMES = ('the suite attaches a "fake" volume type only libvirt '
                     'knows; see tests/functional/test_volumes.py')

    def test_attach_detach_volume(self):
        self.skipTest(self._FAKE_VOLUMES)

    def test_swap_volume(self):
        self.skipTest(self._FAKE_VOLUMES)

    def test_attach_detach_different_power_states(self):
        self.skipTest(self._FAKE_VOLUMES)

    # Checks on the simulated host behind the suite's calls.

    def test_spawn_makes_a_running_container(self):
        instance, _ = self._get_running_instance()
        records = [r for r in self._vzlist() if r['name'] == instance.uuid]
        self.assertEqual(1, len(records))
        self.assertEqual('running', records[0]['status'])

    def test_destroy_leaves_nothing_on_the_host(self):
        instance, network_info = self._get_running_instance()
        self.connection.destroy(self.ctxt, instance, network_info)
        self.assertEqual([], self.vzhost.all_leftovers())

    def _vzlist(self):
        code, out, err = self.vzhost.run('vzlist', '-a', '-j', '-o',
                                         'ctid,name,status')
        self.assertEqual(0, code, err)
        return json.loads(out)


class TestConformanceDoc(testtools.TestCase):
    """conformance.rst shows the NOT_IMPLEMENTED table and real tests."""

    def setUp(self):
        super().setUp()
        with open(DOC) as f:
            self.text = f.read()

    def test_the_not_implemented_table_matches(self):
        rows = dict(re.findall(r'^``(test_[a-z_]+)``\s+``([a-z_]+)``',
                               self.text, re.MULTILINE))
        self.assertEqual({name: method for name, (method, _feature)
                          in NOT_IMPLEMENTED.items()}, rows)

    def test_every_test_named_exists(self):
        named = set(re.findall(r'``(test_[a-z_]+)``', self.text))
        suite = {name for name in dir(OpenVZDriverConformance)
                 if name.startswith('test_')}
        self.assertEqual(set(), named - suite)
