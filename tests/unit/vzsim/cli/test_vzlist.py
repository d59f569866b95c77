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

"""The simulated vzlist, run as the real wrapper executable.

Expected outputs come from openvz-reference.md section 3
(options, which containers appear, fields, text quirks, JSON shapes) and
vzlist.c it cites.
"""

import json

import testtools

from tests import fixtures as sim_fixtures
from vzsim.cli import vzlist

HEADER = '      CTID      NPROC STATUS    IP_ADDR         HOSTNAME'
LONG_MAX = 9223372036854775807


class VzlistTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # vzlist over the modelled state (the minimal template cannot
        # boot on the real backend, the default where it can run).
        self.host = self.useFixture(
            sim_fixtures.SimulatedHostFixture(kernel='modelled'))

    def vzctl(self, *args):
        rc, out, err = self.host.vzctl(*args)
        self.assertEqual(0, rc, 'vzctl %s: %s %s' % (args, out, err))

    def vzlist(self, *args, expect=0):
        rc, out, err = self.host.run('vzlist', *args)
        self.assertEqual(expect, rc, 'vzlist %s: %s %s' % (args, out, err))
        return out, err

    def create(self, ctid, *args, layout='simfs'):
        self.vzctl('--quiet', 'create', ctid, '--ostemplate',
                   sim_fixtures.DEFAULT_TEMPLATE, '--layout', layout, *args)

    def start(self, ctid):
        self.vzctl('--quiet', 'start', ctid)


