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

"""The simulated ``ploop`` command (vzsim.cli.ploop), run as its executable.

Expected values come from openvz-reference.md section 6
(commands, exit codes, DiskDescriptor.xml) and ploop's own sources it
cites (``ploop_store_diskdescriptor``, ``ConvertToCHS``, snapshot-list).
"""

import os

import testtools

from tests import fixtures as sim_fixtures
from tests.unit.vzsim.kernel import test_ploop as library_tests
from vzsim.kernel import ploop
from vzsim.kernel import real as realkernel

REAL, WHY = realkernel.probe()

TOP = ploop.TOPDELTA_UUID
NONE = ploop.NONE_UUID
SNAP = library_tests.SNAP
#: What ``ploop init -s 10G`` writes (the library's own expectation).
DESCRIPTOR_10G = library_tests.DESCRIPTOR_10G


class PloopCommandTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # The modelled image: its empty filesystem gives the exact sizes
        # the tests compare with.
        self.host = self.useFixture(
            sim_fixtures.SimulatedHostFixture(kernel='modelled'))
        self.image_dir = self.host.path('images/root.hdd')
        self.xml = os.path.join(self.image_dir, 'DiskDescriptor.xml')

    def ploop(self, *args, expect=0):
        rc, out, err = self.host.run('ploop', *args)
        self.assertEqual(expect, rc, 'ploop %s: %s %s' % (args, out, err))
        return out, err

    def init(self, size='1G'):
        return self.ploop('init', '-s', size,
                          os.path.join(self.image_dir, 'root.hdd'))


class TestPloopCommand(PloopCommandTestCase):

    def test_init_and_info(self):
        out, _ = self.init()
        self.assertEqual(
            'Creating delta %s/root.hdd bs=2048 size=2097152 sectors v2\n'
            'Storing %s\n' % (self.image_dir, self.xml), out)
        out, _ = self.ploop('info', self.xml)
        self.assertEqual('   resource           Size           Used\n'
                         '  1k-blocks        1048576              0\n'
                         '     inodes          65536              1\n', out)
        out, _ = self.ploop('info', '-s', self.xml)
        self.assertEqual('size:\t\t2097152\nblocksize:\t2048\n'
                         'fmt_version:\t2\n', out)

    def test_snapshot_list_layout(self):
        self.init()
        self.ploop('snapshot', '-u', SNAP[1:-1], self.xml)
        out, _ = self.ploop('snapshot-list', self.xml)
        lines = out.splitlines()
        self.assertEqual('%-38s %-1s %-38s %-32s ' % ('PARENT_UUID', 'C',
                                                      'UUID', 'FNAME'),
                         lines[0])
        self.assertEqual('%-38s %-1s %-38s %s' % (
            NONE, '', SNAP, os.path.join(self.image_dir, 'root.hdd')),
            lines[1])
        self.assertTrue(lines[2].startswith('%s * %s ' % (SNAP, TOP)))
        out, _ = self.ploop('snapshot-list', '-H', '-o', 'uuid', self.xml)
        self.assertEqual('%s\n%s\n' % (SNAP, TOP), out)

    def test_exit_codes(self):
        _, err = self.ploop('snapshot', self.xml, expect=39)
        self.init()
        _, err = self.ploop('snapshot-delete', '-u', 'nonsense', self.xml,
                            expect=38)
        self.assertEqual('Incorrect uuid specified: nonsense\n', err)
        _, err = self.ploop('snapshot-delete', '-u', SNAP, self.xml,
                            expect=43)
        self.assertIn("Can't find snapshot by uuid %s" % SNAP, err)
        _, err = self.ploop('frobnicate', expect=38)
        self.assertTrue(err.startswith('Usage: ploop init'))
        self.ploop('init', '-s', '1Q', 'x', expect=38)

    def test_mount_list_umount(self):
        self.init()
        target = self.host.path('mnt')
        out, _ = self.ploop('mount', '-m', target, self.xml)
        self.assertEqual(
            'Adding delta dev=/dev/ploop0 img=%s/root.hdd (rw)\n'
            "Mounting /dev/ploop0p1 at %s fstype=ext4 data='balloon_ino=12,'"
            '\n' % (self.image_dir, target), out)
        self.assertTrue(os.path.samefile(
            target, ploop.content_dir(self.image_dir)))
        self.ploop('mount', '-m', target, self.xml, expect=37)
        out, _ = self.ploop('list', '-a')
        self.assertEqual('ploop0       %s/root.hdd %s \n'
                         % (self.image_dir, target), out)
        self.assertEqual('Next unused minor: 16\n', self.ploop('getdev')[0])
        self.ploop('snapshot', '-u', SNAP, self.xml)
        self.ploop('snapshot-switch', '-u', SNAP, self.xml, expect=38)
        out, _ = self.ploop('umount', self.xml)
        self.assertEqual('Unmounting file system at %s\n'
                         'Unmounting device /dev/ploop0\n' % target, out)
        self.assertFalse(os.path.islink(target))
        self.ploop('umount', self.xml, expect=40)
        self.assertEqual('', self.ploop('list')[0])
        self.ploop('snapshot-switch', '-u', SNAP, self.xml)

    def test_calls_are_logged(self):
        self.init()
        self.assertEqual(['ploop'], [c['tool'] for c in self.host.calls()])


