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

"""tools/benchmark_dbaas.py: what it reads from the tools, its templates."""

import hashlib
import importlib.util
import os
import shutil
import tarfile

import fixtures
import testtools

_PATH = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'tools',
                     'benchmark_dbaas.py')
_SPEC = importlib.util.spec_from_file_location('benchmark_dbaas', _PATH)
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)

#: Tails of PostgreSQL 15's pgbench and pg_test_fsync, as printed.
PGBENCH = """transaction type: ledger.sql
number of transactions actually processed: 10/10
number of failed transactions: 2 (0.000%)
latency average = 5.923 ms
initial connection time = 17.927 ms
tps = 337.689528 (without initial connection time)
"""
PG_TEST_FSYNC = """Compare file sync methods using one 8kB write:
(in wal_sync_method preference order, except fdatasync is Linux's default)
        open_datasync                       247.351 ops/sec    4043 usecs/op
        fdatasync                           266.860 ops/sec    3747 usecs/op
        fsync                               241.105 ops/sec    4148 usecs/op

Compare file sync methods using two 8kB writes:
        fdatasync                           120.000 ops/sec    8333 usecs/op
"""


class TestParsing(testtools.TestCase):

    def test_pgbench(self):
        self.assertEqual(337.689528, bench.tps(PGBENCH))
        self.assertEqual(2, bench.failed(PGBENCH))
        self.assertRaises(RuntimeError, bench.tps, 'client 0 aborted')
        self.assertIsNone(bench.failed('client 0 aborted'))

    def test_fdatasync_of_one_write(self):
        self.assertEqual(3747.0, bench.fdatasync_usecs(PG_TEST_FSYNC))


class TestTemplates(testtools.TestCase):

    def test_padded_template_boots_busybox_and_has_its_size(self):
        if not shutil.which('busybox') and not os.path.exists(
                '/bin/busybox'):
            self.skipTest('needs busybox-static (bindep profile "test")')
        workdir = self.useFixture(fixtures.TempDir()).path
        path = bench.padded_template(os.path.join(workdir, 'p.tar.gz'), 2)
        self.assertGreater(os.path.getsize(path), 2 * bench.MiB)
        with tarfile.open(path) as tar:
            names = tar.getnames()
        self.assertIn('./bin/busybox', names)
        self.assertIn('./var/padding', names)
        self.assertEqual(['p.tar.gz'], os.listdir(workdir))

        copy = os.path.join(workdir, 'cache.tar.gz')
        with open(path, 'rb') as f:
            expected = hashlib.sha512(f.read()).hexdigest()
        self.assertEqual(expected, bench.download(path, copy))
        self.assertFalse(os.path.exists(copy + '.part'))