class TestTextOutput(VzlistTestCase):

    def setUp(self):
        super().setUp()
        self.create(101, '--ipadd', '10.0.0.101', '--hostname', 'ct101')
        self.create(102, '--ipadd', '10.0.0.102', '--hostname',
                    'ct102.example.com')
        self.start(101)

    def test_default_lists_running_containers(self):
        out, err = self.vzlist()
        self.assertEqual(HEADER + '\n'
                         '       101          1 running   10.0.0.101      '
                         'ct101\n', out)
        self.assertEqual('', err)

    def test_all_shows_stopped_with_placeholders(self):
        out, _ = self.vzlist('-a')
        self.assertEqual(
            HEADER + '\n'
            '       101          1 running   10.0.0.101      ct101\n'
            '       102          - stopped   10.0.0.102      '
            'ct102.example.com\n', out)
        out, _ = self.vzlist('-S', '-H')
        self.assertEqual('       102          - stopped   10.0.0.102      '
                         'ct102.example.com\n', out)

    def test_ctid_only_forms(self):
        self.assertEqual('       101\n       102\n',
                         self.vzlist('-a', '-H', '-o', 'ctid')[0])
        self.assertEqual('       101\n       102\n',
                         self.vzlist('-a', '-1')[0])
        # Naming a CT shows it even when stopped.
        self.assertEqual('       102\n', self.vzlist('-1', '102')[0])

    def test_not_found(self):
        self.vzctl('--quiet', 'stop', 101)
        out, err = self.vzlist()
        self.assertEqual(('', 'Container(s) not found\n'), (out, err))
        out, err = self.vzlist('999', expect=1)
        self.assertEqual(('', 'Container(s) not found\n'), (out, err))
        _, err = self.vzlist('no-such-name', expect=1)
        self.assertEqual('CT ID no-such-name is invalid.\n', err)

    def test_ct_without_private_area_is_hidden(self):
        self.vzctl('--quiet', 'set', 103, '--hostname', 'ghost', '--save')
        out, _ = self.vzlist('-a', '-H', '-o', 'ctid')
        self.assertEqual('       101\n       102\n', out)
        self.assertEqual((HEADER + '\n', ''), self.vzlist('103'))

    def test_mounted_and_suspended(self):
        self.vzctl('--quiet', 'mount', 102)
        self.create(103)
        self.start(103)
        self.vzctl('--quiet', 'suspend', 103)
        out, _ = self.vzlist('-a', '-H', '-o', 'ctid,status')
        self.assertEqual('       101 running\n       102 mounted\n'
                         '       103 suspended\n', out)

    def test_trimming(self):
        long_name = 'a-very-long-host-name.in-a-long-domain.example.com'
        self.vzctl('--quiet', 'set', 101, '--hostname', long_name,
                   '--ipadd', '10.0.0.201', '--save')
        out, _ = self.vzlist('-H', '-o', 'hostname,ip')
        self.assertEqual('%s 10.0.0.101 10.0.0.201\n' % long_name[:32], out)
        out, _ = self.vzlist('-H', '-o', 'ip,hostname')
        self.assertEqual('10.0.0.101      %s\n' % long_name, out)
        out, _ = self.vzlist('-H', '-t', '-o', 'hostname,ip')
        self.assertEqual('%s 10.0.0.101 10.0.0.201\n' % long_name, out)

    def test_names_and_smart_name(self):
        self.vzctl('--quiet', 'set', 102, '--name', 'database-server',
                   '--save')
        out, _ = self.vzlist('-a', '-n')
        self.assertEqual(
            ' SMARTNAME      NPROC STATUS    IP_ADDR         HOSTNAME\n'
            '       101          1 running   10.0.0.101      ct101\n'
            'database-s          - stopped   10.0.0.102      '
            'ct102.example.com\n', out)
        self.assertEqual('       102\n',
                         self.vzlist('-1', 'database-server')[0])

    def test_filters(self):
        self.vzctl('--quiet', 'set', 102, '--name', 'web', '--description',
                   'nova-instance=x role=web', '--save')
        self.assertEqual('       102\n',
                         self.vzlist('-a', '-1', '-h', '*.example.com')[0])
        self.assertEqual('       102\n',
                         self.vzlist('-a', '-1', '-N', 'w?b')[0])
        self.assertEqual('       102\n',
                         self.vzlist('-a', '-1', '-d', '*role=[vw]eb')[0])
        # CTs without the field never match, not even '*'.
        self.assertEqual('       102\n',
                         self.vzlist('-a', '-1', '-d', '*')[0])

    def test_sorting(self):
        self.assertEqual('       102\n       101\n',
                         self.vzlist('-a', '-1', '-s', '-ctid')[0])
        self.assertEqual('       101\n       102\n',
                         self.vzlist('-a', '-1', '-s', 'hostname')[0])
        self.assertEqual('       102\n       101\n',
                         self.vzlist('-a', '-1', '-s', '-hostname')[0])

    def test_ubc_columns(self):
        self.vzctl('--quiet', 'set', 102, '--numproc', '240', '--save')
        out, _ = self.vzlist('-a', '-o',
                             'ctid,numproc,numproc.m,numproc.b,numproc.l,'
                             'numproc.f,physpages.l')
        self.assertEqual(
            '      CTID      NPROC    NPROC.M    NPROC.B    NPROC.L    '
            'NPROC.F    PHYSP.L\n'
            '       101          1          1 %s %s          0      65536\n'
            '       102          -          -        240        240          '
            '-      65536\n' % (LONG_MAX, LONG_MAX), out)

    def test_errors(self):
        _, err = self.vzlist('-o', 'ctid,bogus', expect=1)
        self.assertEqual('Unknown field: bogus\n', err)
        _, err = self.vzlist('-s', '-bogus', expect=1)
        self.assertEqual('Invalid sort field name: -bogus\n', err)
        _, err = self.vzlist('-j', '-o', 'numproc.l', expect=1)
        self.assertEqual("Field `numproc.l' is not available in JSON "
                         "output\n", err)
        out, err = self.vzlist('-x', expect=1)
        self.assertEqual("vzlist: invalid option -- 'x'\n", err)
        self.assertTrue(out.startswith('Usage:\tvzlist'))

    def test_field_list(self):
        out, _ = self.vzlist('-L')
        lines = out.splitlines()
        self.assertEqual('ctid            CTID           ', lines[0])
        self.assertIn('numproc.l       NPROC.L        ', lines)
        self.assertIn('diskspace.h     DSPACE.H       ', lines)
        self.assertEqual(len(vzlist.FIELDS), len(lines))


class TestIpSources(VzlistTestCase):

    def test_running_ips_come_from_the_kernel_in_added_order(self):
        self.create(101, '--ipadd', '10.0.0.1', '--ipadd', '10.0.0.2')
        self.start(101)
        with open(self.host.path('proc/vz/veinfo')) as f:
            self.assertIn('10.0.0.2        10.0.0.1', f.read())
        out, _ = self.vzlist('-H', '-o', 'ctid,ip')
        self.assertEqual('       101 10.0.0.1 10.0.0.2\n', out)
        records = json.loads(self.vzlist('-j', '-o', 'ip')[0])
        self.assertEqual([{'ip': ['10.0.0.1', '10.0.0.2']}], records)

    def test_veth_only_container_has_no_ip(self):
        self.create(101)
        self.vzctl('--quiet', 'set', 101, '--netif_add', 'eth0', '--save')
        out, _ = self.vzlist('-a', '-H', '-o', 'ctid,ip,status')
        self.assertEqual('       101 -               stopped\n', out)
        records = json.loads(self.vzlist('-a', '-j', '-o', 'ip')[0])
        self.assertEqual([{'ip': []}], records)


