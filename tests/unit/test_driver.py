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

"""The Nova-facing driver: host checks, states and small helpers.

The lifecycle is tested through Nova's API in tests/functional.
"""

import json
import os
import uuid

import fixtures
from nova.compute import power_state
import nova.conf
from nova import exception as nova_exception
from nova.network import model as network_model
from nova import objects
from nova.virt import fake
from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import driver
from nova_openvz import exception
from nova_openvz import inventory
from nova_openvz.testing import fixtures as sim_fixture
from nova_openvz import vz4
from vzsim import templates

CONF = nova.conf.CONF


class _DriverTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        objects.register_all()
        self.host = self.useFixture(sim_fixture.SimulatedHostFixture())
        self.useFixture(sim_fixture.InProcessPrivsep())
        self.flags = self.useFixture(config_fixture.Config(CONF)).config
        # No lifecycle event poller outliving a test (TestEvents starts one).
        self.flags(lifecycle_event_interval=0, group='openvz')

    def new_driver(self):
        """A driver made after the options are set, as Nova makes it."""
        return driver.OpenVZDriver(fake.FakeVirtAPI())


class TestInitHost(_DriverTest):

    def init_host_problem(self):
        error = self.assertRaises(exception.HostNotReady,
                                  self.new_driver().init_host, 'compute1')
        return error.format_message()

    def test_a_fresh_simulated_host_is_ready(self):
        drv = self.new_driver()
        drv.init_host('compute1')
        self.assertEqual(4011001, drv.hypervisor_version)
        self.assertEqual([], drv.list_instances())

    def test_init_host_starts_the_event_poller_and_cleanup_stops_it(self):
        self.flags(lifecycle_event_interval=0.05, group='openvz')
        drv = self.new_driver()
        drv.init_host('compute1')
        poller = drv.lifecycle_events
        self.assertIsNotNone(poller)
        self.assertTrue(poller._thread.is_alive())
        thread = poller._thread
        drv.cleanup_host('compute1')
        self.assertIsNone(drv.lifecycle_events)
        self.assertFalse(thread.is_alive())

    def test_no_poller_when_events_are_off(self):
        drv = self.new_driver()
        drv.init_host('compute1')
        self.assertIsNone(drv.lifecycle_events)

    def test_a_missing_vz_conf_is_named(self):
        missing = os.path.join(self.host.root, 'etc/vz/missing.conf')
        self.flags(group='openvz', vz_conf=missing)
        message = self.init_host_problem()
        self.assertIn('global config %s does not exist' % missing, message)

    def test_a_vz_conf_without_required_keys_is_named(self):
        vz_conf = os.path.join(self.host.root, 'etc/vz/vz.conf')
        with open(vz_conf) as f:
            text = f.read()
        with open(vz_conf, 'w') as f:
            f.write(''.join(line for line in text.splitlines(True)
                            if not line.startswith(('VE_PRIVATE=',
                                                    'LOCKDIR='))))
        message = self.init_host_problem()
        self.assertIn('does not set VE_PRIVATE', message)
        self.assertIn('does not set LOCKDIR', message)

    def test_a_missing_tools_dir_names_each_tool(self):
        tools = os.path.join(self.host.root, 'opt/nothing')
        self.flags(group='openvz', tools_dir=tools)
        message = self.init_host_problem()
        self.assertIn('%s/vzctl is missing or not executable' % tools,
                      message)
        self.assertIn('%s/vzlist is missing or not executable' % tools,
                      message)

    def test_every_problem_is_named_at_once(self):
        self.flags(group='openvz', tools_dir='/nonexistent',
                   vz_conf='/nonexistent/vz.conf')
        message = self.init_host_problem()
        self.assertIn('/nonexistent/vz.conf does not exist', message)
        self.assertIn('/nonexistent/vzctl is missing', message)

    def test_a_failing_vzctl_version_is_named_with_its_message(self):
        self.host.inject_fault('vzctl', exit_code=5,
                               stderr='Unable to open /dev/vzctl')
        message = self.init_host_problem()
        self.assertIn('vzctl --version failed', message)
        self.assertIn('Unable to open /dev/vzctl', message)

    def test_unexpected_version_output_is_named(self):
        self.host.inject_fault('vzctl', exit_code=0, stdout='vzctl 3000')
        message = self.init_host_problem()
        self.assertIn('vzctl --version failed', message)
        self.assertIn('vzctl 3000', message)

    def test_an_unusable_libvirt_uri_is_named(self):
        self.flags(group='openvz',
                   libvirt_uri='test:///nonexistent/host.xml')
        message = self.init_host_problem()
        self.assertIn('libvirt connection test:///nonexistent/host.xml',
                      message)


