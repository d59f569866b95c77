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

"""vzsim.kernel.ploop: the simulated ploop image library, called directly.

Descriptors as ploop writes them (``ploop_store_diskdescriptor``, CHS
geometry from ``ConvertToCHS``), deltas, snapshots and their tree, resize
and filesystem statistics (openvz-reference.md section 6).
"""

import os

import fixtures
import testtools

from vzsim.kernel import ploop
from vzsim.kernel import real as realkernel

REAL, WHY = realkernel.probe()

TOP = ploop.TOPDELTA_UUID
NONE = ploop.NONE_UUID
SNAP = '{11111111-2222-3333-4444-555555555555}'
SNAP2 = '{66666666-7777-8888-9999-000000000000}'
TEN_GB_KB = 10 * 1024 * 1024

DESCRIPTOR_10G = '''\
<?xml version="1.0"?>
<Parallels_disk_image>
  <Disk_Parameters>
    <Disk_size>20971520</Disk_size>
    <Cylinders>40960</Cylinders>
    <Heads>16</Heads>
    <Sectors>32</Sectors>
    <Padding>0</Padding>
  </Disk_Parameters>
  <StorageData>
    <Storage>
      <Start>0</Start>
      <End>20971520</End>
      <Blocksize>2048</Blocksize>
      <Image>
        <GUID>{5fbaabe3-6958-40ff-92a7-860e329aab41}</GUID>
        <Type>Compressed</Type>
        <File>root.hdd</File>
      </Image>
    </Storage>
  </StorageData>
  <Snapshots>
    <TopGUID>{5fbaabe3-6958-40ff-92a7-860e329aab41}</TopGUID>
    <Shot>
      <GUID>{5fbaabe3-6958-40ff-92a7-860e329aab41}</GUID>
      <ParentGUID>{00000000-0000-0000-0000-000000000000}</ParentGUID>
    </Shot>
  </Snapshots>
</Parallels_disk_image>
'''


class ImageTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                'root.hdd')

    def create(self, size_kb=TEN_GB_KB, **kwargs):
        return ploop.create_image(self.dir, size_kb, **kwargs)

    def write(self, descriptor, name, text):
        path = os.path.join(ploop.content_dir(descriptor), name)
        with open(path, 'w') as f:
            f.write(text)

    def read(self, descriptor, name):
        path = os.path.join(ploop.content_dir(descriptor), name)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return f.read()

    def files(self):
        return sorted(name for name in os.listdir(self.dir)
                      if name.startswith('root.hdd'))

    def assertPloopError(self, code, function, *args, **kwargs):
        error = self.assertRaises(ploop.PloopError, function, *args,
                                  **kwargs)
        self.assertEqual(code, error.code)
        return error


class TestCreateImage(ImageTestCase):

    def test_descriptor_is_written_as_ploop_writes_it(self):
        log = []
        self.create(log=log.append)
        with open(os.path.join(self.dir, 'DiskDescriptor.xml')) as f:
            self.assertEqual(DESCRIPTOR_10G, f.read())
        self.assertEqual(
            ['Creating delta %s/root.hdd bs=2048 size=20971520 sectors v2'
             % self.dir,
             'Storing %s/DiskDescriptor.xml' % self.dir], log)

    def test_image_is_a_sparse_file_of_the_disk_size(self):
        self.create()
        info = os.stat(os.path.join(self.dir, 'root.hdd'))
        self.assertEqual(TEN_GB_KB * 1024, info.st_size)
        self.assertLess(info.st_blocks * 512, 1024 * 1024)
        self.assertEqual(0o700, os.stat(self.dir).st_mode & 0o777)
        self.assertEqual([], os.listdir(ploop.content_dir(self.dir)))

    def test_size_rounds_up_to_whole_clusters(self):
        descriptor = self.create(2306867)    # vzctl's 2.2G
        self.assertEqual(4614144, descriptor.size)
        self.assertEqual(2307072, descriptor.size_kb)

    def test_geometry_follows_ploop_chs_rules(self):
        # 1 GiB lies in the 504 MB .. 8 GB range: 16 heads x 63 sectors.
        descriptor = self.create(1024 * 1024)
        text = descriptor.to_xml()
        self.assertIn('<Cylinders>2080</Cylinders>', text)
        self.assertIn('<Heads>16</Heads>', text)
        self.assertIn('<Sectors>63</Sectors>', text)

    def test_formats(self):
        raw = ploop.create_image(self.dir + '-raw', 1024, fmt='raw')
        self.assertIn('<Type>Plain</Type>', raw.to_xml())
        prealloc = self.create(1024, fmt='preallocated')
        self.assertIn('<Preallocated>1</Preallocated>', prealloc.to_xml())
        self.assertEqual('preallocated',
                         ploop.read_descriptor(self.dir).mode)
        self.assertPloopError(38, ploop.create_image, self.dir + '-x', 1024,
                              fmt='qcow2')

    def test_existing_image_or_zero_size_is_refused(self):
        self.create()
        self.assertPloopError(38, self.create)
        self.assertPloopError(38, ploop.create_image, self.dir + '-0', 0)


