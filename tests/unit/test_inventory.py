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

"""Which containers are Nova's, what state they are in, and free CT IDs."""

import os
import threading
import time
import uuid

import nova.conf
from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import exception
from nova_openvz import hosttools
from nova_openvz import inventory
from nova_openvz import privsep
from nova_openvz.privsep import tools as priv_tools
from nova_openvz import settings
from nova_openvz.testing import fixtures as sim_fixture
from nova_openvz import vz4
from vzsim import templates

CONF = nova.conf.CONF
TEMPLATE = 'nova-test'


class TestOwnerUuid(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.uuid = str(uuid.uuid4())

    def record(self, name, description):
        return {'ctid': 101, 'name': name, 'description': description}

    def test_a_container_made_by_nova_is_recognised(self):
        description = inventory.describe(self.uuid)
        self.assertEqual(self.uuid, inventory.owner_uuid(
            self.record(self.uuid, description)))
        self.assertIn(self.uuid, description)
        self.assertIn(CONF.host, description)

    def test_other_containers_are_not_novas(self):
        other = str(uuid.uuid4())
        for name, description in (
                ('web', inventory.describe('web')),
                (None, inventory.describe(self.uuid)),
                (self.uuid, None),
                (self.uuid, ''),
                (self.uuid, 'backup of %s' % self.uuid),
                (self.uuid, inventory.describe(other))):
            self.assertIsNone(inventory.owner_uuid(
                self.record(name, description)), (name, description))


class _OnHost(testtools.TestCase):
    """A simulated host with containers made by its own vzctl."""

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(sim_fixture.SimulatedHostFixture())
        self.useFixture(sim_fixture.InProcessPrivsep())
        self.flags = self.useFixture(config_fixture.Config(CONF)).config
        self.flags(group='openvz', state_cache_seconds=60)
        templates.write_minimal_template(os.path.join(
            self.host.root, 'vz/template/cache', TEMPLATE + '.tar.gz'))
        self.calls = []
        hosttools.add_listener(self.calls.append)
        self.addCleanup(hosttools.remove_listener, self.calls.append)

    def vzctl(self, *argv):
        code, out, err = self.host.run('vzctl', *argv)
        self.assertEqual(0, code, err)

    def create(self, ctid, name=None, description=None, start=False):
        argv = ['create', ctid, '--ostemplate', TEMPLATE, '--layout', 'simfs',
                '--diskspace', '1G:1G']
        if name:
            argv += ['--name', name]
        if description:
            argv += ['--description', description]
        self.vzctl(*argv)
        if start:
            self.vzctl('start', ctid, '--wait')

    def nova_container(self, ctid, start=False):
        instance = str(uuid.uuid4())
        self.create(ctid, instance, inventory.describe(instance), start)
        return instance

    def vzlist_calls(self):
        return [c for c in self.calls if c.tool == 'vzlist']


class TestContainerListing(_OnHost):

    def setUp(self):
        super().setUp()
        self.running = self.nova_container(101, start=True)
        self.stopped = self.nova_container(102)
        self.create(103, 'web', 'a container of someone else')
        self.foreign = str(uuid.uuid4())
        self.create(104, self.foreign, inventory.describe(str(uuid.uuid4())))
        self.listing = inventory.ContainerListing()
        self.calls[:] = []

    def test_only_novas_containers_are_listed_with_their_state(self):
        found = self.listing.all()
        self.assertEqual({self.running, self.stopped}, set(found))
        self.assertEqual((101, 'running'), (found[self.running].ctid,
                                            found[self.running].status))
        self.assertEqual((102, 'stopped'), (found[self.stopped].ctid,
                                            found[self.stopped].status))
        self.assertEqual(self.running, found[self.running].instance_uuid)
        self.assertIsNone(self.listing.find(self.foreign))

    def test_hostile_descriptions_of_other_containers_break_nothing(self):
        # vzlist prints strings unescaped: these make its JSON invalid.
        for ctid, description in ((105, 'db "primary"'),
                                  (106, '{"nova-instance": "x"}, "'),
                                  (107, '"\n  }'),
                                  (108, 'nova-instance=%s' % self.running)):
            self.create(ctid, 'other-%d' % ctid, description)
        found = self.listing.all(fresh=True)
        self.assertEqual({self.running, self.stopped}, set(found))
        self.assertEqual('running', found[self.running].status)
        self.assertEqual(101, self.listing.find(self.running,
                                                fresh=True).ctid)

    def test_the_privileged_side_refuses_to_touch_other_containers(self):
        # As a compromised nova-compute would ask it: straight to privsep.
        self.create(105, 'db', 'nova-instance=%s' % self.running)
        self.vzctl('start', 103, '--wait')
        for ctid in (103, 104, 105):
            for argv in (vz4.stop(ctid, True), vz4.destroy(ctid),
                         vz4.configure(ctid, [settings.Power(5)]),
                         vz4.run_script(ctid), vz4.freeze(ctid)):
                self.assertRaises(privsep.ArgumentRejected,
                                  priv_tools.run_host_tool, 'vzctl', argv,
                                  None, 60)
        self.assertEqual('running', self.host_status(103))
        self.assertEqual('stopped', self.host_status(104))
        # Nova's own containers (a rescue container too), and IDs no
        # container has, are served.
        self.create(106, None, 'nova-rescue=%s' % self.running)
        self.vzctl('start', 106, '--wait')
        priv_tools.run_host_tool('vzctl', vz4.stop(106, True), 60)
        self.assertEqual('stopped', self.host_status(106))
        priv_tools.run_host_tool('vzctl', vz4.stop(101, True), 60)
        self.assertEqual('stopped', self.host_status(101))
        self.assertEqual(14, priv_tools.run_host_tool(
            'vzctl', vz4.destroy(199), 60)[0])

    def host_status(self, ctid):
        code, out, err = self.host.run('vzlist', '-a', '-H', '-o', 'status',
                                       ctid)
        self.assertEqual(0, code, err)
        return out.strip()

    def test_one_vzlist_call_answers_many_queries(self):
        self.listing.all()
        for _ in range(3):
            self.assertEqual(101, self.listing.find(self.running).ctid)
            self.assertEqual(102, self.listing.find(self.stopped).ctid)
            self.assertIsNone(self.listing.find(str(uuid.uuid4())))
            self.assertEqual(2, len(self.listing.all()))
        self.assertEqual(1, len(self.vzlist_calls()))
        self.assertIn('-a', self.vzlist_calls()[0].argv)

    def test_concurrent_queries_share_one_call(self):
        barrier = threading.Barrier(8)
        results = []

        def query():
            barrier.wait()
            results.append(set(self.listing.all()))

        threads = [threading.Thread(target=query) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual([{self.running, self.stopped}] * 8, results)
        self.assertEqual(1, len(self.vzlist_calls()))

    def test_invalidate_makes_the_next_query_ask_again(self):
        self.assertEqual('running', self.listing.find(self.running).status)
        self.vzctl('stop', 101)
        self.assertEqual('running', self.listing.find(self.running).status)
        self.listing.invalidate()
        self.assertEqual('stopped', self.listing.find(self.running).status)
        self.assertEqual(2, len(self.vzlist_calls()))

    def test_the_view_expires(self):
        self.flags(group='openvz', state_cache_seconds=0.2)
        self.listing.all()
        self.listing.all()
        self.assertEqual(1, len(self.vzlist_calls()))
        time.sleep(0.3)
        self.listing.all()
        self.assertEqual(2, len(self.vzlist_calls()))

    def test_fresh_find_asks_about_one_container_only(self):
        self.listing.all()
        self.vzctl('stop', 101)
        found = self.listing.find(self.running, fresh=True)
        self.assertEqual('stopped', found.status)
        last = self.vzlist_calls()[-1].argv
        self.assertIn('101', last)
        self.assertNotIn('-a', last)
        self.assertNotIn('102', last)
        # The fresh answer also updates the shared view.
        self.assertEqual('stopped', self.listing.find(self.running).status)
        self.assertEqual(2, len(self.vzlist_calls()))

    def test_fresh_find_of_a_vanished_container(self):
        self.listing.all()
        self.vzctl('stop', 101)
        self.vzctl('destroy', 101)
        self.assertIsNone(self.listing.find(self.running, fresh=True))
        self.assertIsNone(self.listing.find(self.running))
        self.assertEqual(2, len(self.vzlist_calls()))

    def test_fresh_find_of_an_unknown_instance_lists_everything(self):
        self.listing.all()
        late = self.nova_container(105)
        self.assertEqual(105, self.listing.find(late, fresh=True).ctid)
        self.assertIn('-a', self.vzlist_calls()[-1].argv)

    def test_changed_containers_are_reread_together_in_one_call(self):
        self.listing.all()
        self.vzctl('stop', 101)
        self.vzctl('start', 102, '--wait')
        late = self.nova_container(105)
        for instance, ctid in ((self.running, 101), (self.stopped, 102),
                               (late, 105)):
            self.listing.changed(instance, ctid)
        self.assertEqual('stopped', self.listing.find(self.running).status)
        self.assertEqual('running', self.listing.find(self.stopped).status)
        self.assertEqual(105, self.listing.find(late).ctid)
        self.assertEqual(2, len(self.vzlist_calls()))
        reread = self.vzlist_calls()[-1].argv
        self.assertNotIn('-a', reread)
        self.assertEqual(['101', '102', '105'],
                         [word for word in reread if word.isdigit()])

    def test_a_changed_container_that_is_gone_leaves_the_view(self):
        self.listing.all()
        self.vzctl('stop', 101)
        self.vzctl('destroy', 101)
        self.listing.changed(self.running, 101)
        self.assertIsNone(self.listing.find(self.running))
        self.assertEqual({self.stopped}, set(self.listing.all()))
        self.assertEqual(2, len(self.vzlist_calls()))

    def test_forget_drops_a_container_without_asking(self):
        self.listing.all()
        self.listing.forget(self.stopped)
        self.assertIsNone(self.listing.find(self.stopped))
        self.assertEqual({self.running}, set(self.listing.all()))
        self.assertEqual(1, len(self.vzlist_calls()))

    def test_used_ctids_include_every_container_and_are_fresh(self):
        self.listing.all()
        self.assertEqual({101, 102, 103, 104}, self.listing.used_ctids())
        self.create(150)
        self.assertEqual({101, 102, 103, 104, 150},
                         self.listing.used_ctids())

    def test_limits_of_a_container(self):
        self.vzctl('set', 102, '--save', '--ram', '512M', '--swap', '0M')
        container = self.listing.find(self.stopped)
        self.assertEqual(512 * 1024, container.memory_limit_kb)

    def test_unreadable_output_is_a_tool_error(self):
        self.host.inject_fault('vzlist', exit_code=0, stdout='[{"ctid": 1')
        error = self.assertRaises(exception.HostToolError, self.listing.all)
        self.assertIn('unreadable JSON', error.format_message())


class TestCtidAllocator(_OnHost):

    def setUp(self):
        super().setUp()
        self.listing = inventory.ContainerListing()
        self.allocator = inventory.CtidAllocator(self.listing)

    def test_the_first_id_is_the_configured_minimum(self):
        self.assertEqual(101, self.allocator.reserve())
        self.flags(group='openvz', min_ctid=5000)
        self.assertEqual(5000, inventory.CtidAllocator(
            self.listing).reserve())

    def test_allocation_starts_at_first_ctid_then_takes_the_ids_below(self):
        # Two hosts that start far apart rarely hold the same ID, which
        # vzmigrate keeps; the IDs below first_ctid are used last.
        self.flags(group='openvz', first_ctid=5000)
        self.assertEqual(5000, self.allocator.reserve())
        self.create(5001)
        self.assertEqual(5002, self.allocator.reserve())
        self.flags(group='openvz', first_ctid=privsep.VEID_MAX)
        allocator = inventory.CtidAllocator(self.listing)
        self.assertEqual(privsep.VEID_MAX, allocator.reserve())
        self.assertEqual(101, allocator.reserve())

    def test_with_first_ctid_a_freed_id_is_not_handed_out_again_at_once(self):
        # A container that moved to another host still holds its ID there:
        # a new container here with that ID could not move there.
        self.flags(group='openvz', first_ctid=5000)
        first = self.allocator.reserve()
        self.allocator.release(first)
        self.assertEqual(5001, self.allocator.reserve())
        # Only a new allocator (nova-compute restarted) starts over.
        self.assertEqual(5000, inventory.CtidAllocator(
            self.listing).reserve())

    def test_a_first_ctid_below_min_ctid_starts_at_min_ctid(self):
        self.flags(group='openvz', min_ctid=5000, first_ctid=200)
        self.assertEqual(5000, self.allocator.reserve())

    def test_ids_in_use_on_the_host_are_skipped(self):
        self.nova_container(101, start=True)          # running
        self.create(102)                              # stopped
        self.vzctl('set', 103, '--save', '--cpus', '1')   # config only
        self.create(104)
        self.vzctl('destroy', 104)                    # 104.conf.destroyed
        os.mkdir(os.path.join(self.host.root, 'vz/private/105'))
        self.assertEqual(106, self.allocator.reserve())

    def test_an_id_locked_by_another_vzctl_is_skipped(self):
        # vzctl's lock file of a live process (reference 1.1): creating
        # there fails with exit 9 however often it is tried.
        with open(os.path.join(self.host.root, 'vz/lock/101.lck'),
                  'w') as f:
            f.write('%d\ncreating\n' % os.getpid())
        self.assertEqual(102, self.allocator.reserve())

    def test_ids_a_spawn_tried_are_avoided(self):
        self.assertEqual(103, self.allocator.reserve(avoid={101, 102}))

    def test_reserved_ids_are_not_handed_out_twice(self):
        first = self.allocator.reserve()
        second = self.allocator.reserve()
        self.assertEqual((101, 102), (first, second))
        self.allocator.release(first)
        self.assertEqual(101, self.allocator.reserve())

    def test_concurrent_reservations_get_distinct_ids(self):
        barrier = threading.Barrier(12)
        got = []

        def reserve():
            barrier.wait()
            got.append(self.allocator.reserve())

        threads = [threading.Thread(target=reserve) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(list(range(101, 113)), sorted(got))

    def test_no_id_left(self):
        self.flags(group='openvz', min_ctid=privsep.VEID_MAX)
        self.vzctl('set', privsep.VEID_MAX, '--save', '--cpus', '1')
        self.assertRaises(exception.ContainerIdExhausted,
                          self.allocator.reserve)