class TestGetInfo(_DriverTest):

    def setUp(self):
        super().setUp()
        templates.write_minimal_template(os.path.join(
            self.host.root, 'vz/template/cache/nova-test.tar.gz'))
        self.driver = self.new_driver()

    def vzctl(self, *argv):
        code, out, err = self.host.run('vzctl', *argv)
        self.assertEqual(0, code, err)

    def container(self, ctid):
        instance = objects.Instance(uuid=str(uuid.uuid4()))
        self.vzctl('create', ctid, '--ostemplate', 'nova-test', '--layout',
                   'simfs', '--diskspace', '1G:1G', '--name', instance.uuid,
                   '--description', inventory.describe(instance.uuid))
        return instance

    def test_states(self):
        running, stopped, mounted = (self.container(101),
                                     self.container(102),
                                     self.container(103))
        self.vzctl('start', 101, '--wait')
        self.vzctl('mount', 103)
        for instance, state in ((running, power_state.RUNNING),
                                (stopped, power_state.SHUTDOWN),
                                (mounted, power_state.SHUTDOWN)):
            self.assertEqual(state, self.driver.get_info(instance).state)

    def test_suspended_state(self):
        instance = self.container(101)
        self.vzctl('start', 101, '--wait')
        self.vzctl('suspend', 101)
        self.assertEqual(power_state.SUSPENDED,
                         self.driver.get_info(instance).state)

    def test_without_cache_the_current_state_is_read(self):
        instance = self.container(101)
        self.assertEqual(power_state.SHUTDOWN,
                         self.driver.get_info(instance).state)
        self.vzctl('start', 101, '--wait')
        self.assertEqual(power_state.SHUTDOWN,
                         self.driver.get_info(instance).state)
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(instance, use_cache=False).state)

    def test_a_failing_listing_is_no_state_not_an_error(self):
        # Nova reads the state right after a boot and does not clean up
        # when that fails: the container would be orphaned.
        instance = self.container(101)
        self.host.inject_fault('vzlist', exit_code=3, stderr='bad listing')
        self.assertEqual(power_state.NOSTATE,
                         self.driver.get_info(instance, use_cache=False).state)

    def test_an_instance_without_container_is_not_found(self):
        instance = objects.Instance(uuid=str(uuid.uuid4()))
        self.assertRaises(nova_exception.InstanceNotFound,
                          self.driver.get_info, instance)
        self.assertRaises(nova_exception.InstanceNotFound,
                          self.driver.get_info, instance, use_cache=False)


