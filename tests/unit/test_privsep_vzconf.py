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

"""vzctl's config file format and units, as the driver reads them."""

import os

import fixtures
import testtools

from nova_openvz.privsep import vzconf


class TestParse(testtools.TestCase):

    def test_plain_quoted_and_unquoted_values(self):
        self.assertEqual(
            {'VIRTUOZZO': 'yes', 'LOCKDIR': '/vz/lock', 'EMPTY': ''},
            vzconf.parse('VIRTUOZZO=yes\nLOCKDIR="/vz/lock"\nEMPTY=""\n'))

    def test_first_occurrence_of_a_key_wins(self):
        self.assertEqual({'DISKSPACE': '2G:2.2G'},
                         vzconf.parse('DISKSPACE="2G:2.2G"\nDISKSPACE=""\n'))

    def test_quoted_value_runs_to_the_last_quote_so_json_survives(self):
        line = ('DESCRIPTION="{"host": "cmp1", '
                '"nova_instance": "0e5a1c3e-2f4b-4a7e-9d55-2a3d9c7d1f00"}"')
        self.assertEqual(
            ('DESCRIPTION', '{"host": "cmp1", "nova_instance": '
                            '"0e5a1c3e-2f4b-4a7e-9d55-2a3d9c7d1f00"}'),
            vzconf.parse_line(line))

    def test_unterminated_quote_keeps_the_rest_of_the_line(self):
        self.assertEqual(('MODULES', 'ipt_REJECT ipt_tos '),
                         vzconf.parse_line('MODULES="ipt_REJECT ipt_tos \\'))

    def test_backslashes_are_stripped(self):
        self.assertEqual(('NAME', 'a"b'), vzconf.parse_line(r'NAME="a\"b"'))
        self.assertEqual(('PATHS', 'ab'), vzconf.parse_line(r'PATHS=a\b'))

    def test_comments_blank_and_foreign_lines_are_ignored(self):
        text = ('# Global parameters\n'
                '   \n'
                '#VE_ROOT="/somewhere/else"\n'
                'not a config line\n'
                'lowercase=value\n'
                '=nokey\n'
                '  VE_ROOT="/vz/root/$VEID"  \n')
        self.assertEqual({'VE_ROOT': '/vz/root/$VEID'}, vzconf.parse(text))

    def test_read_of_a_missing_file_is_empty(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        self.assertEqual({}, vzconf.read(os.path.join(tmp, '101.conf')))

    def test_read_parses_the_file(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(tmp, '101.conf')
        with open(path, 'w') as f:
            f.write('# comment\nCPUS="2"\nNAME="web"\n')
        self.assertEqual({'CPUS': '2', 'NAME': 'web'}, vzconf.read(path))


class TestRender(testtools.TestCase):

    TEXT = ('# RAM\n'
            'PHYSPAGES="0:65536"\n'
            '\n'
            '# CPU\n'
            'CPUUNITS="1000"\n'
            'NETFILTER="stateless"\n')

    def test_existing_keys_are_replaced_in_place(self):
        self.assertEqual(
            '# RAM\nPHYSPAGES="0:131072"\n\n# CPU\nCPUUNITS="2000"\n'
            'NETFILTER="stateless"\n',
            vzconf.render(self.TEXT, {'CPUUNITS': 2000,
                                      'PHYSPAGES': '0:131072'}))

    def test_new_keys_are_appended_quoted(self):
        out = vzconf.render(self.TEXT, {'CPUS': '2', 'HOSTNAME': 'web1'})
        self.assertEqual(self.TEXT + 'CPUS="2"\nHOSTNAME="web1"\n', out)

    def test_duplicates_of_a_changed_key_are_dropped(self):
        out = vzconf.render('CPUS="1"\nX="1"\nCPUS="3"\n', {'CPUS': '4'})
        self.assertEqual('CPUS="4"\nX="1"\n', out)
        self.assertEqual({'CPUS': '4', 'X': '1'}, vzconf.parse(out))

    def test_removed_keys_disappear(self):
        out = vzconf.render(self.TEXT, {}, remove=('CPUUNITS',))
        self.assertNotIn('CPUUNITS', out)
        self.assertIn('# CPU\n', out)
        self.assertEqual({'PHYSPAGES': '0:65536', 'NETFILTER': 'stateless'},
                         vzconf.parse(out))

    def test_json_description_round_trips(self):
        description = '{"host": "cmp1", "nova_instance": "abc"}'
        out = vzconf.render('', {'DESCRIPTION': description})
        self.assertEqual({'DESCRIPTION': description}, vzconf.parse(out))

    def test_render_of_empty_text(self):
        self.assertEqual('A="1"\n', vzconf.render('', {'A': 1}))


class TestUpdate(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.path = os.path.join(self.dir, '101.conf')

    def test_update_creates_a_missing_file(self):
        vzconf.update(self.path, {'ONBOOT': 'no'})
        self.assertEqual({'ONBOOT': 'no'}, vzconf.read(self.path))

    def test_update_keeps_comments_and_other_keys(self):
        with open(self.path, 'w') as f:
            f.write('# sample\nCPUS="1"\nNAME="web"\n')
        vzconf.update(self.path, {'CPUS': '2'}, remove=('NAME',))
        with open(self.path) as f:
            self.assertEqual('# sample\nCPUS="2"\n', f.read())

    def test_update_replaces_the_file_atomically(self):
        with open(self.path, 'w') as f:
            f.write('CPUS="1"\n')
        # A reader that opened the file before the update keeps reading
        # the complete old version: the new one is renamed into place, not
        # written over the old one.
        with open(self.path) as reader:
            vzconf.update(self.path, {'CPUS': '2'})
            self.assertEqual('CPUS="1"\n', reader.read())
        self.assertEqual({'CPUS': '2'}, vzconf.read(self.path))
        self.assertEqual(['101.conf'], os.listdir(self.dir))


class TestSizes(testtools.TestCase):

    def test_parse_size_suffixes(self):
        self.assertEqual(1024, vzconf.parse_size('1K'))
        self.assertEqual(5 * 1024 ** 2, vzconf.parse_size('5m'))
        self.assertEqual(2 * 1024 ** 3, vzconf.parse_size('2G'))
        self.assertEqual(1024 ** 4, vzconf.parse_size('1T'))
        self.assertEqual(3 * 4096, vzconf.parse_size('3P'))
        self.assertEqual(7, vzconf.parse_size('7B'))

    def test_parse_size_bare_numbers_use_the_unit(self):
        self.assertEqual(100, vzconf.parse_size('100'))
        self.assertEqual(100 * 1024, vzconf.parse_size('100', unit=1024))

    def test_parse_size_fractions_round_up(self):
        self.assertEqual(1536, vzconf.parse_size('1.5K'))
        self.assertEqual(2, vzconf.parse_size('1.5'))

    def test_parse_size_rejects_garbage(self):
        for text in ('', 'G', '1X', '-1G', '1,5G', '1 G G'):
            self.assertRaises(vzconf.FormatError, vzconf.parse_size, text)

    def test_expand_veid(self):
        self.assertEqual('/vz/private/101',
                         vzconf.expand_veid('/vz/private/$VEID', 101))
        self.assertEqual('/vz/root/101/x',
                         vzconf.expand_veid('/vz/root/${VEID}/x', 101))


class TestUBC(testtools.TestCase):

    def test_page_params_convert_byte_suffixes_to_pages(self):
        self.assertEqual((262144, 262144), vzconf.parse_ubc('PHYSPAGES', '1G'))
        self.assertEqual((0, 65536), vzconf.parse_ubc('PHYSPAGES', '0:256M'))
        self.assertEqual((1, 1), vzconf.parse_ubc('SWAPPAGES', '1K'))

    def test_page_params_bare_numbers_are_pages(self):
        self.assertEqual((65536, 69632),
                         vzconf.parse_ubc('PRIVVMPAGES', '65536:69632'))
        self.assertEqual((10, 10), vzconf.parse_ubc('LOCKEDPAGES', '10P'))

    def test_byte_params_stay_in_bytes(self):
        self.assertEqual((14372700, 14790164),
                         vzconf.parse_ubc('KMEMSIZE', '14372700:14790164'))
        self.assertEqual((1024 ** 2, 2 * 1024 ** 2),
                         vzconf.parse_ubc('TCPSNDBUF', '1M:2M'))

    def test_item_params_take_plain_numbers_only(self):
        self.assertEqual((240, 240), vzconf.parse_ubc('NUMPROC', '240'))
        self.assertEqual((188, 206), vzconf.parse_ubc('NUMFLOCK', '188:206'))
        self.assertRaises(vzconf.FormatError,
                          vzconf.parse_ubc, 'NUMPROC', '1K')

    def test_unlimited(self):
        self.assertEqual((vzconf.LONG_MAX, vzconf.LONG_MAX),
                         vzconf.parse_ubc('PHYSPAGES', 'unlimited'))
        self.assertEqual((0, vzconf.LONG_MAX),
                         vzconf.parse_ubc('NUMPROC', '0:unlimited'))

    def test_malformed_values_are_rejected(self):
        for text in ('', ':1', '1:', '1:2:3', 'lots', '1G:x'):
            self.assertRaises(vzconf.FormatError,
                              vzconf.parse_ubc, 'PHYSPAGES', text)

    def test_format_ubc(self):
        self.assertEqual('65536', vzconf.format_ubc(65536, 65536))
        self.assertEqual('0:65536', vzconf.format_ubc(0, 65536))
        self.assertEqual('0:unlimited',
                         vzconf.format_ubc(0, vzconf.LONG_MAX))
        self.assertEqual('unlimited',
                         vzconf.format_ubc(vzconf.LONG_MAX, vzconf.LONG_MAX))

    def test_format_then_parse_round_trips(self):
        for pair in ((0, 262144), (5, 5), (0, vzconf.LONG_MAX)):
            self.assertEqual(pair, vzconf.parse_ubc(
                'PHYSPAGES', vzconf.format_ubc(*pair)))


class TestDiskspace(testtools.TestCase):

    def test_suffixed_soft_and_hard(self):
        self.assertEqual((2097152, 2306867),
                         vzconf.parse_diskspace('2G:2.2G'))

    def test_bare_numbers_are_kilobytes(self):
        self.assertEqual((1000, 2000), vzconf.parse_diskspace('1000:2000'))

    def test_a_single_value_sets_both(self):
        self.assertEqual((10240, 10240), vzconf.parse_diskspace('10M'))

    def test_malformed_values_are_rejected(self):
        for text in ('', '1G:', ':1G', '1G:2G:3G', 'big'):
            self.assertRaises(vzconf.FormatError,
                              vzconf.parse_diskspace, text)

    def test_format_diskspace(self):
        self.assertEqual('2097152:2306867',
                         vzconf.format_diskspace(2097152, 2306867))
