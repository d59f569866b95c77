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

"""``nova-openvz sandbox`` runs its whole tour and says so.

The sandbox is what an operator runs first (tools/sandbox.sh); this keeps
it working: every step succeeds, each prints the host commands the driver
issued, and the console log step shows what the guest's init printed.
"""

import subprocess
import sys

from nova import test


class SandboxTestCase(test.NoDBTestCase):

    def test_the_tour_succeeds(self):
        result = subprocess.run(
            [sys.executable, '-m', 'nova_openvz.cmd.cli', 'sandbox'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            timeout=600)
        self.assertEqual(0, result.returncode,
                         result.stdout[-3000:] + result.stderr[-3000:])
        out = result.stdout
        self.assertIn('sandbox: every step succeeded', out)
        for step, command in (('boot server (ACTIVE)', 'vzctl  create'),
                              ('soft reboot', 'vzctl  restart'),
                              ('stop (SHUTOFF)', 'vzctl  stop'),
                              ('start (ACTIVE)', 'vzctl  start'),
                              ('delete', 'vzctl  destroy')):
            self.assertIn(step, out)
            self.assertIn(command, out.split(step, 1)[1])
        console = out.split('console log (last 5 lines)', 1)[1]
        if 'real kernel backend' in out:
            # The busybox template's init says so on the console.
            self.assertIn('    | nova-openvz busybox template: tour is up',
                          console.split('delete', 1)[0])