class TestRestoreDescriptor(PloopCommandTestCase):
    """``ploop restore-descriptor -f FMT [-b BS] DIR DELTA`` (reference 6.1).

    It writes the descriptor a lone base delta needs to be mounted again.
    """

    def lone_delta(self, size='64M'):
        """A delta made by ``ploop init``, moved alone to a new directory."""
        self.init(size)
        lone = self.host.path('lone')
        os.makedirs(lone)
        os.rename(os.path.join(self.image_dir, 'root.hdd'),
                  os.path.join(lone, 'root.hdd'))
        return lone

    def test_rebuilds_the_descriptor_ploop_init_wrote(self):
        self.init('10G')
        with open(self.xml) as f:
            written = f.read()
        os.unlink(self.xml)
        out, _ = self.ploop('restore-descriptor', '-f', 'ploop1',
                            self.image_dir,
                            os.path.join(self.image_dir, 'root.hdd'))
        self.assertEqual('Storing %s\n' % self.xml, out)
        with open(self.xml) as f:
            self.assertEqual(DESCRIPTOR_10G, f.read())
        self.assertEqual(written, DESCRIPTOR_10G)

    def test_a_lone_delta_mounts_read_only_with_an_empty_filesystem(self):
        lone = self.lone_delta()
        xml = os.path.join(lone, 'DiskDescriptor.xml')
        self.ploop('restore-descriptor', '-f', 'ploop1', lone,
                   os.path.join(lone, 'root.hdd'))
        descriptor = ploop.read_descriptor(xml)
        self.assertEqual(64 * 1024 * 2, descriptor.size)
        self.assertEqual([ploop.Image(TOP, 'root.hdd')], descriptor.images)
        target = self.host.path('mnt')
        out, _ = self.ploop('mount', '-r', '-m', target, xml)
        self.assertIn('img=%s/root.hdd (ro)' % lone, out)
        self.assertEqual([], os.listdir(target))
        self.ploop('umount', '-m', target)
        self.assertEqual('', self.ploop('list')[0])

    def test_a_delta_elsewhere_is_named_by_its_path(self):
        lone = self.lone_delta()
        other = self.host.path('other')
        os.makedirs(other)
        self.ploop('restore-descriptor', other,
                   os.path.join(lone, 'root.hdd'))
        descriptor = ploop.read_descriptor(other)
        self.assertEqual(os.path.join(lone, 'root.hdd'),
                         descriptor.image_path(TOP))

    def test_raw_format_is_plain(self):
        lone = self.lone_delta()
        self.ploop('restore-descriptor', '-f', 'raw', '-b', '4096', lone,
                   os.path.join(lone, 'root.hdd'))
        descriptor = ploop.read_descriptor(lone)
        self.assertEqual(('raw', 4096), (descriptor.mode,
                                         descriptor.blocksize))

    def test_usage_errors_are_38(self):
        lone = self.lone_delta()
        delta = os.path.join(lone, 'root.hdd')
        for args in ((lone,), (lone, delta, 'more'),
                     ('-f', 'qcow2', lone, delta), ('-b', 'big', lone, delta),
                     ('-x', lone, delta)):
            _, err = self.ploop('restore-descriptor', *args, expect=38)
            self.assertIn('Usage: ploop restore-descriptor', err)
        self.assertFalse(os.path.exists(os.path.join(lone,
                                                     'DiskDescriptor.xml')))

    def test_an_existing_descriptor_is_kept(self):
        self.init()
        with open(self.xml) as f:
            before = f.read()
        _, err = self.ploop('restore-descriptor', '-f', 'ploop1',
                            self.image_dir,
                            os.path.join(self.image_dir, 'root.hdd'),
                            expect=38)
        self.assertIn('exists', err)
        with open(self.xml) as f:
            self.assertEqual(before, f.read())

    def test_unusable_deltas(self):
        lone = self.host.path('bad')
        os.makedirs(lone)
        delta = os.path.join(lone, 'root.hdd')
        _, err = self.ploop('restore-descriptor', lone, delta, expect=4)
        self.assertIn("Can't open %s" % delta, err)
        with open(delta, 'wb') as f:
            f.write(b'QFI\xfb' + b'\0' * (1024 * 1024 - 4))
        _, err = self.ploop('restore-descriptor', lone, delta, expect=11)
        self.assertIn('not a ploop1 delta', err)
        with open(delta, 'wb') as f:
            f.truncate(1024 * 1024 + 512)
        _, err = self.ploop('restore-descriptor', lone, delta, expect=11)
        self.assertIn('not whole 1048576-byte clusters', err)
        self.assertEqual(['root.hdd'], os.listdir(lone))

    def test_a_missing_directory_is_39(self):
        lone = self.lone_delta()
        _, err = self.ploop('restore-descriptor', self.host.path('nowhere'),
                            os.path.join(lone, 'root.hdd'), expect=39)
        self.assertIn("Can't write", err)


