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

"""Golden config files read by both parsers of vzctl's format.

``golden/`` holds a ``vz.conf``, a ``ve-*.conf-sample`` and a ``<CTID>.conf``
written the way vzctl 4.11 writes them (openvz-reference.md section 4:
quoted and bare values, ``$VEID`` kept literally, comment lines, NETIF with
upper-case MACs in vzctl's key order, DEVICES, a libvirt ``#UUID:`` line);
``<name>.json`` beside each is what the file says.  The driver's parser
(:mod:`nova_openvz.privsep.vzconf`) and the simulated host's
(:mod:`vzsim.conffile`) are written apart, so each one's reading is checked
against the files, not against the other.
"""

import json
import os

import fixtures
import testtools

from nova_openvz.privsep import vzconf
from vzsim import conffile

GOLDEN = os.path.join(os.path.dirname(__file__), 'golden')
FILES = ('vz.conf', 've-basic.conf-sample', '101.conf')
PARSERS = (('driver', vzconf), ('simulator', conffile))


def golden(name):
    with open(os.path.join(GOLDEN, name), encoding='utf-8') as f:
        return f.read()


class TestGoldenFiles(testtools.TestCase):

    def test_both_parsers_read_every_key(self):
        for name in FILES:
            expected = json.loads(golden(name + '.json'))
            path = os.path.join(GOLDEN, name)
            for label, parser in PARSERS:
                self.assertEqual(expected, parser.read(path),
                                 '%s parser, %s' % (label, name))

    def test_both_parsers_read_the_units(self):
        sample = json.loads(golden('ve-basic.conf-sample.json'))
        ct = json.loads(golden('101.conf.json'))
        unlimited = conffile.LONG_MAX
        expected = {
            ('PHYSPAGES', sample['PHYSPAGES']): (0, unlimited),
            ('VMGUARPAGES', sample['VMGUARPAGES']): (33792, unlimited),
            ('KMEMSIZE', sample['KMEMSIZE']): (14372700, 14790164),
            ('NUMPROC', sample['NUMPROC']): (240, 240),
            ('PHYSPAGES', ct['PHYSPAGES']): (0, 262144),
            ('NUMPROC', ct['NUMPROC']): (240, 240),
        }
        self.assertEqual(vzconf.LONG_MAX, unlimited)
        for label, parser in PARSERS:
            for (key, text), pair in expected.items():
                self.assertEqual(pair, parser.parse_ubc(key, text),
                                 '%s parser, %s=%s' % (label, key, text))
            # Reference 4.4: "2G:2.2G" is 2097152:2306867 KB.
            self.assertEqual((2097152, 2306867),
                             parser.parse_diskspace(sample['DISKSPACE']))
            self.assertEqual((10485760, 11534336),
                             parser.parse_diskspace(ct['DISKSPACE']))
            for key in sorted(sample):
                if key in parser.UBC_PARAMS:
                    self.assertEqual(conffile.parse_ubc(key, sample[key]),
                                     vzconf.parse_ubc(key, sample[key]))

    def test_both_parsers_read_netif(self):
        netif = json.loads(golden('101.conf.json'))['NETIF']
        expected = [
            {'ifname': 'eth0', 'bridge': 'br-int',
             'mac': '00:18:51:2A:4F:0B', 'host_ifname': 'veth101.0',
             'host_mac': '00:18:51:C3:9E:71'},
            {'ifname': 'eth1', 'mac': '00:18:51:77:10:AE',
             'host_ifname': 'veth101.1', 'host_mac': '00:18:51:05:D2:6C'}]
        for label, parser in PARSERS:
            self.assertEqual(expected, parser.netif_devices(netif), label)

    def test_both_parsers_expand_veid(self):
        private = json.loads(golden('vz.conf.json'))['VE_PRIVATE']
        for label, parser in PARSERS:
            self.assertEqual('/vz/private/101',
                             parser.expand_veid(private, 101), label)

    def test_both_write_a_change_the_way_vzctl_saves(self):
        # vzctl set 101 --ram 2G --hostname db1 --save: PHYSPAGES replaced
        # where it stands, the new key appended, every comment kept.
        text = golden('101.conf')
        changes = {'PHYSPAGES': '0:524288', 'SEARCHDOMAIN': 'example.org'}
        expected = text.replace('PHYSPAGES="0:262144"',
                                'PHYSPAGES="0:524288"')
        expected += 'SEARCHDOMAIN="example.org"\n'
        for label, parser in PARSERS:
            self.assertEqual(expected, parser.render(text, changes), label)
        removed = conffile.render(text, {}, remove=('DEVICES',))
        self.assertNotIn('DEVICES=', removed)
        self.assertIn('#UUID: ', removed)
        self.assertEqual(removed, vzconf.render(text, {}, ('DEVICES',)))

    def test_saved_file_reads_back(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            '101.conf')
        with open(path, 'w') as f:
            f.write(golden('101.conf'))
        conffile.update(path, {'NAME': 'web2'}, remove=('IOLIMIT',))
        expected = json.loads(golden('101.conf.json'))
        expected['NAME'] = 'web2'
        del expected['IOLIMIT']
        for label, parser in PARSERS:
            self.assertEqual(expected, parser.read(path), label)
        self.assertFalse(os.path.exists(path + '.tmp'))


class TestSimulatorParser(testtools.TestCase):
    """Reading rules of reference 4.1 and units of 4.4 in vzsim.conffile."""

    def test_lines(self):
        self.assertEqual(
            {'A': 'x y', 'B': 'plain', 'C': 'a"b', 'D': 'nobackslash'},
            conffile.parse('# comment\n\nA="x y"\nB=plain\nC="a"b"\n'
                           'D="no\\backslash"\nA="second"\nlower=1\n'
                           'E =1\nnoequals\n'))

    def test_units(self):
        self.assertEqual(262144, conffile.parse_ubc('PHYSPAGES', '1G')[0])
        self.assertEqual((0, 524288),
                         conffile.parse_ubc('SWAPPAGES', '0:2G'))
        self.assertEqual((10, 10), conffile.parse_ubc('PHYSPAGES', '10P'))
        self.assertEqual((2048, 2048), conffile.parse_ubc('KMEMSIZE', '2k'))
        for param, text in (('NUMPROC', '1K'), ('NUMPROC', '1:2:3'),
                            ('KMEMSIZE', '1X'), ('KMEMSIZE', ':5'),
                            ('KMEMSIZE', '1.')):
            self.assertRaises(conffile.FormatError, conffile.parse_ubc,
                              param, text)
        self.assertEqual('240', conffile.format_ubc(240, 240))
        self.assertEqual('0:unlimited',
                         conffile.format_ubc(0, conffile.LONG_MAX))
        self.assertEqual('1:2', conffile.format_diskspace(1, 2))
        self.assertEqual(1536, conffile.parse_size('1.5', unit=1024))
