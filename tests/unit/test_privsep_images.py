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

"""Privileged file work for the template cache and snapshots.

The entrypoints run in this process on a temporary host tree: what they
accept, what they refuse, and what they leave on disk.
"""

import os
import tarfile
import uuid

import fixtures
from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import conf as openvz_conf
from nova_openvz import privsep
from nova_openvz.privsep import images as priv_images
from nova_openvz.privsep import tools as priv_tools
from nova_openvz.testing import fixtures as sim_fixture

CONF = openvz_conf.CONF
REJECTED = privsep.ArgumentRejected
IMAGE = '6d3c3bd2-8d0d-4c7b-9a7e-0d9b6f1e8a21'


class HostTree(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        for sub in ('template/cache', 'root', 'private', 'staging'):
            os.makedirs(os.path.join(self.root, sub))
        vz_conf = os.path.join(self.root, 'vz.conf')
        with open(vz_conf, 'w') as f:
            f.write('TEMPLATE=%(r)s/template\nVE_ROOT=%(r)s/root/$VEID\n'
                    'VE_PRIVATE=%(r)s/private/$VEID\n' % {'r': self.root})
        self.useFixture(config_fixture.Config(CONF)).config(
            group='openvz', vz_conf=vz_conf,
            image_staging_dir=os.path.join(self.root, 'staging'))
        self.cache = os.path.join(self.root, 'template/cache')
        self.useFixture(sim_fixture.InProcessPrivsep())


class TestTemplateUpkeep(HostTree):

    def test_only_templates_of_this_driver_name_an_image(self):
        self.assertEqual(IMAGE, priv_images.nova_template_image(
            'ubuntu-22.04-x86_64-nova-%s.tar.gz' % IMAGE))
        self.assertEqual(IMAGE, priv_images.nova_template_image(
            'nova-%s.tar' % IMAGE))
        for name in ('centos-7-x86_64.tar.gz', 'nova-%s.zip' % IMAGE,
                     '../nova-%s.tar' % IMAGE, 'nova-%s.tar.gz.part' % IMAGE,
                     'nova-not-a-uuid.tar'):
            self.assertIsNone(priv_images.nova_template_image(name), name)

    def test_remove_and_touch_refuse_other_files(self):
        own = os.path.join(self.cache, 'centos-7-x86_64.tar.gz')
        open(own, 'w').close()
        for entrypoint in (priv_images.remove_template,
                           priv_images.touch_template):
            self.assertRaises(REJECTED, entrypoint, 'centos-7-x86_64.tar.gz')
            self.assertRaises(REJECTED, entrypoint, '../vz.conf')
        self.assertTrue(os.path.exists(own))

    def test_touch_then_remove(self):
        name = 'nova-%s.tar.xz' % IMAGE
        path = os.path.join(self.cache, name)
        open(path, 'w').close()
        os.utime(path, (0, 0))
        priv_images.touch_template(name)
        self.assertGreater(os.path.getmtime(path), 0)
        priv_images.remove_template(name)
        self.assertFalse(os.path.exists(path))
        priv_images.remove_template(name)   # already gone: no error


class TestSnapshotMount(HostTree):

    def test_mount_dir_sits_next_to_container_roots(self):
        guid = str(uuid.uuid4())
        expected = os.path.join(self.root, 'root',
                                'nova-snapshot-101-' + guid)
        self.assertEqual(expected, priv_images.snapshot_mount_dir(101, guid))
        self.assertEqual(expected, priv_images.snapshot_mount_dir(
            101, '{%s}' % guid.upper()))
        for bad in ('../../etc', '', guid + '/..', 'x' * 36):
            self.assertRaises(REJECTED, priv_images.snapshot_mount_dir,
                              101, bad)

    def test_snapshot_mount_only_on_its_own_dir(self):
        guid = str(uuid.uuid4())
        target = priv_images.snapshot_mount_dir(101, guid)
        priv_tools.validate('vzctl', ['snapshot-mount', '101', '--id', guid,
                                      '--target', target])
        priv_tools.validate('vzctl', ['snapshot-umount', '101', '--id',
                                      guid])
        for argv in (['--id', guid, '--target', '/etc'],
                     ['--id', guid, '--target', target + '/..'],
                     ['--id', str(uuid.uuid4()), '--target', target],
                     ['--id', guid, '--target',
                      priv_images.snapshot_mount_dir(102, guid)],
                     ['--target', target], ['--id', guid]):
            self.assertRaises(REJECTED, priv_tools.validate, 'vzctl',
                              ['snapshot-mount', '101'] + argv)

    def test_make_and_remove_the_mount_dir(self):
        guid = str(uuid.uuid4())
        path = priv_images.make_snapshot_mount_dir(101, guid)
        self.assertEqual(0o700, os.stat(path).st_mode & 0o777)
        self.assertEqual(path, priv_images.make_snapshot_mount_dir(101, guid))
        open(os.path.join(path, 'busy'), 'w').close()
        self.assertRaises(REJECTED, priv_images.make_snapshot_mount_dir,
                          101, guid)
        self.assertRaises(OSError, priv_images.remove_snapshot_mount_dir,
                          101, guid)
        os.unlink(os.path.join(path, 'busy'))
        priv_images.remove_snapshot_mount_dir(101, guid)
        self.assertFalse(os.path.exists(path))

    def test_leftover_mounts_are_found_by_ct_id(self):
        mine, other = str(uuid.uuid4()), str(uuid.uuid4())
        priv_images.make_snapshot_mount_dir(101, mine)
        priv_images.make_snapshot_mount_dir(1010, other)
        os.mkdir(os.path.join(self.root, 'root', 'nova-snapshot-101-x'))
        self.assertEqual([mine], priv_images.leftover_snapshot_mounts(101))
        self.assertEqual([other], priv_images.leftover_snapshot_mounts(1010))
        self.assertEqual([], priv_images.leftover_snapshot_mounts(102))


class TestPack(HostTree):

    def _tree(self, ctid=101):
        private = os.path.join(self.root, 'private', str(ctid))
        os.makedirs(os.path.join(private, 'srv/db'))
        with open(os.path.join(private, 'srv/db/table'), 'w') as f:
            f.write('rows-42\n')
        os.symlink('/srv/db/table', os.path.join(private, 'table-link'))
        return private

    def test_private_area_becomes_a_template_tarball(self):
        self._tree()
        name = 'snapshot-%s.tar.gz' % uuid.uuid4()
        self.assertEqual((0, '', ''),
                         priv_images.pack_private_area(101, name))
        path = os.path.join(self.root, 'staging', name)
        self.assertEqual(0o644, os.stat(path).st_mode & 0o777)
        with tarfile.open(path) as tar:
            names = set(tar.getnames())
            self.assertIn('./srv/db/table', names)
            self.assertEqual(b'rows-42\n',
                             tar.extractfile('./srv/db/table').read())
            self.assertEqual('/srv/db/table',
                             tar.getmember('./table-link').linkname)

    def test_a_planted_link_is_not_followed(self):
        self._tree()
        name = 'snapshot-%s.tar.gz' % uuid.uuid4()
        victim = os.path.join(self.root, 'victim')
        open(victim, 'w').close()
        os.symlink(victim, os.path.join(self.root, 'staging', name))
        self.assertRaises(OSError, priv_images.pack_private_area, 101, name)
        self.assertEqual(0, os.path.getsize(victim))

    def test_bad_names_and_ploop_areas_are_refused(self):
        private = self._tree()
        for name in ('../x.tar.gz', 'snapshot-x.tar.gz', 'evil.tar.gz'):
            self.assertRaises(REJECTED, priv_images.pack_private_area, 101,
                              name)
        os.mkdir(os.path.join(private, 'root.hdd'))
        self.assertRaises(REJECTED, priv_images.pack_private_area, 101,
                          'snapshot-%s.tar.gz' % uuid.uuid4())
        self.assertRaises(REJECTED, priv_images.pack_private_area, 0,
                          'snapshot-%s.tar.gz' % uuid.uuid4())

    def test_a_tar_failure_is_reported_and_leaves_no_file(self):
        self._tree()
        self.useFixture(fixtures.MonkeyPatch(
            'nova_openvz.privsep.TOOL_PATH', self._failing_tar()))
        name = 'snapshot-%s.tar.gz' % uuid.uuid4()
        code, _stdout, stderr = priv_images.pack_private_area(101, name)
        self.assertNotEqual(0, code)
        self.assertIn('tar', stderr)
        self.assertEqual([], os.listdir(os.path.join(self.root, 'staging')))

    def _failing_tar(self):
        bin_dir = os.path.join(self.root, 'bin')
        os.mkdir(bin_dir)
        tar = os.path.join(bin_dir, 'tar')
        with open(tar, 'w') as f:
            f.write('#!/bin/sh\necho "tar: ./srv: Cannot open: I/O error"'
                    ' >&2\nexit 2\n')
        os.chmod(tar, 0o755)
        return bin_dir


class TestPloopImages(HostTree):
    """The ploop grammar, the mount dir and the pack of a ploop image."""

    def setUp(self):
        super().setUp()
        self.work = os.path.join(self.root, 'staging', 'ploop-' + IMAGE)
        self.mount = os.path.join(self.root, 'root', 'nova-ploop-' + IMAGE)

    def test_paths_of_an_image(self):
        self.assertEqual(self.work, priv_images.ploop_work_dir(IMAGE))
        self.assertEqual(self.mount, priv_images.ploop_mount_dir(IMAGE))
        for bad in ('../../etc', '', IMAGE + '/..', IMAGE.upper(), 'x' * 36):
            self.assertRaises(REJECTED, priv_images.ploop_work_dir, bad)
            self.assertRaises(REJECTED, priv_images.ploop_mount_dir, bad)

    def test_the_three_calls_of_a_conversion_are_allowed(self):
        for argv in (['restore-descriptor', '-f', 'ploop1', self.work,
                      self.work + '/root.hdd'],
                     ['mount', '-r', '-m', self.mount,
                      self.work + '/DiskDescriptor.xml'],
                     ['umount', '-m', self.mount]):
            priv_tools.validate('ploop', argv)

    def test_anything_else_is_refused(self):
        other = os.path.join(self.root, 'staging',
                             'ploop-' + str(uuid.uuid4()))
        xml = self.work + '/DiskDescriptor.xml'
        for argv in (
                ['list'], ['--version'], ['init', '-s', '1G', self.work],
                ['umount', xml], ['umount', '-d', '/dev/ploop0'],
                ['umount', '-m', '/'], ['umount', '-m', self.mount + '/..'],
                ['umount', '-m', os.path.join(self.root, 'root',
                                              'nova-ploop-x')],
                # read-write, elsewhere, or another image's mount point
                ['mount', '-m', self.mount, xml],
                ['mount', '-r', '-m', '/etc', xml],
                ['mount', '-r', '-m', self.mount,
                 other + '/DiskDescriptor.xml'],
                ['mount', '-r', '-m', self.mount, '/vz/private/101/root.hdd/'
                 'DiskDescriptor.xml'],
                ['mount', '-r', '-m', self.mount, xml, 'more'],
                # other formats, other places, other deltas
                ['restore-descriptor', '-f', 'raw', self.work,
                 self.work + '/root.hdd'],
                ['restore-descriptor', '-f', 'ploop1', '/etc',
                 '/etc/root.hdd'],
                ['restore-descriptor', '-f', 'ploop1', self.work,
                 other + '/root.hdd'],
                ['restore-descriptor', '-f', 'ploop1', self.work + '/.',
                 self.work + '/./root.hdd'],
                ['restore-descriptor', '-f', 'ploop1', self.work,
                 self.work + '/root.hdd\n']):
            self.assertRaises(REJECTED, priv_tools.validate, 'ploop', argv)

    def test_make_pack_and_remove_the_mount_dir(self):
        path = priv_images.make_ploop_mount_dir(IMAGE)
        self.assertEqual((self.mount, 0o700),
                         (path, os.stat(path).st_mode & 0o777))
        os.makedirs(os.path.join(path, 'etc'))
        with open(os.path.join(path, 'etc/hostname'), 'w') as f:
            f.write('from-ploop\n')
        open(os.path.join(path, '.balloon-c3a5ae3d-ce7f-43c4-a1ea-'
                                'c61e2b4504e8'), 'w').close()
        self.assertEqual((0, '', ''), priv_images.pack_ploop_image(IMAGE))
        packed = os.path.join(self.root, 'staging', 'ploop-%s.tar.gz' % IMAGE)
        with tarfile.open(packed) as tar:
            self.assertEqual(['.', './etc', './etc/hostname'],
                             sorted(tar.getnames()))
        self.assertRaises(OSError, priv_images.remove_ploop_mount_dir, IMAGE)
        for name in ('.balloon-c3a5ae3d-ce7f-43c4-a1ea-c61e2b4504e8',
                     'etc/hostname', 'etc'):
            path = os.path.join(self.mount, name)
            (os.rmdir if name == 'etc' else os.unlink)(path)
        priv_images.remove_ploop_mount_dir(IMAGE)
        self.assertFalse(os.path.exists(self.mount))
