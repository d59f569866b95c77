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

"""The config drive: its files and the mount scripts that show them.

``configdrive.build`` needs an ``InstanceMetadata`` (a full Nova instance
and its network and DB lookups); it is left to the functional tests.  Here
``configdrive._write`` (each file Nova's metadata gives) and
``configdrive.remove`` are tested, and the privileged side that writes the
container's mount action scripts.
"""

import os
import shutil
import uuid

import fixtures
from nova import objects
from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import conf as openvz_conf
from nova_openvz import configdrive
from nova_openvz import container
from nova_openvz import privsep
from nova_openvz.privsep import containers as priv_containers
from nova_openvz.testing import fixtures as sim_fixture

CONF = openvz_conf.CONF
CTID = 101
REJECTED = privsep.ArgumentRejected


class _OnSimulatedHost(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(sim_fixture.SimulatedHostFixture())
        self.useFixture(sim_fixture.InProcessPrivsep())
        self.instances = self.useFixture(fixtures.TempDir()).path
        self.useFixture(config_fixture.Config(CONF)).config(
            instances_path=self.instances)
        self.conf_dir = os.path.join(self.host.root, 'etc/vz/conf')
        self.ve_root = os.path.join(self.host.root, 'vz/custom-root/%d'
                                    % CTID)
        # The container's own VE_ROOT, as vzctl create writes it, differs
        # from vz.conf's default (vz/root/$VEID).
        # Named as the driver names its own: the helper serves no other.
        self.uuid = str(uuid.uuid4())
        with open(os.path.join(self.conf_dir, '%d.conf' % CTID), 'w') as f:
            f.write('VE_ROOT="%s/vz/custom-root/$VEID"\n' % self.host.root)
            f.write('NAME="%s"\nDESCRIPTION="nova-instance=%s"\n'
                    % (self.uuid, self.uuid))
        self.source = os.path.join(self.instances, self.uuid, 'config-drive')
        os.makedirs(self.source)

    def script(self, suffix, ctid=CTID):
        path = os.path.join(self.conf_dir, '%d.%s' % (ctid, suffix))
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return f.read()

    def write_script(self, suffix, text):
        with open(os.path.join(self.conf_dir, '%d.%s' % (CTID, suffix)),
                  'w') as f:
            f.write(text)


class TestConfigDriveScripts(_OnSimulatedHost):

    def test_mount_and_umount_scripts_bind_the_drive_read_only(self):
        priv_containers.install_config_drive(CTID, self.source)
        target = os.path.join(self.ve_root, 'config-drive')
        mount = self.script('mount')
        self.assertTrue(mount.startswith('#!/bin/sh\n'))
        self.assertIn("[ -L '%s' ] && " % target, mount)
        copy = priv_containers.config_drive_dir(CTID)
        self.assertEqual(os.path.join(self.host.root, 'vz/root',
                                      'nova-config-drive-%d' % CTID), copy)
        self.assertIn("mkdir -p '%s' && mount -n --bind '%s' '%s' && "
                      "mount -n -o remount,bind,ro '%s' || exit 1\n"
                      % (target, copy, target, target), mount)
        self.assertIn("umount -n '%s' || exit 1" % target,
                      self.script('umount'))
        for suffix in ('mount', 'umount'):
            mode = os.stat(os.path.join(self.conf_dir, '%d.%s'
                                        % (CTID, suffix))).st_mode
            self.assertEqual(0o755, mode & 0o777)
        self.assertIsNone(self.script('mount', ctid=102))

    def test_a_rescue_container_s_drive_is_taken_and_no_other_name(self):
        rescue = self.source + '.rescue'
        os.makedirs(rescue)
        with open(os.path.join(rescue, 'marker'), 'w') as f:
            f.write('rescue')
        priv_containers.install_config_drive(CTID, rescue)
        with open(os.path.join(priv_containers.config_drive_dir(CTID),
                               'marker')) as f:
            self.assertEqual('rescue', f.read())
        other = os.path.join(os.path.dirname(self.source), 'disk')
        os.makedirs(other)
        self.assertRaises(REJECTED, priv_containers.install_config_drive,
                          CTID, other)

    def test_without_a_container_ve_root_the_host_default_is_used(self):
        os.unlink(os.path.join(self.conf_dir, '%d.conf' % CTID))
        priv_containers.install_config_drive(CTID, self.source)
        self.assertIn(" '%s/vz/root/%d/config-drive' " % (self.host.root,
                                                          CTID),
                      self.script('mount'))

    def test_writing_again_replaces_the_lines(self):
        priv_containers.install_config_drive(CTID, self.source)
        first = self.script('mount')
        priv_containers.install_config_drive(CTID, self.source)
        self.assertEqual(first, self.script('mount'))
        self.assertEqual(1, first.count('mount -n --bind'))

    def test_lines_of_other_owners_are_kept(self):
        self.write_script('mount', '#!/bin/sh\necho operator line\n')
        priv_containers._write_managed(
            os.path.join(self.conf_dir, '%d.umount' % CTID),
            'ephemeral', ['echo ephemeral line'])
        priv_containers.install_config_drive(CTID, self.source)
        mount, umount = self.script('mount'), self.script('umount')
        self.assertTrue(mount.startswith('#!/bin/sh\necho operator line\n'))
        self.assertIn('mount -n --bind', mount)
        self.assertIn('echo ephemeral line\n', umount)
        self.assertIn('umount -n', umount)

    def test_sources_other_than_a_drive_directory_are_refused(self):
        outside = os.path.join(self.host.root, 'outside')
        os.makedirs(outside)
        link = os.path.join(self.instances, 'link')
        os.symlink(outside, link)
        inner_link = os.path.join(self.instances, 'inner-link')
        os.symlink(self.source, inner_link)
        a_file = os.path.join(self.instances, 'file')
        open(a_file, 'w').close()
        for source in (outside, link, inner_link, a_file,
                       os.path.join(self.instances, 'missing'),
                       os.path.relpath(self.source),
                       'config-drive',
                       os.path.join(self.source, '..', '..', '..',
                                    os.path.basename(outside)),
                       os.path.join(self.source, '..', 'config-drive'),
                       self.source + "'; reboot; '",
                       self.source + '\n', '/', '', None):
            self.assertRaises(REJECTED,
                              priv_containers.install_config_drive,
                              CTID, source)
        self.assertIsNone(self.script('mount'))
        self.assertIsNone(self.script('umount'))

    def test_the_guest_sees_a_root_owned_read_only_copy(self):
        os.makedirs(os.path.join(self.source, 'openstack', 'latest'))
        meta = os.path.join(self.source, 'openstack', 'latest',
                            'meta_data.json')
        with open(meta, 'w') as f:
            f.write('{"admin_pass": "secret"}')
        os.chown(meta, 4242, 4242)   # nova-compute's uid
        priv_containers.install_config_drive(CTID, self.source)
        copy = priv_containers.config_drive_dir(CTID)
        copied = os.path.join(copy, 'openstack', 'latest', 'meta_data.json')
        with open(copied) as f:
            self.assertEqual('{"admin_pass": "secret"}', f.read())
        for path, mode in ((copy, 0o500), (copied, 0o400),
                           (os.path.dirname(copied), 0o500)):
            info = os.lstat(path)
            self.assertEqual((0, 0, mode),
                             (info.st_uid, info.st_gid, info.st_mode & 0o777))
        # Swapped for a link afterwards: the copy stays what was checked.
        shutil.rmtree(self.source)
        os.symlink(os.path.join(self.host.root, 'etc'), self.source)
        with open(copied) as f:
            self.assertEqual('{"admin_pass": "secret"}', f.read())
        priv_containers.remove_config_drive(CTID)
        self.assertFalse(os.path.exists(copy))

    def test_links_anywhere_in_the_drive_are_refused(self):
        secret = os.path.join(self.host.root, 'secret')
        with open(secret, 'w') as f:
            f.write('host secret')
        os.symlink(secret, os.path.join(self.source, 'user_data'))
        self.assertRaises(REJECTED, priv_containers.install_config_drive,
                          CTID, self.source)
        os.unlink(os.path.join(self.source, 'user_data'))
        os.link(secret, os.path.join(self.source, 'hard'))
        # A hard link is a file nova-compute could read anyway; a link to
        # a directory or a swapped instance directory is refused.
        os.unlink(os.path.join(self.source, 'hard'))
        os.symlink(self.host.root, os.path.join(self.source, 'dir'))
        self.assertRaises(REJECTED, priv_containers.install_config_drive,
                          CTID, self.source)
        os.unlink(os.path.join(self.source, 'dir'))
        instance_dir = os.path.dirname(self.source)
        os.rename(instance_dir, instance_dir + '.real')
        os.symlink(instance_dir + '.real', instance_dir)
        self.assertRaises(REJECTED, priv_containers.install_config_drive,
                          CTID, self.source)
        self.assertFalse(os.path.exists(
            priv_containers.config_drive_dir(CTID)))
        self.assertIsNone(self.script('mount'))

    def test_reserved_container_ids_are_refused(self):
        for ctid in (0, 100, -101):
            self.assertRaises((REJECTED, ValueError),
                              priv_containers.install_config_drive, ctid,
                              self.source)
        self.assertEqual([], [n for n in os.listdir(self.conf_dir)
                              if n.endswith('mount')])


class TestAttachAndRemove(_OnSimulatedHost):

    def instance(self):
        objects.register_all()
        return objects.Instance(uuid=self.uuid)

    def test_directory_is_under_instances_path(self):
        self.assertEqual(self.source,
                         configdrive.directory(self.instance()))

    def test_attach_then_remove(self):
        container.Container(CTID).show_config_drive(self.source)
        self.assertIn(priv_containers.config_drive_dir(CTID),
                      self.script('mount'))
        with open(os.path.join(self.source, 'file'), 'w') as f:
            f.write('x')
        configdrive.remove(self.instance())
        self.assertFalse(os.path.exists(self.source))
        # The instance's directory went too, being empty.
        self.assertFalse(os.path.exists(os.path.dirname(self.source)))

    def test_remove_keeps_other_files_of_the_instance(self):
        other = os.path.join(self.instances, self.uuid, 'console.log')
        open(other, 'w').close()
        configdrive.remove(self.instance())
        self.assertFalse(os.path.exists(self.source))
        self.assertTrue(os.path.exists(other))

    def test_remove_of_nothing_is_fine(self):
        configdrive.remove(objects.Instance(uuid=str(uuid.uuid4())))


class TestWrite(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.base = self.useFixture(fixtures.TempDir()).path

    def read(self, path):
        with open(os.path.join(self.base, path), 'rb') as f:
            return f.read()

    def test_text_and_bytes_are_written(self):
        configdrive._write(self.base, 'openstack/latest/meta_data.json',
                           '{"name": "caf\u00e9"}')
        configdrive._write(self.base, 'openstack/content/0000', b'\x00\xff')
        self.assertEqual('{"name": "caf\u00e9"}'.encode('utf-8'),
                         self.read('openstack/latest/meta_data.json'))
        self.assertEqual(b'\x00\xff', self.read('openstack/content/0000'))

    def test_paths_leaving_the_directory_are_refused(self):
        outside = os.path.dirname(self.base)
        for path in ('../escape', 'openstack/../../escape',
                     os.path.join(outside, 'escape')):
            self.assertRaises(ValueError, configdrive._write, self.base,
                              path, 'x')
        self.assertFalse(os.path.exists(os.path.join(outside, 'escape')))
        self.assertEqual([], os.listdir(self.base))

    def test_a_sibling_with_a_common_prefix_is_outside(self):
        sibling = os.path.basename(self.base) + '-other/x'
        self.assertRaises(ValueError, configdrive._write, self.base,
                          '../' + sibling, 'x')
