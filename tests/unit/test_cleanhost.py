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

"""What a simulated host's containers hold in the kernel, reported."""

import os
import subprocess

import testtools

from nova_openvz.testing import fixtures as sim_fixture


class TestKernelStateReport(testtools.TestCase):

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest('mounting needs root')
        self.host = self.useFixture(
            sim_fixture.SimulatedHostFixture(kernel='modelled'))

    def test_a_mount_under_the_tree_is_reported_and_left_alone(self):
        point = os.path.join(self.host.root, 'vz/root/101')
        os.makedirs(point, exist_ok=True)
        subprocess.run(['mount', '-t', 'tmpfs', 'tmpfs', point], check=True)
        self.addCleanup(subprocess.run, ['umount', '-l', point])
        self.assertEqual({'mounts': [point]}, self.host.kernel_state())
        # Reporting cleans nothing: the mount is still there.
        self.assertEqual({'mounts': [point]}, self.host.kernel_state())

    def test_an_empty_host_holds_nothing(self):
        self.assertEqual({'mounts': []}, self.host.kernel_state())
