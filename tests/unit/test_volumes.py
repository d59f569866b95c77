"""Volumes, ephemeral disks and their privileged parts.

The end-to-end behaviour (inside real containers, through Nova's API) is in
tests/functional/test_volumes.py; these tests pin the parts: the script
lines the privileged side writes, what it refuses, the refusals before a
boot, the connector data and the argv the driver sends.
"""

import os
import stat
import tempfile

import fixtures
import nova.conf
from nova import exception as nova_exception
from nova import objects
from os_brick import privileged as brick_privileged
from oslo_concurrency import processutils
from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import exception
from nova_openvz import hosttools
from nova_openvz import privsep
from nova_openvz.privsep import containers as priv_containers
from nova_openvz.testing import fixtures as sim_fixture
from nova_openvz import volumes

CONF = nova.conf.CONF
CTID = 101


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

    def test_nodes_are_kept_in_the_start_script(self):
        self.assertIsNone(priv_containers.set_volume_node(CTID, 'vdb', 259, 0))
        self.assertIsNone(priv_containers.set_volume_node(CTID, 'vdc', 8, 16))
        text = self.script('start')
        self.assertTrue(text.startswith('#!/bin/sh\n'))
        self.assertIn('rm -f /dev/vdb; mknod -m 0660 /dev/vdb b 259 0\n',
                      text)
        self.assertIn('rm -f /dev/vdc; mknod -m 0660 /dev/vdc b 8 16\n', text)
        self.assertEqual({'vdb': (259, 0), 'vdc': (8, 16)},
                         priv_containers.volume_nodes(CTID))
        mode = os.stat(os.path.join(self.conf_dir, '%d.start' % CTID))
        self.assertTrue(mode.st_mode & stat.S_IXUSR)

    def test_removing_the_last_node_removes_the_script(self):
        priv_containers.set_volume_node(CTID, 'vdb', 259, 0)
        self.assertEqual((259, 0),
                         priv_containers.set_volume_node(CTID, 'vdb'))
        self.assertIsNone(self.script('start'))
        self.assertEqual({}, priv_containers.volume_nodes(CTID))

    def test_other_lines_of_the_script_are_kept(self):
        path = os.path.join(self.conf_dir, '%d.start' % CTID)
        with open(path, 'w') as f:
            f.write('#!/bin/sh\necho operator line\n')
        priv_containers.set_volume_node(CTID, 'vdb', 259, 0)
        priv_containers.set_volume_node(CTID, 'vdb')
        self.assertEqual('#!/bin/sh\necho operator line\n',
                         self.script('start'))

    def test_bad_names_and_numbers_are_refused(self):
        for name, major, minor in (('../etc/passwd', 8, 0), ('vdb;rm', 8, 0),
                                   ('VDB', 8, 0), ('', 8, 0),
                                   ('vdb', 0, 0), ('vdb', 4096, 0),
                                   ('vdb', 8, -1), ('vdb', 8, 2 ** 20),
                                   ('vdb', '8', 0), ('vdb', True, 0)):
            self.assertRaises(privsep.ArgumentRejected,
                              priv_containers.set_volume_node, CTID, name,
                              major, minor)
        self.assertRaises(privsep.ArgumentRejected,
                          priv_containers.set_volume_node, 0, 'vdb', 8, 0)
        self.assertIsNone(self.script('start'))


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
        self.assertIn("umount '%s/mnt'" % root, self.script('umount'))

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

    def test_a_path_that_is_no_block_device_is_refused(self):
        with tempfile.NamedTemporaryFile() as f:
            error = self.assertRaises(exception.VolumeNotABlockDevice,
                                      volumes.block_numbers, f.name)
        self.assertIn('not a block device', error.format_message())


class TestAttachDetachArgv(testtools.TestCase):
    """The host commands attach and detach send, and undo on failure."""

    def setUp(self):
        super().setUp()
        self.calls = []
        self.nodes = {}
        self.fail_on = None

        def vzctl(*argv, ok_codes=(0,)):
            self.calls.append(argv)
            if self.fail_on and self.fail_on in argv:
                raise exception.HostToolError(
                    tool='vzctl', command=argv[0], exit_code=86,
                    detail='Unable to set devices')
            return hosttools.ToolCall('vzctl', argv, 0, '', '', 0.0)

        def set_node(ctid, name, major=None, minor=None):
            previous = self.nodes.pop(name, None)
            if major is not None:
                self.nodes[name] = (major, minor)
            return previous
        self.useFixture(fixtures.MockPatch(
            'nova_openvz.hosttools.vzctl', side_effect=vzctl))
        self.useFixture(fixtures.MockPatch(
            'nova_openvz.privsep.containers.set_volume_node',
            side_effect=set_node))
        self.useFixture(fixtures.MockPatch(
            'nova_openvz.privsep.containers.volume_nodes',
            side_effect=lambda ctid: dict(self.nodes)))
        self.disconnect = self.useFixture(fixtures.MockPatch(
            'nova_openvz.volumes.disconnect')).mock
        self.useFixture(fixtures.MockPatch(
            'nova_openvz.volumes.connect', return_value='/dev/sdz'))
        self.useFixture(fixtures.MockPatch(
            'nova_openvz.volumes.block_numbers', return_value=(65, 160)))
        self.volumes = volumes.ContainerVolumes()

    def test_attach_grants_the_device_and_makes_the_node(self):
        self.volumes.attach(CTID, {'data': {}}, '/dev/vdb')
        self.assertEqual([
            ('set', CTID, '--devices', 'b:65:160:rw', '--save'),
            ('exec2', CTID, 'rm -f /dev/vdb; mknod -m 0660 /dev/vdb b 65 '
                            '160')], self.calls)
        self.assertEqual({'vdb': (65, 160)}, self.nodes)

    def test_a_failed_attach_is_undone(self):
        self.fail_on = '--devices'
        self.assertRaises(exception.HostToolError, self.volumes.attach,
                          CTID, {'data': {}}, '/dev/vdb')
        self.assertEqual({}, self.nodes)
        self.assertEqual(1, self.disconnect.call_count)

    def test_encrypted_volumes_are_refused(self):
        self.assertRaises(nova_exception.VolumeEncryptionNotSupported,
                          self.volumes.attach, CTID, {'data': {}},
                          '/dev/vdb', encryption={'provider': 'luks'})
        self.assertEqual([], self.calls)

    def test_detach_removes_node_access_and_line(self):
        self.nodes['vdb'] = (65, 160)
        self.volumes.detach(CTID, {'data': {}}, '/dev/vdb')
        self.assertEqual([
            ('exec2', CTID, 'cat /proc/self/mountinfo'),
            ('exec2', CTID, 'rm -f /dev/vdb'),
            ('set', CTID, '--devices', 'b:65:160:none', '--save')],
            self.calls)
        self.assertEqual({}, self.nodes)
        self.assertEqual(1, self.disconnect.call_count)
