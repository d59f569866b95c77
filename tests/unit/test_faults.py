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

"""The fault matrix helper on a simulated host's real tools."""

import os
import subprocess
import threading

import testtools

from nova_openvz.testing import faults
from nova_openvz.testing import fixtures as sim_fixtures


class TestFaults(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(
            sim_fixtures.SimulatedHostFixture(kernel='modelled'))

    def vzctl(self, *args):
        code, _, err = self.host.run('vzctl', *args)
        return code, err

    def test_positions_count_each_tool_and_command(self):
        start = faults.mark(self.host)
        self.host.run('vzlist', '-a', '-j')
        self.vzctl('create', 101, '--layout', 'simfs')
        self.vzctl('--quiet', 'set', 101, '--cpus', '1', '--save')
        self.vzctl('set', 101, '--cpus', '2', '--save')
        self.host.run('vzlist', '-j', '101')
        self.assertEqual(
            ['vzlist #1', 'vzctl create #1', 'vzctl set #1', 'vzctl set #2',
             'vzlist #2'],
            [str(p) for p in faults.positions(
                faults.calls_since(self.host, start))])

    def test_fail_at_fails_that_call_only_counting_afresh(self):
        self.vzctl('create', 101, '--layout', 'simfs')
        second = faults.Position('vzctl', 'set', 2)
        # A rule counted before must not make the new one fire early.
        faults.fail_at(self.host, faults.Position('vzctl', 'set', 1))
        self.vzctl('set', 101, '--cpus', '1', '--save')
        text = faults.fail_at(self.host, second)
        self.assertEqual(0, self.vzctl('set', 101, '--cpus', '1',
                                       '--save')[0])
        self.assertEqual((faults.EXIT_CODE, text + '\n'),
                         self.vzctl('set', 101, '--cpus', '2', '--save'))
        self.assertEqual(0, self.vzctl('set', 101, '--cpus', '2',
                                       '--save')[0])

    def test_a_hung_call_waits_for_release_then_fails(self):
        position = faults.Position('vzlist', None, 1)
        faults.hang_at(self.host, position)
        proc = subprocess.Popen(
            [os.path.join(self.host.tools_dir, 'vzlist'), '-a'],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        done = threading.Event()
        threading.Thread(target=lambda: (proc.wait(), done.set())).start()
        while not faults.held(self.host, position):
            pass
        self.assertFalse(done.is_set())
        faults.release(self.host)
        self.assertEqual(137, proc.wait())
        self.assertEqual('Killed\n', proc.stderr.read())
