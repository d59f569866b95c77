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

"""Lifecycle events: changes made outside Nova reach it within seconds.

Nova's periodic power-state sync is off here (``sync_power_state_interval``
-1, and Nova's test base runs no periodic task), so only a lifecycle event
from the driver's poller can explain what Nova does.
"""

from nova.compute import power_state

from tests.functional import test_pause_suspend

#: Half-second looks, 60 at most: an event arrives within seconds, where
#: the power-state sync would take minutes.
WAIT = 60


class TestLifecycleEvents(test_pause_suspend._Patient):

    def _setup_compute_service(self):
        self.flags(sync_power_state_interval=-1)
        self.flags(lifecycle_event_interval=0.5, group='openvz')
        return super()._setup_compute_service()

    def _stops(self, server):
        return [a for a in self.api.get_instance_actions(server['id'])
                if a['action'] == 'stop']

    def _wait_for_first_look(self, server, state=power_state.RUNNING):
        """The poller has seen the server in ``state`` (its baseline).

        After a change the driver made, the poller looks afresh before it
        reports anything: two polls after the change ended, it has.
        """
        poller = self.compute.driver.lifecycle_events
        after = poller.polls + 2
        self._wait_for_assert(lambda: (
            self.assertGreaterEqual(poller.polls, after),
            self.assertEqual(state, poller.seen(server['id']))),
            max_retries=WAIT)

    def _wait_for_action_done(self, server, name):
        """Nova's action on the server (and the driver's part) ended."""
        def done():
            action = [a for a in self.api.get_instance_actions(server['id'])
                      if a['action'] == name][0]
            events = self.api.api_get('/servers/%s/os-instance-actions/%s' % (
                server['id'], action['request_id'])).body[
                    'instanceAction']['events']
            self.assertTrue(events)
            self.assertTrue(all(e['finish_time'] for e in events))
        self._wait_for_assert(done, max_retries=WAIT)

    def _wait_for_stops(self, server, count):
        self._wait_for_assert(
            lambda: self.assertEqual(count, len(self._stops(server))),
            max_retries=WAIT)

    def test_an_operator_stop_and_start_reach_nova_as_events(self):
        server = self.boot(name='outside')
        ctid = self.container(server)['ctid']
        self._wait_for_first_look(server)
        code, _, err = self.vzhost.run('vzctl', 'stop', ctid, '--fast')
        self.assertEqual(0, code, err)
        # Nova hears "stopped" and records it with its stop API.
        server = self._wait_for_state_change(server, 'SHUTOFF',
                                             max_retries=WAIT)
        self.assertEqual(1, len(self._stops(server)))
        self._wait_for_action_done(server, 'stop')
        self._wait_for_first_look(server, power_state.SHUTDOWN)
        # An operator starts it again: Nova hears "started" at once, and
        # keeps a server it holds SHUTOFF stopped (its rule for every
        # driver: the database is right about STOPPED servers).
        code, _, err = self.vzhost.run('vzctl', 'start', ctid)
        self.assertEqual(0, code, err)
        self._wait_for_stops(server, 2)
        self._wait_for_state_change(server, 'SHUTOFF')
        self._wait_for_assert(lambda: self.assertEqual(
            'stopped', self.container(server)['status']), max_retries=WAIT)

    def test_a_halt_inside_the_guest_shows_shutoff(self):
        if self.kernel_backend != 'real':
            self.skipTest('needs the real kernel backend (a guest that '
                          'runs halt); this host runs the %s one'
                          % self.kernel_backend)
        server = self.boot(name='halting')
        ctid = self.container(server)['ctid']
        self._wait_for_first_look(server)
        code, _, err = self.vzhost.run('vzctl', 'exec2', ctid, 'halt')
        self.assertEqual(0, code, err)
        server = self._wait_for_state_change(server, 'SHUTOFF',
                                             max_retries=WAIT)
        # Down; a container that halted itself stays mounted, as on OpenVZ.
        self.assertIn(self.container(server)['status'], ('stopped',
                                                         'mounted'))
        # Started again through Nova, it runs, and Nova's own start sent
        # no event that would stop it again.
        server = self._action(server, 'os-start', 'ACTIVE')
        self.assertEqual(1, len(self._stops(server)))

    def test_nova_own_operations_send_no_events(self):
        driver = self.compute.driver
        sent = []
        handler = driver._compute_event_callback
        driver.register_event_listener(
            lambda event: sent.append(event) or handler(event))
        server = self.boot(name='quiet')
        for action, state in (('os-stop', 'SHUTOFF'), ('os-start', 'ACTIVE'),
                              ('pause', 'PAUSED'), ('unpause', 'ACTIVE'),
                              ('suspend', 'SUSPENDED'),
                              ('resume', 'ACTIVE')):
            server = self._action(server, action, state)
        # One more look after all of them: nothing to tell.
        driver.lifecycle_events.poll()
        self.assertEqual([], sent)
        self.assertEqual(1, len(self._stops(server)))