class TestResumeStateOnHostBoot(_DriverTest):
    """A server Nova holds running comes back running, however it was."""

    def setUp(self):
        super().setUp()
        templates.write_minimal_template(os.path.join(
            self.host.root, 'vz/template/cache/nova-test.tar.gz'))
        self.flags(instances_path=self.useFixture(
            fixtures.TempDir()).path)
        self.driver = self.new_driver()
        self.dump = os.path.join(self.host.root, 'vz/dump/Dump.101')

    vzctl = TestGetInfo.vzctl

    def container(self, ctid):
        instance = TestGetInfo.container(self, ctid)
        instance.id = ctid   # for its name in the log
        return instance

    def resume(self, instance):
        self.driver.resume_state_on_host_boot(None, instance, [], None)
        return self.driver.get_info(instance, use_cache=False).state

    def test_a_suspended_container_is_restored_from_its_dump(self):
        instance = self.container(101)
        self.vzctl('start', 101, '--wait')
        self.vzctl('suspend', 101)
        self.assertTrue(os.path.exists(self.dump))
        self.assertEqual(power_state.RUNNING, self.resume(instance))
        self.assertFalse(os.path.exists(self.dump))

    def test_a_paused_container_is_thawed(self):
        instance = self.container(101)
        self.vzctl('start', 101, '--wait')
        self.driver.pause(instance)
        self.assertEqual(power_state.PAUSED,
                         self.driver.get_info(instance).state)
        self.assertEqual(power_state.RUNNING, self.resume(instance))
        # Thawed: vzctl finds nothing to resume.
        code, _, _ = self.host.run('vzctl', 'chkpnt', 101, '--resume')
        self.assertEqual(16, code)


class TestHelpers(testtools.TestCase):

    def test_version_number(self):
        self.assertEqual(4011001,
                         vz4.version_number('vzctl version 4.11.1\n'))
        self.assertEqual(4007000, vz4.version_number('vzctl version 4.7'))
        self.assertEqual(7000012,
                         vz4.version_number('vzctl version 7.0.12'))
        for text in ('', 'vzctl 4.11', 'version 4'):
            self.assertRaises(ValueError, vz4.version_number, text)


class TestAttachInterface(testtools.TestCase):
    """attach_interface on a simulated host's running Nova container."""

    def setUp(self):
        super().setUp()
        objects.register_all()
        vz = self.useFixture(sim_fixture.HostWithNovaContainer())
        self.host, self.ctid = vz.host, vz.ctid
        self.useFixture(config_fixture.Config(CONF)).config(
            lifecycle_event_interval=0, group='openvz')
        self.driver = driver.OpenVZDriver(fake.FakeVirtAPI())
        self.instance = objects.Instance(
            uuid=vz.instance, id=1, project_id='p')

    def vif(self):
        # A port os-vif plugs with its no-op plugin: no switch is needed
        # to see what the container keeps.
        port_id = str(uuid.uuid4())
        subnet = network_model.Subnet(
            cidr='10.0.0.0/24', ips=[network_model.FixedIP(
                address='10.0.0.5')])
        return network_model.VIF(
            id=port_id, address='fa:16:3e:00:00:05',
            network=network_model.Network(
                id=str(uuid.uuid4()), bridge=None, label='private',
                subnets=[subnet]),
            type=network_model.VIF_TYPE_VHOSTUSER,
            details={network_model.VIF_DETAILS_VHOSTUSER_SOCKET: '/x.sock',
                     network_model.VIF_DETAILS_VHOSTUSER_MODE: 'client'},
            devname='tap' + port_id[:11])

    def netif(self):
        path = os.path.join(self.host.root, 'etc/vz/conf/%d.conf' % self.ctid)
        with open(path) as f:
            return [line for line in f if line.startswith('NETIF=')]

    def veths(self):
        with open(os.path.join(self.host.root, 'var/lib/vzsim/%d.json'
                               % self.ctid)) as f:
            return json.load(f)['veth']

    def test_a_guest_that_cannot_take_the_port_keeps_no_netif_or_veth(self):
        self.host.inject_fault('vzctl', command='exec2', ctid=self.ctid,
                               exit_code=2, stderr='ifup: eth0 failed')
        error = self.assertRaises(exception.HostToolError,
                                  self.driver.attach_interface, None,
                                  self.instance, None, self.vif())
        self.assertIn('ifup: eth0 failed', error.format_message())
        self.assertEqual([], [n for n in self.netif()
                              if n.strip() != 'NETIF=""'])
        self.assertEqual([], self.veths())
