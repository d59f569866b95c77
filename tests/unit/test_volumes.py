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

"""Volumes, ephemeral disks and their privileged parts.

The end-to-end behaviour (inside real containers, through Nova's API) is in
tests/functional/test_volumes.py; these tests pin the parts: the script
lines the privileged side writes, what it refuses, the refusals before a
boot, the connector data and the argv the driver sends.
"""

import errno
import os
import stat

import fixtures
import nova.conf
from nova import exception as nova_exception
from nova import objects
from os_brick import privileged as brick_privileged
from oslo_concurrency import processutils
from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import container
from nova_openvz import exception
from nova_openvz import guestscripts
from nova_openvz import hosttools
from nova_openvz import privsep
from nova_openvz.privsep import containers as priv_containers
from nova_openvz.privsep import tools as priv_tools
from nova_openvz.testing import fixtures as sim_fixture
from nova_openvz import volumes

CONF = nova.conf.CONF
CTID = 101
#: The real probe, which TestVolumeDevice replaces for the others.
_CLAIMED = priv_containers._claimed


class _OnSimulatedHost(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(sim_fixture.SimulatedHostFixture())
        self.useFixture(sim_fixture.InProcessPrivsep())
        self.conf_dir = os.path.join(self.host.root, 'etc/vz/conf')

    def script(self, suffix):
        path = os.path.join(self.conf_dir, '%d.%s' % (CTID, suffix))
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return f.read()


class TestVolumeNodes(_OnSimulatedHost):

    def setUp(self):
        super().setUp()
        # Host devices by path; the checks on them are TestVolumeDevice's.
        self.devices = {'/dev/sdb': (259, 0), '/dev/sdc': (8, 16)}
        self.useFixture(fixtures.MockPatchObject(
            priv_containers, '_check_volume_device',
            side_effect=lambda ctid, path: self.devices[path]))

    def test_nodes_are_kept_in_the_start_script(self):
        self.assertEqual(((259, 0), None), priv_containers.grant_volume(
            CTID, 'vdb', '/dev/sdb'))
        self.assertEqual(((8, 16), None), priv_containers.grant_volume(
            CTID, 'vdc', '/dev/sdc'))
        text = self.script('start')
        self.assertTrue(text.startswith('#!/bin/sh\n'))
        self.assertIn('rm -f /dev/vdb; mknod -m 0660 /dev/vdb b 259 0\n',
                      text)
        self.assertIn('rm -f /dev/vdc; mknod -m 0660 /dev/vdc b 8 16\n', text)
        self.assertEqual({'vdb': (259, 0), 'vdc': (8, 16)},
                         priv_containers.volume_nodes(CTID))
        self.assertEqual({(259, 0), (8, 16)},
                         priv_containers.granted_devices(CTID))
        mode = os.stat(os.path.join(self.conf_dir, '%d.start' % CTID))
        self.assertTrue(mode.st_mode & stat.S_IXUSR)

    def test_removing_the_last_node_removes_the_script(self):
        priv_containers.grant_volume(CTID, 'vdb', '/dev/sdb')
        self.assertEqual((259, 0),
                         priv_containers.revoke_volume(CTID, 'vdb'))
        self.assertIsNone(self.script('start'))
        self.assertEqual({}, priv_containers.volume_nodes(CTID))

    def test_other_lines_of_the_script_are_kept(self):
        path = os.path.join(self.conf_dir, '%d.start' % CTID)
        with open(path, 'w') as f:
            f.write('#!/bin/sh\necho operator line\n')
        priv_containers.grant_volume(CTID, 'vdb', '/dev/sdb')
        priv_containers.revoke_volume(CTID, 'vdb')
        self.assertEqual('#!/bin/sh\necho operator line\n',
                         self.script('start'))

    def test_bad_names_and_numbers_are_refused(self):
        for name in ('../etc/passwd', 'vdb;rm', 'VDB', '', None):
            self.assertRaises(privsep.ArgumentRejected,
                              priv_containers.grant_volume, CTID, name,
                              '/dev/sdb')
        for major, minor in ((0, 0), (4096, 0), (8, -1), (8, 2 ** 20),
                             ('8', 0), (True, 0)):
            self.assertRaises(privsep.ArgumentRejected,
                              priv_containers.check_device_node, 'vdb',
                              major, minor)
        self.assertRaises(privsep.ArgumentRejected,
                          priv_containers.grant_volume, 0, 'vdb', '/dev/sdb')
        self.assertIsNone(self.script('start'))


class TestVolumeDevice(_OnSimulatedHost):
    """Which host devices the helper lets a container have."""

    DEVICE = '/dev/loop0'

    def setUp(self):
        super().setUp()
        try:
            info = os.stat(self.DEVICE)
        except OSError:
            self.skipTest('needs %s' % self.DEVICE)
        self.number = (os.major(info.st_rdev), os.minor(info.st_rdev))
        # The host's view, as /proc and /sys would give it.
        self.partitions = {'loop0': self.number,
                           'loop0p1': (259, 40), 'vda': (254, 0)}
        self.in_use = {(254, 0)}
        self.held = set()
        self.claimed = False
        for name, fake in (
                ('_block_devices', lambda: dict(self.partitions)),
                ('_devices_in_use', lambda: set(self.in_use)),
                ('_held', lambda device: device in self.held),
                ('_claimed', lambda path: self.claimed)):
            self.useFixture(fixtures.MockPatchObject(
                priv_containers, name, side_effect=fake))

    def check(self, path, ctid=CTID):
        return priv_containers._check_volume_device(ctid, path)

    def refused(self, path, reason):
        error = self.assertRaises(privsep.ArgumentRejected, self.check, path)
        self.assertIn(reason, str(error))

    def test_a_spare_block_device_is_taken_by_its_own_numbers(self):
        self.assertEqual(self.number, self.check(self.DEVICE))

    def test_paths_that_are_no_block_device_are_refused(self):
        self.refused('/etc/passwd', 'not a device path')
        self.refused('/dev/null', 'not a block device')
        self.refused('/dev/../etc/passwd', 'not a block device')
        self.refused('/dev/nonexistent', 'No such file')
        self.refused(None, 'not a device path')

    def test_a_device_the_host_uses_is_refused(self):
        for in_use in (self.number, (259, 40)):   # itself, or a partition
            self.in_use = {in_use}
            self.refused(self.DEVICE, 'in use on the host')
        self.in_use = set()
        self.held = {(259, 40)}                    # an LVM PV, an md member
        self.refused(self.DEVICE, 'in use on the host')
        self.held = set()
        self.claimed = True                        # a target's backstore
        self.refused(self.DEVICE, 'in use on the host')

    def test_an_exclusive_open_tells_a_claimed_device(self):
        self.useFixture(fixtures.MockPatchObject(
            os, 'open', side_effect=OSError(errno.EBUSY, 'busy')))
        self.assertTrue(_CLAIMED(self.DEVICE))

    def test_a_device_of_another_container_is_refused(self):
        with open(os.path.join(self.conf_dir, '102.start'), 'w') as f:
            f.write(priv_containers._MANAGED % ('BEGIN', 'volumes') + '\n' +
                    priv_containers._NODE_LINE % {
                        'name': 'vdb', 'major': self.number[0],
                        'minor': self.number[1]} + '\n' +
                    priv_containers._MANAGED % ('END', 'volumes') + '\n')
        self.refused(self.DEVICE, 'is a volume of container 102')
        self.assertEqual(self.number, self.check(self.DEVICE, ctid=102))

    def test_only_a_recorded_device_may_be_granted(self):
        argv = ['set', str(CTID), '--save', '--devices',
                'b:%d:%d:rw' % self.number]
        self.assertRaises(privsep.ArgumentRejected, priv_tools.validate,
                          'vzctl', argv)
        priv_containers.grant_volume(CTID, 'vdb', self.DEVICE)
        priv_tools.validate('vzctl', argv)
        # Taking access back needs no record.
        priv_tools.validate('vzctl', ['set', str(CTID), '--save',
                                      '--devices', 'b:8:0:none'])


class TestEphemeralDisk(_OnSimulatedHost):

    def setUp(self):
        super().setUp()
        self.private = os.path.join(self.host.root, 'vz/private/%d' % CTID)
        os.makedirs(self.private)

    def test_image_and_mount_scripts(self):
        if not os.path.exists('/sbin/mkfs.ext4') and \
                not os.path.exists('/usr/sbin/mkfs.ext4'):
            self.skipTest('needs mkfs.ext4')
        priv_containers.make_ephemeral_disk(CTID, 1, 'ext4', '/mnt')
        image = os.path.join(self.private, priv_containers.EPHEMERAL_IMAGE)
        self.assertEqual(1024 ** 3, os.path.getsize(image))
        # Sparse: mkfs wrote metadata only.
        self.assertLess(os.stat(image).st_blocks * 512, 200 * 1024 ** 2)
        root = os.path.join(self.host.root, 'vz/root/%d' % CTID)
        self.assertIn("mount -o loop,nodev,nosuid '%s' '%s/mnt'"
                      % (image, root), self.script('mount'))
        self.assertIn("umount -n '%s/mnt'" % root, self.script('umount'))

    def test_a_failed_mkfs_leaves_nothing(self):
        self.useFixture(fixtures.EnvironmentVariable('PATH', '/nonexistent'))
        self.assertRaises((OSError, processutils.ProcessExecutionError),
                          priv_containers.make_ephemeral_disk, CTID, 1, 'ext4',
                          '/mnt')
        self.assertEqual([], os.listdir(self.private))
        self.assertIsNone(self.script('mount'))
        self.assertIsNone(self.script('umount'))

    def test_bad_arguments_are_refused(self):
        for args in ((0, 'ext4', '/mnt'), (1, 'vfat', '/mnt'),
                     (1, 'ext4', 'mnt'), (1, 'ext4', '/mnt/../etc'),
                     (1, 'ext4', "/mnt'x"), ('1', 'ext4', '/mnt')):
            self.assertRaises(privsep.ArgumentRejected,
                              priv_containers.make_ephemeral_disk, CTID, *args)
        self.assertEqual([], os.listdir(self.private))


def _instance(image_ref='image', ephemeral_gb=0, swap=0):
    objects.register_all()
    flavor = objects.Flavor(memory_mb=512, vcpus=1, root_gb=1, swap=swap,
                            ephemeral_gb=ephemeral_gb, extra_specs={})
    return objects.Instance(image_ref=image_ref, flavor=flavor)


def _bdi(mapping=(), ephemerals=(), swap=None, root='/dev/vda'):
    return {'root_device_name': root, 'block_device_mapping': list(mapping),
            'ephemerals': list(ephemerals), 'swap': swap}


class TestBootChecks(testtools.TestCase):

    def test_data_volumes_pass(self):
        volumes.check_boot(_instance(), _bdi([
            {'mount_device': '/dev/vdb', 'boot_index': None,
             'connection_info': {}}]))

    def test_root_on_a_volume_is_refused(self):
        for bdi in (_bdi([{'mount_device': '/dev/vda', 'boot_index': 0}]),
                    _bdi([{'mount_device': '/dev/vdb', 'boot_index': 0}])):
            error = self.assertRaises(exception.BootFromVolumeNotSupported,
                                      volumes.check_boot, _instance(), bdi)
            self.assertIn('cannot live on a Cinder volume',
                          error.format_message())
        # Nova aborts the build (no reschedule) on InvalidInput.
        self.assertTrue(issubclass(exception.BootFromVolumeNotSupported,
                                   nova_exception.InvalidInput))

    def test_two_ephemeral_disks_are_refused(self):
        self.assertRaises(exception.EphemeralNotSupported,
                          volumes.check_boot, _instance(), _bdi(
                              ephemerals=[{'size': 1}, {'size': 1}]))

    def test_sizes_come_from_the_mapping_else_the_flavor(self):
        instance = _instance(ephemeral_gb=4, swap=256)
        self.assertEqual(4, volumes.ephemeral_gb(instance, _bdi()))
        self.assertEqual(2, volumes.ephemeral_gb(
            instance, _bdi(ephemerals=[{'size': 2}])))
        self.assertEqual(256, volumes.swap_mb(instance, _bdi()))
        self.assertEqual(128, volumes.swap_mb(
            instance, _bdi(swap={'swap_size': 128})))

    def test_device_names(self):
        self.assertEqual('vdb', volumes.device_name('/dev/vdb'))
        for bad in ('/dev/../vdb', '/dev/', None, '/dev/vd b'):
            self.assertRaises(nova_exception.InvalidInput,
                              volumes.device_name, bad)


class TestConnector(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.flags = self.useFixture(config_fixture.Config(CONF)).config

    def test_the_connector_is_os_bricks_for_this_host(self):
        # os-brick's privileged calls in this process (as root, like its
        # daemon); its NVMe part would write a host NQN into this machine's
        # /etc/nvme, which a test must not do.
        if os.geteuid() != 0:
            self.skipTest('os-brick probes the host as root')
        self.useFixture(fixtures.MockPatchObject(
            brick_privileged.default, 'client_mode', False))
        self.useFixture(fixtures.MockPatch(
            'os_brick.privileged.nvmeof.create_hostnqn', return_value=''))
        self.useFixture(fixtures.MockPatch(
            'os_brick.privileged.nvmeof.create_hostid', return_value=None))
        self.flags(host='compute-7', my_block_storage_ip='192.0.2.9')
        props = volumes.connector_properties()
        self.assertEqual('compute-7', props['host'])
        self.assertEqual('192.0.2.9', props['ip'])
        self.assertFalse(props['multipath'])
        self.assertIn('platform', props)

    def test_unknown_volume_types_are_refused(self):
        self.assertRaises(nova_exception.VolumeDriverNotFound,
                          volumes.connect, {'driver_volume_type': 'fake',
                                            'data': {}})

    def test_a_refused_device_is_a_volume_error(self):
        self.useFixture(fixtures.MockPatchObject(
            priv_containers, 'grant_volume',
            side_effect=privsep.ArgumentRejected('/x is not a device path')))
        error = self.assertRaises(exception.VolumeNotABlockDevice,
                                  container.Container(CTID).keep_volume,
                                  'vdb', '/x')
        self.assertIn('not a device path', error.format_message())


class TestAttachDetachArgv(testtools.TestCase):
    """The host commands attach and detach send, and undo on failure."""

    def setUp(self):
        super().setUp()
        self.calls = []
        self.nodes = {}
        self.fail_on = None

        def run(tool, *argv, ok_codes=(0,), stdin=None):
            self.calls.append((argv, stdin))
            if self.fail_on and self.fail_on in argv:
                raise exception.HostToolError(
                    tool='vzctl', command=argv[0], exit_code=86,
                    detail='Unable to set devices')
            return hosttools.ToolCall('vzctl', argv, 0, '', '', 0.0)

        def grant(ctid, name, path):
            previous = self.nodes.get(name)
            self.nodes[name] = (65, 160)
            return (65, 160), previous

        def revoke(ctid, name):
            return self.nodes.pop(name, None)
        self.useFixture(fixtures.MockPatch(
            'nova_openvz.hosttools.run', side_effect=run))
        self.useFixture(fixtures.MockPatch(
            'nova_openvz.privsep.containers.grant_volume',
            side_effect=grant))
        self.useFixture(fixtures.MockPatch(
            'nova_openvz.privsep.containers.revoke_volume',
            side_effect=revoke))
        self.useFixture(fixtures.MockPatch(
            'nova_openvz.privsep.containers.volume_nodes',
            side_effect=lambda ctid: dict(self.nodes)))
        self.disconnect = self.useFixture(fixtures.MockPatch(
            'nova_openvz.volumes.disconnect')).mock
        self.useFixture(fixtures.MockPatch(
            'nova_openvz.volumes.connect', return_value='/dev/sdz'))
        self.volumes = volumes.ContainerVolumes()
        self.container = container.Container(CTID)

    def test_attach_grants_the_device_and_makes_the_node(self):
        self.volumes.attach(self.container, {'data': {}}, '/dev/vdb')
        self.assertEqual([
            (('set', '101', '--save', '--devices', 'b:65:160:rw'), None),
            (('exec2', '101', '-'),
             guestscripts.make_node_script('vdb', 65, 160))], self.calls)
        self.assertEqual('rm -f /dev/vdb; mknod -m 0660 /dev/vdb b 65 160\n',
                         self.calls[1][1])
        self.assertEqual({'vdb': (65, 160)}, self.nodes)

    def test_a_failed_attach_is_undone(self):
        self.fail_on = '--devices'
        self.assertRaises(exception.HostToolError, self.volumes.attach,
                          self.container, {'data': {}}, '/dev/vdb')
        self.assertEqual({}, self.nodes)
        self.assertEqual(1, self.disconnect.call_count)

    def test_encrypted_volumes_are_refused(self):
        self.assertRaises(nova_exception.VolumeEncryptionNotSupported,
                          self.volumes.attach, self.container, {'data': {}},
                          '/dev/vdb', encryption={'provider': 'luks'})
        self.assertEqual([], self.calls)

    def test_detach_removes_node_access_and_line(self):
        self.nodes['vdb'] = (65, 160)
        self.volumes.detach(self.container, {'data': {}}, '/dev/vdb')
        self.assertEqual([
            (('exec2', '101', '-'), guestscripts.MOUNTINFO_SCRIPT),
            (('exec2', '101', '-'), guestscripts.remove_node_script('vdb')),
            (('set', '101', '--save', '--devices', 'b:65:160:none'), None)],
            self.calls)
        self.assertEqual({}, self.nodes)
        self.assertEqual(1, self.disconnect.call_count)

    def test_a_failed_revoke_gives_the_guest_its_node_back(self):
        # Nova still shows the volume attached: the guest keeps its node,
        # the container its access, and the volume stays connected.
        self.nodes['vdb'] = (65, 160)
        self.fail_on = 'b:65:160:none'
        self.assertRaises(exception.HostToolError, self.volumes.detach,
                          self.container, {'data': {}}, '/dev/vdb')
        self.assertEqual((('exec2', '101', '-'),
                          guestscripts.make_node_script('vdb', 65, 160)),
                         self.calls[-1])
        self.assertEqual({'vdb': (65, 160)}, self.nodes)
        self.assertEqual(0, self.disconnect.call_count)
