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

"""Lifecycle events from one listing of the host, none for the driver's own
changes."""

import threading
import time
import uuid

from nova.compute import power_state
import nova.conf
from nova.virt import event as virtevent
import testtools

from nova_openvz import events
from nova_openvz import hosttools
from nova_openvz import inventory
from nova_openvz import pausing
from nova_openvz.testing import fixtures as sim_fixture

CONF = nova.conf.CONF
TEMPLATE = 'nova-test'


class TestTransition(testtools.TestCase):

    def test_each_power_state_change_is_its_event(self):
        for before, after, expected in (
                (power_state.RUNNING, power_state.SHUTDOWN,
                 virtevent.EVENT_LIFECYCLE_STOPPED),
                (power_state.SHUTDOWN, power_state.RUNNING,
                 virtevent.EVENT_LIFECYCLE_STARTED),
                (power_state.RUNNING, power_state.PAUSED,
                 virtevent.EVENT_LIFECYCLE_PAUSED),
                (power_state.PAUSED, power_state.RUNNING,
                 virtevent.EVENT_LIFECYCLE_RESUMED),
                (power_state.RUNNING, power_state.SUSPENDED,
                 virtevent.EVENT_LIFECYCLE_SUSPENDED),
                (power_state.SUSPENDED, power_state.RUNNING,
                 virtevent.EVENT_LIFECYCLE_RESUMED),
                (power_state.PAUSED, power_state.SHUTDOWN,
                 virtevent.EVENT_LIFECYCLE_STOPPED),
                (power_state.RUNNING, power_state.RUNNING, None),
                (power_state.RUNNING, power_state.NOSTATE, None)):
            self.assertEqual(expected, events.transition(before, after),
                             (before, after))


class TestInFlight(testtools.TestCase):

    def test_an_instance_is_busy_inside_the_block_and_counted(self):
        inflight = events.InFlight()
        with inflight.changing('a'):
            with inflight.changing('a'):
                busy, changes = inflight.state()
            self.assertEqual({'a'}, inflight.state()[0])
        self.assertEqual(({'a'}, {'a': 2}), (busy, changes))
        busy, changes = inflight.state()
        self.assertEqual((set(), {'a': 4}), (busy, changes))
        inflight.forget(keep=set())
        self.assertEqual((set(), {}), inflight.state())


class TestLifecyclePoller(testtools.TestCase):
    """On a simulated host, changed by "an operator" with its vzctl."""

    def setUp(self):
        super().setUp()
        setup = self.useFixture(sim_fixture.HostWithNovaContainer())
        self.host, self.instance = setup.host, setup.instance
        self.listing = inventory.ContainerListing()
        self.sent = []
        self.poller = events.LifecyclePoller(
            self.listing, self.listing.inflight, self.sent.append, 0)
        self.calls = []
        hosttools.add_listener(self.calls.append)
        self.addCleanup(hosttools.remove_listener, self.calls.append)

    def vzctl(self, *argv):
        code, out, err = self.host.run('vzctl', *argv)
        self.assertEqual(0, code, err)

    def transitions(self):
        return [(e.get_instance_uuid(), e.get_transition())
                for e in self.sent]

    def test_first_look_is_silent_then_each_change_is_sent(self):
        self.assertEqual([], self.poller.poll())
        self.vzctl('stop', 101)
        self.poller.poll()
        self.vzctl('start', 101)
        self.poller.poll()
        self.assertEqual(
            [(self.instance, virtevent.EVENT_LIFECYCLE_STOPPED),
             (self.instance, virtevent.EVENT_LIFECYCLE_STARTED)],
            self.transitions())

    def test_one_vzlist_call_per_poll_for_the_whole_host(self):
        other = str(uuid.uuid4())
        self.vzctl('create', 102, '--ostemplate', TEMPLATE, '--layout',
                   'simfs', '--diskspace', '1G:1G', '--name', other,
                   '--description', inventory.describe(other))
        for _ in range(3):
            self.poller.poll()
        vzlist = [c for c in self.calls if c.tool == 'vzlist']
        self.assertEqual(3, len(vzlist), [c.argv for c in vzlist])
        self.assertEqual(('-a',), vzlist[0].argv[:1])

    def test_changes_the_driver_makes_send_nothing(self):
        self.poller.poll()
        handle = self.listing.handle(self.instance)
        handle.stop()
        self.poller.poll()
        # A poll while the driver is between two calls of one operation.
        with self.listing.inflight.changing(self.instance):
            handle.start()
            self.poller.poll()
        self.poller.poll()
        record = self.listing.find(self.instance, fresh=True)
        pausing.pause(handle, record.description)
        self.poller.poll()
        pausing.unpause(handle, self.listing.find(
            self.instance, fresh=True).description)
        self.poller.poll()
        self.assertEqual([], self.sent)
        # ...and the next change from outside is still seen.
        self.vzctl('stop', 101, '--fast')
        self.poller.poll()
        self.assertEqual(
            [(self.instance, virtevent.EVENT_LIFECYCLE_STOPPED)],
            self.transitions())

    def test_a_paused_container_stopped_outside_is_stopped(self):
        self.poller.poll()
        record = self.listing.find(self.instance, fresh=True)
        pausing.pause(self.listing.handle(self.instance), record.description)
        self.poller.poll()
        self.vzctl('stop', 101, '--fast')
        self.poller.poll()
        self.assertEqual(
            [(self.instance, virtevent.EVENT_LIFECYCLE_STOPPED)],
            self.transitions())

    def test_the_thread_polls_until_stopped(self):
        arrived = threading.Event()
        poller = events.LifecyclePoller(
            self.listing, self.listing.inflight,
            lambda event: (self.sent.append(event), arrived.set()), 0.01)
        poller.start()
        self.addCleanup(poller.stop)
        # The first look is silent: wait until it was taken.
        while not any(c.tool == 'vzlist' for c in self.calls):
            time.sleep(0.01)
        self.vzctl('stop', 101)
        self.assertTrue(arrived.wait(30))
        poller.stop()
        self.assertEqual(
            [(self.instance, virtevent.EVENT_LIFECYCLE_STOPPED)],
            self.transitions())
