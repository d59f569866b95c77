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

"""tools/console_density.py runs, and what it reports holds on a small host.

Its figures at 10 and 200 consoles are in doc/source/admin/performance.rst;
this test keeps the tool working and checks the shape its tables support:
one agent whatever the number of consoles, one vzctl console session and a
few descriptors per console, and the agent's growth within the goal.
"""

import json
import os
import subprocess
import sys

from nova import test

TOOL = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir,
                    'tools', 'console_density.py')


class ConsoleDensityTestCase(test.NoDBTestCase):

    def test_small_run(self):
        if os.geteuid() != 0:
            self.skipTest('the console agent is root\'s')
        result = subprocess.run(
            [sys.executable, TOOL, '--sizes', '2,5', '--json'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            timeout=300)
        self.assertEqual(0, result.returncode, result.stderr[-2000:])
        report = json.loads(result.stdout)
        self.assertEqual([2, 5], [s['consoles'] for s in report['sizes']])
        agents = {s['agent']['pid'] for s in report['sizes']}
        self.assertEqual(1, len(agents))
        for size in report['sizes']:
            self.assertEqual(size['consoles'],
                             size['vzctl_console']['processes'])
            self.assertEqual(1, size['agent']['threads'])
        # Terminal, vzctl's messages, the directory, the log; a listening
        # socket more when served (rounded: a control connection the agent
        # has not closed yet may be counted too).
        self.assertEqual(4, round(report['agent_per_console']['fds']))
        self.assertEqual(1, round(report['serial_fds_per_console']))
        self.assertTrue(report['within_goal'])