EXPECTED_STOPPED_JSON = '''\
[
  {
    "ctid": 102,
    "name": "web",
    "smart_name": "web",
    "description": "role=web",
    "ip": ["10.0.0.102"],
    "status": "stopped",
    "numproc": {
      "held": 0,
      "maxheld": 0,
      "barrier": 0,
      "limit": 0,
      "failcnt": 0
    },
    "physpages": {
      "held": 0,
      "maxheld": 0,
      "barrier": 0,
      "limit": 65536,
      "failcnt": 0
    },
    "diskspace": {
      "usage": 0,
      "softlimit": 2097152,
      "hardlimit": 2306867
    },
    "laverage": null,
    "uptime": 0.000,
    "cpulimit": 0,
    "cpuunits": 1000,
    "cpus": 0,
    "onboot": null,
    "layout": "simfs",
    "vswap": true
  }
]
'''


class TestJson(VzlistTestCase):

    def setUp(self):
        super().setUp()
        self.create(101, '--ipadd', '10.0.0.101', layout='ploop')
        self.create(102, '--ipadd', '10.0.0.102', '--name', 'web')
        self.vzctl('--quiet', 'set', 102, '--description', 'role=web',
                   '--save')
        self.start(101)

    def test_exact_layout_of_selected_fields(self):
        out, _ = self.vzlist(
            '-j', '-o', 'ctid,name,smart_name,description,ip,status,numproc,'
            'physpages,diskspace,laverage,uptime,cpulimit,cpuunits,cpus,'
            'onboot,layout,vswap', '102')
        self.assertEqual(EXPECTED_STOPPED_JSON, out)

    def test_all_base_fields_in_table_order(self):
        records = json.loads(self.vzlist('-a', '-j')[0])
        expected = [field.name for field in vzlist.FIELDS if field.base]
        self.assertEqual([expected, expected],
                         [list(record) for record in records])
        self.assertIn('vm_overcommit', expected)
        self.assertEqual(56, len(expected))
        running, stopped = records
        self.assertEqual(101, running['ctid'])
        self.assertEqual(101, running['smart_name'])
        self.assertIsNone(running['name'])
        self.assertEqual('running', running['status'])
        self.assertEqual('ploop', running['layout'])
        self.assertEqual(1, running['numproc']['held'])
        self.assertEqual(LONG_MAX, running['numproc']['limit'])
        self.assertEqual([0.0, 0.0, 0.0], running['laverage'])
        self.assertIsInstance(running['uptime'], float)
        self.assertEqual({'usage', 'softlimit', 'hardlimit'},
                         set(running['diskspace']))
        self.assertEqual(2307072, running['diskspace']['hardlimit'])
        self.assertGreater(running['diskspace']['usage'], 0)
        self.assertEqual('web', stopped['smart_name'])
        self.assertEqual(['10.0.0.102'], stopped['ip'])
        self.assertEqual([], stopped['nameserver'])
        self.assertEqual(0, stopped['kmemsize']['held'])
        self.assertFalse(stopped['disabled'])
        self.assertEqual('stateless', stopped['netfilter'])

    def test_flags_objects(self):
        self.vzctl('--quiet', 'set', 102, '--features', 'nfs:on,ppp:off',
                   '--save')
        out, _ = self.vzlist('-j', '-o', 'features', '102')
        self.assertEqual('[\n  {\n    "features": {\n      "nfs": true,\n'
                         '      "ppp": false\n    }\n  }\n]\n', out)
        out, _ = self.vzlist('-H', '-o', 'features,ctid', '102')
        self.assertEqual('nfs:on,ppp:off         102\n', out)

    def test_strings_are_not_escaped(self):
        self.vzctl('--quiet', 'set', 102, '--description', 'say "hi"',
                   '--save')
        out, _ = self.vzlist('-j', '-o', 'description', '102')
        self.assertEqual('[\n  {\n    "description": "say "hi""\n  }\n]\n',
                         out)

    def test_empty_results(self):
        self.assertEqual(('[]\n', ''), self.vzlist('-j', '999', expect=1))
        self.vzctl('--quiet', 'stop', 101)
        self.assertEqual(('[]\n', ''), self.vzlist('-j'))
        self.assertEqual(('[\n]\n', ''),
                         self.vzlist('-j', '-a', '-h', 'nothing'))
