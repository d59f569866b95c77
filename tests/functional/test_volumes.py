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

"""Volumes, ephemeral disk, swap and disk QoS through Nova's API.

Checked from inside real containers on the simulated host's real kernel
backend.  A partition of a loop device stands in for the Cinder target,
connected through os-brick's local connector: vzctl refuses loop devices
themselves (major 7), and this kernel has no device-mapper, but a loop
partition is a block device of another major (259, blkext) that can grow
online like an extended Cinder volume.
"""

import os
import shutil
import subprocess
import time

import fixtures
from nova.tests.fixtures import os_brick as nova_os_brick
from nova.tests.functional.api import client as api_client
from os_brick import privileged as brick_privileged
from oslo_utils import uuidutils

from nova_openvz.privsep import vzconf
from nova_openvz.testing import allinone

GiB = 1024 ** 3
SECTOR = 512
#: Where the stand-in volume's partition starts, in sectors.
PART_START = 2048
HOST_TOOLS = ('losetup', 'addpart', 'delpart', 'resizepart', 'mkfs.ext4')


def _host(*argv):
    return subprocess.run(argv, check=True, capture_output=True,
                          text=True).stdout.strip()


class LoopVolume(fixtures.Fixture):
    """A sparse file, its loop device and one partition on it."""

    def __init__(self, directory, size):
        super().__init__()
        self.directory = directory
        self.size = size

    def _setUp(self):
        self.image = os.path.join(self.directory,
                                  '%s.img' % uuidutils.generate_uuid())
        with open(self.image, 'wb') as f:
            f.truncate(PART_START * SECTOR + self.size)
        for attempt in range(5):
            self.loop = _host('losetup', '--find', '--show', self.image)
            # A loop device freed while another test's partition on it was
            # still open can keep that partition: drop it, or take another.
            subprocess.run(['delpart', self.loop, '1'], capture_output=True)
            try:
                _host('addpart', self.loop, '1', str(PART_START),
                      str(self.size // SECTOR))
                break
            except subprocess.CalledProcessError:
                subprocess.run(['losetup', '--detach', self.loop],
                               capture_output=True)
                if attempt == 4:
                    raise
        self.addCleanup(self._detach)
        self.path = self.loop + 'p1'
        for _ in range(50):   # udev-less hosts: devtmpfs makes the node
            if os.path.exists(self.path):
                break
            time.sleep(0.1)
        _host('mkfs.ext4', '-q', '-F', self.path)

    def grow(self, size):
        """What Cinder's backend does when the volume is extended."""
        os.truncate(self.image, PART_START * SECTOR + size)
        _host('losetup', '--set-capacity', self.loop)
        _host('resizepart', self.loop, '1', str(size // SECTOR))
        self.size = size

    def _detach(self):
        subprocess.run(['delpart', self.loop, '1'], capture_output=True)
        # A device still open somewhere is freed when its user closes it.
        subprocess.run(['losetup', '--detach', self.loop], capture_output=True)


class _RealBackendTestCase(allinone.OpenVZCloudTestCase):

    def setUp(self):
        super().setUp()
        if self.kernel_backend != 'real':
            self.skipTest('needs the real kernel backend (root and the '
                          'kernel features realkernel.probe checks); this '
                          'host runs the %s one' % self.kernel_backend)
        missing = [t for t in HOST_TOOLS if not shutil.which(t)]
        if missing:
            self.skipTest('needs %s on this machine' % ', '.join(missing))
        # os-brick's privileged calls run in this (root) process, as the
        # driver's do.  Nova's harness forbids probing the machine's /sys
        # for initiators, so the connector properties are Nova's own fake
        # (tests/unit/test_volumes.py calls the real ones); connecting,
        # extending and disconnecting stay os-brick's real local connector.
        self.useFixture(fixtures.MockPatchObject(
            brick_privileged.default, 'client_mode', False))
        self.useFixture(fixtures.MonkeyPatch(
            'os_brick.initiator.connector.get_connector_properties',
            nova_os_brick.get_connector_properties))

    def inside(self, server, command, expect=0):
        """Run a shell command in the server's container; its stdout."""
        ctid = self.container(server)['ctid']
        code, out, err = self.vzhost.run('vzctl', 'exec2', ctid, command)
        self.assertEqual(expect, code, 'inside CT %s: %r: %s%s'
                         % (ctid, command, out, err))
        return out.strip()

    def config(self, server):
        return vzconf.read(os.path.join(
            self.vzhost.root, 'etc/vz/conf/%d.conf'
            % self.container(server)['ctid']))


class _VolumeTestCase(_RealBackendTestCase):
    """Cinder volumes backed by loop partitions, and their checks."""

    def setUp(self):
        super().setUp()
        self.volume_dir = self.useFixture(fixtures.TempDir()).path
        # An instance copy: the fixture's table is a class attribute.
        self.cinder.VOLUME_CONNECTION_INFO = dict(
            self.cinder.VOLUME_CONNECTION_INFO)

    def volume(self, size=GiB):
        """A new Cinder volume backed by a loop partition."""
        backing = self.useFixture(LoopVolume(self.volume_dir, size))
        volume_id = uuidutils.generate_uuid()
        self.cinder.VOLUME_CONNECTION_INFO[volume_id] = {
            'driver_volume_type': 'local',
            'data': {'device_path': backing.path}}
        return volume_id, backing

    def server_with_volume(self, name, image_id, volume_id, **kwargs):
        """A server body booting ``image_id`` with the volume attached."""
        body = self._build_server(name=name, image_uuid=image_id,
                                  networks='none', **kwargs)
        body['block_device_mapping_v2'] = [{
            'source_type': 'image', 'destination_type': 'local',
            'uuid': image_id, 'boot_index': 0,
            'delete_on_termination': True}, {
            'source_type': 'volume', 'destination_type': 'volume',
            'uuid': volume_id, 'boot_index': -1}]
        return body

    def attach(self, server, volume_id):
        self._attach_volume(server, volume_id)
        return self.api.get_server_volume(server['id'], volume_id)['device']

    def detach(self, server, volume_id):
        self.api.delete_server_volume(server['id'], volume_id)
        self._wait_for_volume_detach(server['id'], volume_id)

    def write_file(self, server, device, text):
        self.inside(server, 'mkdir -p /data && mount %s /data && '
                            'echo %s > /data/kept && umount /data'
                    % (device, text))

    def read_file(self, server, device):
        return self.inside(server, 'mkdir -p /data && mount -o ro %s /data '
                                   '&& cat /data/kept; code=$?; umount /data;'
                                   ' exit $code' % device)


class TestVolumes(_VolumeTestCase):

    def test_a_volume_is_kept_across_reboots_and_moves_to_another_server(self):
        first = self.boot(name='first')
        second = self.boot(name='second')
        volume_id, backing = self.volume()
        device = self.attach(first, volume_id)
        self.assertEqual('/dev/vdb', device)
        self.assertEqual(str(GiB),
                         self.inside(first, 'blockdev --getsize64 /dev/vdb'))
        self.write_file(first, device, 'written-in-first')
        for hard in (False, True):
            self._reboot_server(first, hard=hard)
            self.assertEqual('written-in-first',
                             self.read_file(first, device))

        self.detach(first, volume_id)
        self.inside(first, 'test ! -e /dev/vdb')
        self.assertEqual('', self.config(first).get('DEVICES', ''))
        start_script = os.path.join(
            self.vzhost.root, 'etc/vz/conf/%d.start'
            % self.container(first)['ctid'])
        self.assertFalse(os.path.exists(start_script))

        self.assertEqual('/dev/vdb', self.attach(second, volume_id))
        self.assertEqual('written-in-first', self.read_file(second, device))
        self.write_file(second, device, 'written-in-second')
        self.assertEqual('written-in-second', self.read_file(second, device))

    def test_a_volume_attached_while_stopped_is_there_at_start(self):
        server = self._stop_server(self.boot())
        volume_id, backing = self.volume()
        device = self.attach(server, volume_id)
        server = self._start_server(server)
        self.write_file(server, device, 'after-start')
        self.assertEqual('after-start', self.read_file(server, device))
        major, minor = (os.major(os.stat(backing.path).st_rdev),
                        os.minor(os.stat(backing.path).st_rdev))
        self.assertEqual('b:%d:%d:rw' % (major, minor),
                         self.config(server)['DEVICES'])

    def test_a_volume_given_at_boot_is_there_before_init(self):
        volume_id, backing = self.volume()
        body = self.server_with_volume('with-volume',
                                       allinone.TEMPLATE_IMAGE_ID, volume_id,
                                       flavor_id='1')
        before = len(self.vzhost.calls())
        server = self._wait_for_state_change(
            self.api.post_server({'server': body}), 'ACTIVE')
        # No mknod after the start: the start script made the node while
        # vzctl held init back.
        mutating = [c['argv'][0] for c in self.vzhost.calls()[before:]
                    if c['tool'] == 'vzctl']
        self.assertEqual(['create', 'set', 'start'], mutating)
        self.inside(server, 'test -b /dev/vdb')
        self.write_file(server, '/dev/vdb', 'at-boot')
        self.assertEqual('at-boot', self.read_file(server, '/dev/vdb'))

    def test_extend_is_seen_inside_the_running_container(self):
        server = self.boot()
        volume_id, backing = self.volume()
        self.attach(server, volume_id)
        backing.grow(2 * GiB)
        # Cinder's view after its extend, then its event to Nova.
        volume = self.cinder.fake_get(None, volume_id)
        volume['size'] = 2
        self.cinder.volumes[volume_id] = volume
        self.api.create_server_external_events([{
            'name': 'volume-extended', 'server_uuid': server['id'],
            'tag': volume_id}])
        deadline = time.monotonic() + 20
        size = None
        while time.monotonic() < deadline:
            size = self.inside(server, 'blockdev --getsize64 /dev/vdb')
            if size == str(2 * GiB):
                break
            time.sleep(0.2)
        self.assertEqual(str(2 * GiB), size)
        self.assertEqual('extended', self.inside(
            server, 'echo extended | dd of=/dev/vdb bs=1 seek=%d '
                    '2>/dev/null && dd if=/dev/vdb bs=1 skip=%d count=8 '
                    '2>/dev/null' % (2 * GiB - 100, 2 * GiB - 100)))

    def test_detach_is_refused_while_mounted_inside(self):
        server = self.boot()
        volume_id, backing = self.volume()
        self.attach(server, volume_id)
        self.inside(server, 'mkdir -p /data && mount /dev/vdb /data')
        # The harness makes Nova's casts calls, so the compute's refusal
        # reaches the API caller here.
        error = self.assertRaises(api_client.OpenStackApiException,
                                  self.api.delete_server_volume,
                                  server['id'], volume_id)
        self.assertIn('DeviceDetachFailed', str(error))
        self.assertEqual([volume_id], [
            v['volumeId'] for v in self.api.get_server_volumes(server['id'])])
        self.inside(server, 'test -b /dev/vdb && umount /data')
        self.detach(server, volume_id)
        self.inside(server, 'test ! -e /dev/vdb')

    def test_boot_from_volume_is_refused_with_a_clear_fault(self):
        self.flags(max_attempts=1, group='scheduler')
        volume_id, backing = self.volume()
        body = self._build_server(name='bfv', image_uuid='', flavor_id='1',
                                  networks='none')
        body['block_device_mapping_v2'] = [{
            'source_type': 'volume', 'destination_type': 'volume',
            'uuid': volume_id, 'boot_index': 0}]
        server = self._wait_for_state_change(
            self.api.post_server({'server': body}), 'ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('cannot live on a Cinder volume', fault)
        self.assertEqual([], self.vzlist())


class TestRebuildKeepsPortsAndVolumes(_VolumeTestCase):
    """What a database team relies on across a rebuild: same address, data."""

    NETWORKING = True

    def test_rebuild_keeps_the_address_and_the_volume_data(self):
        port = self.make_port()
        server = self.boot_on_ports('db', [port])
        volume_id, _backing = self.volume()
        device = self.attach(server, volume_id)
        self.write_file(server, device, 'kept-over-rebuild')
        server = self._rebuild_server(server, allinone.TEMPLATE_IMAGE_ID)
        self.assertEqual('running', self.container(server)['status'])
        device = self.api.get_server_volume(server['id'],
                                            volume_id)['device']
        self.assertEqual('kept-over-rebuild', self.read_file(server, device))
        address = port['fixed_ips'][0]['ip_address']
        self.assertIn('%s/24' % address,
                      self.inside(server, 'ip -o addr show dev eth0'))


class TestFlavorStorage(_RealBackendTestCase):

    def flavor(self, extra_specs=None, **fields):
        body = {'name': 'f-%s' % uuidutils.generate_uuid()[:8],
                'ram': 256, 'vcpus': 1, 'disk': 1, 'swap': 0,
                'OS-FLV-EXT-DATA:ephemeral': 0}
        body.update(fields)
        flavor = self.api.post_flavor({'flavor': body})
        if extra_specs:
            self.api.post_extra_spec(flavor['id'],
                                     {'extra_specs': extra_specs})
        return flavor['id']

    def test_ephemeral_disk_swap_and_root_size_inside(self):
        flavor = self.flavor(**{'disk': 1, 'swap': 128,
                                'OS-FLV-EXT-DATA:ephemeral': 1})
        server = self.boot(flavor_id=flavor)
        # Root: the 1 GB of the flavor (ext4 keeps some for itself).
        root_kb = int(self.inside(server, "df -k / | tail -1 | "
                                          "awk '{print $2}'"))
        self.assertTrue(0.85 * 1024 ** 2 < root_kb <= 1024 ** 2, root_kb)
        # Ephemeral: a second file system of 1 GB at /mnt.
        mnt_kb = int(self.inside(server, "df -k /mnt | tail -1 | "
                                         "awk '{print $2}'"))
        self.assertTrue(0.85 * 1024 ** 2 < mnt_kb <= 1024 ** 2, mnt_kb)
        self.inside(server, 'echo scratch > /mnt/file')
        self._reboot_server(server)
        self.assertEqual('scratch', self.inside(server, 'cat /mnt/file'))
        # Swap: RAM + swap is the memory+swap limit.
        memsw = self.inside(
            server, 'cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes '
                    '2>/dev/null || cat /sys/fs/cgroup/memory.swap.max')
        self.assertIn(int(memsw), ((256 + 128) * 1024 ** 2,
                                   128 * 1024 ** 2))
        ctid = self.container(server)['ctid']
        self._delete_server(server)
        self.assertEqual([], self.vzhost.leftovers(ctid))

    def test_a_guest_link_at_the_ephemeral_mount_point_spares_the_host(self):
        # The guest unmounts its ephemeral disk and leaves a link to a
        # host mount point in its place; stopping the server must not
        # unmount the host's file system.
        host_mount = self.useFixture(fixtures.TempDir()).path
        subprocess.run(['mount', '-t', 'tmpfs', 'tmpfs', host_mount],
                       check=True)
        self.addCleanup(subprocess.run, ['umount', '-l', host_mount],
                        check=False)
        flavor = self.flavor(**{'OS-FLV-EXT-DATA:ephemeral': 1})
        server = self.boot(flavor_id=flavor)
        self.inside(server, 'umount /mnt && mv /mnt /mnt.old && '
                            'ln -s %s /mnt' % host_mount)
        server = self._stop_server(server)
        self.assertTrue(os.path.ismount(host_mount))
        ctid = self.container(server)['ctid']
        self._delete_server(server)
        self.assertTrue(os.path.ismount(host_mount))
        self.assertEqual([], self.vzhost.leftovers(ctid))

    def test_ephemeral_needs_ploop(self):
        self.flags(max_attempts=1, group='scheduler')
        flavor = self.flavor(extra_specs={'openvz:layout': 'simfs'},
                             **{'OS-FLV-EXT-DATA:ephemeral': 1})
        server = self.boot(flavor_id=flavor, expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('needs the ploop layout', fault)
        self.assertEqual([], self.vzlist())
        self.assertEqual([], self.vzhost.all_leftovers())

    def test_disk_qos_specs_become_the_container_io_limits(self):
        flavor = self.flavor(extra_specs={
            'quota:disk_read_bytes_sec': str(20 * 1024 ** 2),
            'quota:disk_write_bytes_sec': str(10 * 1024 ** 2),
            'quota:disk_total_iops_sec': '500'})
        server = self.boot(flavor_id=flavor)
        config = self.config(server)
        self.assertEqual(str(10 * 1024 ** 2), config['IOLIMIT'])
        self.assertEqual('500', config['IOPSLIMIT'])
        throttled = self.inside(
            server, 'cat /sys/fs/cgroup/blkio/'
                    'blkio.throttle.write_bps_device 2>/dev/null || '
                    'cat /sys/fs/cgroup/io.max')
        self.assertIn(str(10 * 1024 ** 2), throttled)