class TestReadDescriptor(ImageTestCase):

    def test_round_trip(self):
        self.create()
        descriptor = ploop.read_descriptor(
            os.path.join(self.dir, 'DiskDescriptor.xml'))
        self.assertEqual(DESCRIPTOR_10G, descriptor.to_xml())
        self.assertEqual([ploop.Image(TOP, 'root.hdd')], descriptor.images)
        self.assertEqual([ploop.Shot(TOP, NONE)], descriptor.shots)

    def test_missing_or_broken_descriptor_is_39(self):
        self.assertPloopError(39, ploop.read_descriptor, self.dir)
        os.makedirs(self.dir)
        with open(os.path.join(self.dir, 'DiskDescriptor.xml'), 'w') as f:
            f.write('<Parallels_disk_image><Disk')
        self.assertPloopError(39, ploop.read_descriptor, self.dir)

    def test_normalize_guid(self):
        self.assertEqual(SNAP, ploop.normalize_guid(SNAP[1:-1]))
        self.assertEqual(SNAP, ploop.normalize_guid(SNAP))
        self.assertIsNone(ploop.normalize_guid('not-a-uuid'))
        self.assertIsNone(ploop.normalize_guid(None))


class TestSnapshots(ImageTestCase):

    def test_snapshot_renames_top_and_adds_a_new_delta(self):
        descriptor = self.create()
        self.assertEqual(SNAP, ploop.snapshot(descriptor, SNAP))
        descriptor = ploop.read_descriptor(self.dir)
        self.assertEqual(TOP, descriptor.top_guid)
        self.assertEqual([ploop.Shot(SNAP, NONE), ploop.Shot(TOP, SNAP)],
                         descriptor.shots)
        self.assertEqual('root.hdd', descriptor.images[0].file)
        self.assertEqual(SNAP, descriptor.images[0].guid)
        top_file = descriptor.images[1].file
        self.assertRegex(top_file, r'^root\.hdd\.\{[0-9a-f-]{36}\}$')
        self.assertEqual(['root.hdd', top_file], self.files())

    def test_generated_uuid_and_refusals(self):
        descriptor = self.create()
        guid = ploop.snapshot(descriptor)
        self.assertIsNotNone(ploop.normalize_guid(guid))
        self.assertPloopError(38, ploop.snapshot, descriptor, guid)
        self.assertPloopError(38, ploop.snapshot, descriptor, 'bad')

    def test_switch_restores_the_snapshot_state(self):
        descriptor = self.create()
        self.write(descriptor, 'a', 'before')
        ploop.snapshot(descriptor, SNAP)
        self.write(descriptor, 'a', 'after')
        self.write(descriptor, 'b', 'new')
        old_top = descriptor.image_path(TOP)
        log = []
        ploop.switch(descriptor, SNAP, log=log.append)
        self.assertEqual('before', self.read(descriptor, 'a'))
        self.assertIsNone(self.read(descriptor, 'b'))
        self.assertFalse(os.path.exists(old_top))
        descriptor = ploop.read_descriptor(self.dir)
        self.assertEqual([ploop.Shot(SNAP, NONE), ploop.Shot(TOP, SNAP)],
                         descriptor.shots)
        self.assertEqual('ploop snapshot has been successfully switched',
                         log[-1])

    def test_switch_refusals(self):
        descriptor = self.create()
        ploop.snapshot(descriptor, SNAP)
        self.assertPloopError(43, ploop.switch, descriptor, SNAP2)
        self.assertPloopError(38, ploop.switch, descriptor, TOP)
        error = self.assertPloopError(38, ploop.switch, descriptor, SNAP,
                                      mounted='/dev/ploop0')
        self.assertIn('running device (/dev/ploop0)', error.message)

    def test_delete_with_one_child_merges_into_it(self):
        descriptor = self.create()
        ploop.snapshot(descriptor, SNAP)
        ploop.snapshot(descriptor, SNAP2)
        middle_file = descriptor.image_path(SNAP2)
        ploop.delete(descriptor, SNAP)
        descriptor = ploop.read_descriptor(self.dir)
        # The base file now holds the child's state, under the child's GUID.
        self.assertEqual(ploop.Image(SNAP2, 'root.hdd'), descriptor.images[0])
        self.assertEqual([ploop.Shot(SNAP2, NONE), ploop.Shot(TOP, SNAP2)],
                         descriptor.shots)
        self.assertFalse(os.path.exists(middle_file))
        self.assertEqual(2, len(self.files()))

    def test_delete_of_the_unmounted_top_makes_the_parent_top(self):
        descriptor = self.create()
        self.write(descriptor, 'a', 'snapshot')
        ploop.snapshot(descriptor, SNAP)
        self.write(descriptor, 'a', 'live')
        self.assertPloopError(38, ploop.delete, descriptor, TOP,
                              mounted=True)
        ploop.delete(descriptor, TOP)
        descriptor = ploop.read_descriptor(self.dir)
        self.assertEqual([ploop.Shot(TOP, NONE)], descriptor.shots)
        self.assertEqual(['root.hdd'], self.files())
        self.assertEqual('snapshot', self.read(descriptor, 'a'))

    def test_delete_refusals(self):
        descriptor = self.create()
        self.assertPloopError(38, ploop.delete, descriptor, TOP)   # base
        self.assertPloopError(43, ploop.delete, descriptor, SNAP)
        ploop.snapshot(descriptor, SNAP)
        ploop.switch(descriptor, SNAP)
        ploop.snapshot(descriptor, SNAP2)
        ploop.switch(descriptor, SNAP)
        # SNAP now has two children: SNAP2 and the top delta.
        self.assertPloopError(38, ploop.delete, descriptor, SNAP)

    def test_merge(self):
        descriptor = self.create()
        self.assertPloopError(38, ploop.merge, descriptor)   # only a base
        ploop.snapshot(descriptor, SNAP)
        ploop.snapshot(descriptor, SNAP2)
        ploop.merge(descriptor)
        descriptor = ploop.read_descriptor(self.dir)
        self.assertEqual([ploop.Shot(SNAP, NONE), ploop.Shot(TOP, SNAP)],
                         descriptor.shots)
        ploop.merge(descriptor, merge_all=True)
        descriptor = ploop.read_descriptor(self.dir)
        self.assertEqual([ploop.Image(TOP, 'root.hdd')], descriptor.images)
        self.assertEqual(['root.hdd'], self.files())
        self.assertEqual([ploop.LIVE_TREE],
                         os.listdir(os.path.join(self.dir,
                                                 ploop.CONTENT_DIR)))

    def test_list_snapshots(self):
        descriptor = self.create()
        ploop.snapshot(descriptor, SNAP)
        listed = ploop.list_snapshots(descriptor)
        self.assertEqual([(SNAP, NONE, False), (TOP, SNAP, True)],
                         [(s.guid, s.parent_guid, s.current)
                          for s in listed])
        self.assertEqual(os.path.join(self.dir, 'root.hdd'), listed[0].file)


