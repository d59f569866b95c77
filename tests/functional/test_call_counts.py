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

"""How many host-tool calls the driver makes (behaviour, not timing).

The driver answers a whole periodic cycle of Nova's compute manager from one
``vzlist -a -j`` listing, so the number of vzlist calls of a cycle does not
grow with the number of containers; and a spawn changes the host with
exactly ``vzctl create``, ``set`` and ``start``, with the console agent's
``vzctl console`` before the start.  tools/benchmark.py measures the same
at scale.
"""

import io
import os

import fixtures
from nova.compute import power_state
from nova.compute import provider_tree
from nova import context as nova_context
from nova.network import model as network_model
from nova import objects
from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.tests.unit import fake_instance
from nova.virt import fake
from oslo_utils import uuidutils

from nova_openvz import conf as openvz_conf
from nova_openvz import console
from nova_openvz import driver as openvz_driver
from nova_openvz import hosttools
from nova_openvz import inventory
from nova_openvz.testing import fixtures as sim_fixture
from vzsim import templates

CONF = openvz_conf.CONF
# Not one of the images nova's GlanceFixture already holds.
IMAGE_ID = '7f3c6a52-2d1e-4b7e-9a0e-5b1f0c3d9e41'


class TestCallCounts(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.vzhost = self.useFixture(sim_fixture.SimulatedHostFixture())
        # Where the console logs go (the default is inside Nova's package).
        self.flags(instances_path=self.useFixture(fixtures.TempDir()).path)
        # The template download takes an external (file) lock.
        self.flags(lock_path=os.path.join(self.vzhost.root, 'locks'),
                   group='oslo_concurrency')
        self.useFixture(sim_fixture.InProcessPrivsep())
        self.glance = self.useFixture(nova_fixtures.GlanceFixture(self))
        self.context = nova_context.get_admin_context()
        self.glance.create(self.context, {
            'id': IMAGE_ID, 'name': 'nova-openvz-minimal',
            'status': 'active', 'disk_format': 'raw',
            'container_format': 'bare', 'visibility': 'public',
            'properties': {},
        }, data=io.BytesIO(templates.minimal_template_bytes()))
        self.calls = []
        hosttools.add_listener(self.calls.append)
        self.addCleanup(hosttools.remove_listener, self.calls.append)
        # Counted here: the calls of Nova's requests, not of the lifecycle
        # event poller (tests/unit/test_events.py counts those).
        self.flags(lifecycle_event_interval=0, group='openvz')
        self.driver = openvz_driver.OpenVZDriver(fake.FakeVirtAPI())
        self.driver.init_host(CONF.host)
        self.nodename = self.driver.get_available_nodes()[0]
        self.instances = []

    def _flavor(self):
        return objects.Flavor(
            id=1, flavorid='1', name='m1.tiny', memory_mb=512, vcpus=1,
            root_gb=1, ephemeral_gb=0, swap=0, extra_specs={})

    def _instance(self, instance_uuid=None, hostname='ct', instance_id=1):
        instance = fake_instance.fake_instance_obj(
            self.context, uuid=instance_uuid or uuidutils.generate_uuid(),
            id=instance_id, hostname=hostname, flavor=self._flavor())
        instance.trusted_certs = None
        # What the compute manager's instances carry (no config drive).
        instance.config_drive = ''
        instance.system_metadata = {}
        return instance

    def _image_meta(self):
        return objects.ImageMeta.from_dict({
            'id': IMAGE_ID, 'disk_format': 'raw', 'container_format': 'bare',
            'properties': {}})

    def _spawn(self, instance):
        self.driver.spawn(self.context, instance, self._image_meta(), [],
                          None, {}, network_model.NetworkInfo())

    def _add_containers(self, count):
        """Containers of Nova made directly with vzctl; every 3rd running."""
        # The driver puts the image into the template cache, as for a spawn.
        template = self.driver.templates.ensure(
            self.context, self._instance(), self._image_meta())
        start = 1000 + len(self.instances)
        for ctid in range(start, start + count):
            instance = self._instance(hostname='ct%d' % ctid,
                                      instance_id=ctid)
            code, out, err = self.vzhost.run(
                'vzctl', 'create', ctid, '--ostemplate', template,
                '--layout', 'ploop', '--diskspace', '1G:1G',
                '--name', instance.uuid,
                '--description', inventory.describe(instance.uuid,
                                                    instance.name))
            self.assertEqual(0, code, err)
            if ctid % 3 == 0:
                code, out, err = self.vzhost.run('vzctl', 'start', ctid)
                self.assertEqual(0, code, err)
            self.instances.append((ctid, instance))

    def _cycle(self, use_cache=True):
        """One round of the compute manager's periodic driver calls.

        Returns the vzlist calls it made and the power states it saw.
        """
        tree = provider_tree.ProviderTree()
        tree.new_root(self.nodename, uuidutils.generate_uuid())
        self.driver.listing.invalidate()   # the last round's has expired
        del self.calls[:]
        names = self.driver.list_instances()
        self.driver.get_num_instances()
        states = {instance.uuid: self.driver.get_info(
            instance, use_cache=use_cache).state
            for _, instance in self.instances}
        self.driver.get_available_resource(self.nodename)
        self.driver.update_provider_tree(tree, self.nodename)
        self.assertEqual(sorted(i.name for _, i in self.instances),
                         sorted(names))
        self.assertEqual([], [c for c in self.calls if c.tool != 'vzlist'])
        return list(self.calls), states

    def _expected_states(self):
        return {instance.uuid: (power_state.RUNNING if ctid % 3 == 0
                                else power_state.SHUTDOWN)
                for ctid, instance in self.instances}

    def test_periodic_cycle_makes_the_same_vzlist_calls_for_5_and_20(self):
        self._add_containers(5)
        calls_5, states_5 = self._cycle()
        self.assertEqual(self._expected_states(), states_5)
        self._add_containers(15)
        calls_20, states_20 = self._cycle()
        self.assertEqual(self._expected_states(), states_20)

        self.assertEqual(len(calls_5), len(calls_20))
        self.assertLessEqual(len(calls_20), 2)
        self.assertGreaterEqual(len(calls_20), 1)
        for call in calls_20:
            self.assertIn('-a', call.argv)

    def test_uncached_get_info_asks_vzlist_once_per_container(self):
        # The pattern the listing replaces: Nova's get_info(use_cache=False)
        # (used around lifecycle operations) asks about one container.
        self._add_containers(5)
        calls, states = self._cycle(use_cache=False)
        per_container = [c for c in calls if '-a' not in c.argv]
        self.assertEqual(sorted(str(ctid) for ctid, _ in self.instances),
                         sorted(c.argv[-1] for c in per_container))
        self.assertEqual(self._expected_states(), states)

    def test_spawn_creates_sets_attaches_console_and_starts_once_each(self):
        instance = self._instance(hostname='spawned')
        del self.calls[:]
        self._spawn(instance)
        self.addCleanup(console.remove, instance)
        mutating = [c.argv[0] for c in self.calls if c.tool == 'vzctl']
        # The console agent attaches before the start, to log all of it.
        self.assertEqual(['create', 'set', 'console', 'start'], mutating)
        self.assertEqual({'vzctl', 'vzlist'},
                         {c.tool for c in self.calls})
        # The simulated host saw the same vzctl calls; it logs a call when
        # it ends, and the console session goes on.
        logged = [c['argv'][0] for c in self.vzhost.calls()
                  if c['tool'] == 'vzctl' and c['argv'][0] != '--version']
        self.assertEqual(['create', 'set', 'start'], logged)
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(instance).state)

    def test_power_off_without_a_window_is_one_fast_stop(self):
        # os_shutdown_timeout 0 or below (Nova passes it on as it is).
        instance = self._instance(hostname='stopped')
        instance.info_cache = objects.InstanceInfoCache(
            network_info=network_model.NetworkInfo())
        self._spawn(instance)
        self.addCleanup(console.remove, instance)
        for timeout in (0, -5):
            del self.calls[:]
            self.driver.power_off(instance, timeout=timeout)
            self.assertEqual([['stop', 'ct', '--fast']],
                             [[w if not w.isdigit() else 'ct'
                               for w in c.argv]
                              for c in self.calls if c.tool == 'vzctl'])
            self.assertEqual(power_state.SHUTDOWN,
                             self.driver.get_info(instance,
                                                  use_cache=False).state)
            self.driver.power_on(None, instance, [])
