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

"""tools/benchmark.py runs, and what it reports holds on a small host.

The benchmark's figures are in doc/source/admin/performance.rst; this test
keeps the tool working and checks the claims its tables support: the
driver's periodic cycle makes one vzlist call whatever the number of
containers, where the naive pattern makes one per container.
"""

import json
import os
import subprocess
import sys

from nova import test

BENCHMARK = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir,
                         'tools', 'benchmark.py')


class BenchmarkTestCase(test.NoDBTestCase):

    def test_small_run(self):
        result = subprocess.run(
            [sys.executable, BENCHMARK, '--small', '3', '--containers', '6',
             '--json'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            timeout=300)
        self.assertEqual(0, result.returncode, result.stderr[-2000:])
        report = json.loads(result.stdout)

        spawn = report['operations']['spawn']
        self.assertEqual(['create', 'set', 'console', 'start'],
                         spawn['vzctl_commands'])
        self.assertEqual(1, spawn['vzlist'])

        # Resize: live, limits then disk; the same change with a restart.
        operations = report['operations']
        self.assertEqual(['set', 'set'],
                         operations['resize (live)']['vzctl_commands'])
        self.assertEqual(['stop', 'set', 'start'],
                         operations['resize (restart)']['vzctl_commands'])
        self.assertIn('restart_over_live', report['resize'])

        self.assertEqual([3, 6], [c['containers'] for c in report['cycles']])
        for cycle in report['cycles']:
            self.assertEqual(1, cycle['listing']['vzlist_calls'])
            self.assertEqual(0, cycle['listing']['vzctl_calls'])
            self.assertGreaterEqual(cycle['naive']['vzlist_calls'],
                                    cycle['containers'])
        self.assertTrue(report['listing_calls_constant'])


MIGRATION_BENCHMARK = os.path.join(os.path.dirname(BENCHMARK),
                                   'benchmark_migration.py')


class MigrationBenchmarkTestCase(test.NoDBTestCase):

    def test_small_run(self):
        # Its figures are in doc/source/admin/performance.rst too.
        result = subprocess.run(
            [sys.executable, MIGRATION_BENCHMARK, '--sizes', '2',
             '--repeats', '1', '--json'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            timeout=300)
        self.assertEqual(0, result.returncode, result.stderr[-2000:])
        report = json.loads(result.stdout)
        self.assertEqual([2], [row['megabytes'] for row in report['sizes']])
        row = report['sizes'][0]
        self.assertIn('cp -a', row['plain_copy_seconds'])
        for key in ('cold_seconds', 'cold_over_cp', 'live_seconds',
                    'live_downtime_seconds', 'downtime_share_of_live'):
            self.assertIsNotNone(row[key], key)