class TestRestoreDescriptorRealBackend(testtools.TestCase):
    """A real delta carries its ext4: files survive the trip alone."""

    def setUp(self):
        super().setUp()
        if not REAL:
            self.skipTest('real kernel backend unavailable: %s' % WHY)
        self.host = self.useFixture(
            sim_fixtures.SimulatedHostFixture(kernel='real'))

    def ploop(self, *args, expect=0):
        rc, out, err = self.host.run('ploop', *args)
        self.assertEqual(expect, rc, 'ploop %s: %s %s' % (args, out, err))
        return out

    def test_files_of_a_lone_delta_mount_read_only(self):
        made = self.host.path('made')
        self.ploop('init', '-s', '32M', os.path.join(made, 'root.hdd'))
        target = self.host.path('mnt')
        self.ploop('mount', '-m', target,
                   os.path.join(made, 'DiskDescriptor.xml'))
        with open(os.path.join(target, 'hello'), 'w') as f:
            f.write('from the image\n')
        self.ploop('umount', '-m', target)
        lone = self.host.path('lone')
        os.makedirs(lone)
        delta = os.path.join(lone, 'root.hdd')
        os.rename(os.path.join(made, 'root.hdd'), delta)

        self.ploop('restore-descriptor', '-f', 'ploop1', lone, delta)
        self.assertEqual(['DiskDescriptor.xml', 'root.hdd'],
                         sorted(os.listdir(lone)))
        out = self.ploop('mount', '-r', '-m', target,
                         os.path.join(lone, 'DiskDescriptor.xml'))
        self.assertIn('(ro)', out)
        try:
            with open(os.path.join(target, 'hello')) as f:
                self.assertEqual('from the image\n', f.read())
            self.assertRaises(OSError, open, os.path.join(target, 'new'),
                              'w')
        finally:
            self.ploop('umount', '-m', target)
        self.assertEqual((None, None), ploop.loop_of(delta))
        self.assertFalse(realkernel.is_mount_point(target))
        self.assertEqual('', self.ploop('list'))
