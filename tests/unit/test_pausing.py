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

"""Pause: the DESCRIPTION mark and the freeze, on a simulated host."""


from nova.compute import power_state
import nova.conf
import testtools

from nova_openvz import exception
from nova_openvz import inventory
from nova_openvz import pausing
from nova_openvz import power
from nova_openvz.testing import faults
from nova_openvz.testing import fixtures as sim_fixture

CONF = nova.conf.CONF


class TestMark(testtools.TestCase):

    def test_the_word_is_added_once_and_removed(self):
        description = inventory.describe('i-1', 'name')
        marked = inventory.mark_paused(description, True)
        self.assertEqual(description + ' ' + inventory.PAUSED_WORD, marked)
        self.assertEqual(marked, inventory.mark_paused(marked, True))
        self.assertEqual(description, inventory.mark_paused(marked, False))
        self.assertEqual(description,
                         inventory.mark_paused(description, False))

    def test_the_snapshot_freeze_word_leaves_the_pause_word_alone(self):
        paused = inventory.mark_paused(inventory.describe('i-1'), True)
        frozen = inventory.with_word(
            paused, inventory.SNAPSHOT_FREEZE_WORD, True)
        self.assertIn(inventory.PAUSED_WORD, frozen.split())
        self.assertEqual(paused, inventory.with_word(
            frozen, inventory.SNAPSHOT_FREEZE_WORD, False))


class TestPause(testtools.TestCase):

    def setUp(self):
        super().setUp()
        setup = self.useFixture(
            sim_fixture.HostWithNovaContainer(instance_name='x'))
        self.host, self.instance = setup.host, setup.instance
        self.listing = inventory.ContainerListing()

    def vzctl(self, *argv):
        code, out, err = self.host.run('vzctl', *argv)
        self.assertEqual(0, code, err)
        return out

    def record(self):
        return self.listing.find(self.instance, fresh=True)

    def test_pause_freezes_and_the_listing_says_paused(self):
        pausing.pause(self.listing.handle(self.instance),
                      self.record().description)
        record = self.record()
        self.assertEqual('running', record.status)
        self.assertTrue(record.paused)
        self.assertEqual(power_state.PAUSED, power.of(record))
        # A new listing (a restarted nova-compute) sees the same.
        self.assertTrue(inventory.ContainerListing().find(
            self.instance).paused)
        # Frozen: vzctl thaws it without complaint only now.
        pausing.unpause(self.listing.handle(self.instance),
                        record.description)
        record = self.record()
        self.assertFalse(record.paused)
        self.assertEqual(power_state.RUNNING, power.of(record))
        self.assertEqual(inventory.describe(self.instance, 'x'),
                         record.description)
        code, _, err = self.host.run('vzctl', 'chkpnt', 101, '--resume')
        self.assertEqual(16, code, err)

    def test_a_failed_freeze_leaves_no_mark(self):
        self.host.inject_fault('vzctl', command='chkpnt', exit_code=16,
                               stderr='Unable to freeze')
        error = self.assertRaises(
            exception.CheckpointFailed, pausing.pause,
            self.listing.handle(self.instance), self.record().description)
        self.assertIn('Unable to freeze', error.format_message())
        self.assertFalse(self.record().paused_mark)

    def test_an_unpause_whose_mark_stays_freezes_again_and_can_be_retried(
            self):
        pausing.pause(self.listing.handle(self.instance),
                      self.record().description)
        description = self.record().description
        self.host.inject_fault('vzctl', command='set', exit_code=99,
                               stderr='set failed')
        self.assertRaises(exception.HostToolError, pausing.unpause,
                          self.listing.handle(self.instance), description)
        # Paused, as the mark says: frozen again (a thaw works).
        self.assertTrue(self.record().paused)
        faults.clear(self.host)
        pausing.unpause(self.listing.handle(self.instance), description)
        self.assertEqual(power_state.RUNNING, power.of(self.record()))

    def test_a_stopped_container_is_not_paused_and_the_mark_goes(self):
        pausing.pause(self.listing.handle(self.instance),
                      self.record().description)
        self.vzctl('stop', 101, '--fast')
        record = self.record()
        self.assertFalse(record.paused)
        self.assertEqual(power_state.SHUTDOWN, power.of(record))
        pausing.forget(self.listing.handle(self.instance),
                       record.description)
        self.assertFalse(self.record().paused_mark)
