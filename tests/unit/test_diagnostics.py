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

"""The parsers of the host's counters (reference 5.1, 5.3)."""

import os

import fixtures
from nova import objects
import testtools

from nova_openvz import diagnostics

#: vestat as a 64-bit kernel prints it (two containers).
VESTAT = '\n'.join([
    '%-251s' % 'Version: 2.2',
    ' '.join('%20s' % h for h in (
        'VEID', 'user', 'nice', 'system', 'uptime', 'idle', 'strv', 'uptime',
        'used', 'maxlat', 'totlat', 'numsched')),
    ' '.join('%20d' % n for n in (101, 78, 0, 1330, 59454597, 142650441835148,
                                  0, 594545970000, 1234, 0, 0, 0)),
    ' '.join('%20d' % n for n in (102, 178, 2, 5340, 59424597, 0, 0, 0, 0,
                                  0, 0, 0))]) + '\n'

PROC_STAT = ('cpu  100 20 300 4000 50 6 7 0 0 0\n'
             'cpu0 50 10 150 2000 25 3 3 0 0 0\n'
             'intr 12345\nbtime 1700000000\n')


class TestParsers(testtools.TestCase):

    def test_vestat_line_of_a_container(self):
        lines = VESTAT.splitlines()
        self.assertIsNone(diagnostics.parse_vestat_line(lines[0]))
        self.assertIsNone(diagnostics.parse_vestat_line(lines[1]))
        self.assertIsNone(diagnostics.parse_vestat_line(None))
        self.assertEqual({'user': 178, 'nice': 2, 'system': 5340,
                          'uptime': 59424597},
                         diagnostics.parse_vestat_line(lines[3]))

    def test_cpu_time_is_libvirts_sum_of_ticks(self):
        vestat = diagnostics.parse_vestat_line(VESTAT.splitlines()[2])
        self.assertEqual((78 + 1330) * 10 ** 9 // 100,
                         diagnostics.cpu_time_ns(vestat, hz=100))

    def test_every_beancounter_with_its_five_columns(self):
        record = {'ctid': 101, 'status': 'running',
                  'numproc': {'held': 18, 'maxheld': 24, 'barrier': 24,
                              'limit': 24, 'failcnt': 3},
                  'physpages': {'held': 2560, 'maxheld': 3000, 'barrier': 0,
                                'limit': 131072, 'failcnt': 0},
                  'diskspace': {'usage': 1000, 'softlimit': 2, 'hardlimit': 2}}
        found = diagnostics.beancounters(record)
        self.assertEqual({'numproc', 'physpages'}, set(found))
        self.assertEqual({'held': 18, 'maxheld': 24, 'barrier': 24,
                          'limit': 24, 'failcnt': 3}, found['numproc'])
        self.assertEqual(21, len(diagnostics.BEANCOUNTERS))

    def test_host_cpu_stats_in_nanoseconds(self):
        ns = 10 ** 9 // os.sysconf('SC_CLK_TCK')
        self.assertEqual({'user': 120 * ns, 'kernel': 313 * ns,
                          'idle': 4000 * ns, 'iowait': 50 * ns},
                         diagnostics.parse_host_stat(PROC_STAT))
        self.assertRaises(ValueError, diagnostics.parse_host_stat, 'intr 1\n')

    def test_cpu_mhz(self):
        self.assertEqual(2394, diagnostics.parse_cpu_mhz(
            'processor\t: 0\ncpu MHz\t\t: 2394.454\n'))
        self.assertEqual(0, diagnostics.parse_cpu_mhz('processor\t: 0\n'))

    def test_block_stat(self):
        # Documentation/block/stat: reads, merged, sectors, ticks, writes...
        self.assertEqual((10, 20 * 512, 30, 40 * 512),
                         diagnostics.parse_block_stat(
                             '10 1 20 5 30 2 40 7 0 9 12 0 0 0 0\n'))


class _FakeContainer(object):

    status = 'running'
    interfaces = [{'ifname': 'eth0', 'mac': 'FA:16:3E:00:00:01',
                   'host_ifname': 'tap-none-here'}]

    def counters(self):
        return {'ctid': 101, 'status': 'running', 'uptime': 42.5,
                'physpages': {'held': 2560, 'maxheld': 3000, 'barrier': 0,
                              'limit': 131072, 'failcnt': 2},
                'numproc': {'held': 5, 'maxheld': 9, 'barrier': 2 ** 63 - 1,
                            'limit': 2 ** 63 - 1, 'failcnt': 0},
                'diskspace': {'usage': 1000, 'softlimit': 2097152,
                              'hardlimit': 2097152}}

    def vestat_line(self):
        return VESTAT.splitlines()[2]


class TestForms(testtools.TestCase):

    def setUp(self):
        super().setUp()
        objects.register_all()
        self.sample = diagnostics.Sample(_FakeContainer(), '/nonexistent')

    def test_standard_form(self):
        instance = objects.Instance(flavor=objects.Flavor(memory_mb=512))
        diags = diagnostics.instance_diagnostics(instance, self.sample, 1,
                                                 False)
        self.assertEqual('running', diags.state)
        self.assertEqual(512, diags.memory_details.maximum)
        self.assertEqual(10, diags.memory_details.used)
        self.assertEqual(1, diags.num_cpus)
        self.assertEqual(diagnostics.cpu_time_ns(self.sample.vestat),
                         diags.cpu_details[0].time)
        self.assertEqual(42, diags.uptime)
        # A host end that is gone: the port is shown without counters.
        self.assertEqual(1, diags.num_nics)
        self.assertEqual('fa:16:3e:00:00:01',
                         diags.nic_details[0].mac_address)
        self.assertIsNone(diags.nic_details[0].rx_octets)
        self.assertEqual(0, diags.num_disks)

    def test_legacy_form_has_every_column_of_every_beancounter(self):
        legacy = diagnostics.legacy_diagnostics(self.sample)
        self.assertEqual(2, legacy['ubc_physpages_failcnt'])
        self.assertEqual(9, legacy['ubc_numproc_maxheld'])
        self.assertEqual(2 ** 63 - 1, legacy['ubc_numproc_limit'])
        self.assertEqual(512 * 1024, legacy['memory-actual'])
        self.assertEqual(10 * 1024, legacy['memory'])
        self.assertEqual(1000, legacy['disk_usage_kb'])
        self.assertEqual(diagnostics.cpu_time_ns(self.sample.vestat),
                         legacy['cpu0_time'])

    def test_veth_counters_are_turned_to_the_containers_view(self):
        directory = self.useFixture(fixtures.TempDir()).path
        stats = os.path.join(directory, 'tapx', 'statistics')
        os.makedirs(stats)
        values = {'rx_bytes': 1, 'rx_packets': 2, 'rx_errors': 3,
                  'rx_dropped': 4, 'tx_bytes': 5, 'tx_packets': 6,
                  'tx_errors': 7, 'tx_dropped': 8}
        for name, value in values.items():
            with open(os.path.join(stats, name), 'w') as f:
                f.write('%d\n' % value)
        self.assertEqual({'rx_octets': 5, 'rx_packets': 6, 'rx_errors': 7,
                          'rx_drop': 8, 'tx_octets': 1, 'tx_packets': 2,
                          'tx_errors': 3, 'tx_drop': 4},
                         diagnostics.nic_counters('tapx', directory))