class TestResizeAndStats(ImageTestCase):

    def test_resize_grows_and_shrinks_the_top_delta(self):
        descriptor = self.create(1024 * 1024)
        ploop.resize(descriptor, 2 * 1024 * 1024)
        self.assertEqual(4194304, ploop.read_descriptor(self.dir).size)
        self.assertEqual(2 * 1024 ** 3,
                         os.path.getsize(descriptor.image_path(TOP)))
        ploop.resize(descriptor, 512 * 1024)
        self.assertEqual(1048576, ploop.read_descriptor(self.dir).size)

    def test_shrinking_below_the_data_fails(self):
        descriptor = self.create(1024 * 1024)
        self.write(descriptor, 'big', 'x' * 3 * 1024 * 1024)
        self.assertPloopError(26, ploop.resize, descriptor, 2048)
        self.assertPloopError(38, ploop.resize, descriptor, 0)

    def test_fs_stats(self):
        descriptor = self.create(1024 * 1024)
        os.makedirs(os.path.join(ploop.content_dir(descriptor), 'etc'))
        self.write(descriptor, 'etc/hosts', 'x' * 5000)
        stats = ploop.fs_stats(descriptor)
        # 8 KiB of data plus one 4 KiB block for the directory.
        self.assertEqual(ploop.FsStats(1048576, 12, 65536, 3), stats)
        self.assertEqual(stats, ploop.image_fs_stats(self.dir))
        self.assertIsNone(ploop.image_fs_stats(self.dir + '-none'))
