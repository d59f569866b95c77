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

"""The one-machine cloud's Cinder backend: sparse files on loop devices.

Cinder's in-tree backends need what a machine like the CI's lacks in its
kernel: device-mapper (LVM), an iSCSI or NVMe-oF initiator, NBD or an NFS
client.  Loop devices work, so cinder-volume in ``tools/cloud.sh`` loads
this class through its ``volume_driver`` option: each volume is a sparse
file, exported by attaching it to a loop device and handed to nova-compute
as os-brick's ``local`` connection (the device's path), which LINSTOR and
FusionStorage also use for volumes on the compute's own host.

The device handed over is a partition of the loop device, not the loop
device itself: vzctl refuses to give a container a loop device (major 7;
see the OpenVZ reference), while a partition (major 259, blkext) is a
block device like any other, and grows online.  The partition is made in
the kernel only (``addpart``, no table on disk) and starts 1 MiB into the
file; the volume is the N GiB after that.  Past
``connect_volume`` the driver's path is the one an iSCSI or RBD volume
takes: a block device given to the container.

A tool of the test cloud, like the simulated host; not for production.
"""

import os
import shutil
import subprocess
import time

from cinder import exception
from cinder.volume import driver
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import units

LOG = logging.getLogger(__name__)

SECTOR = 512
#: Where the volume's partition starts in its file, in sectors (1 MiB).
PART_START = 2048

loop_opts = [
    cfg.StrOpt('loop_volumes_dir',
               help='Directory of the volumes\' sparse files.'),
]


def _run(*argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise exception.VolumeBackendAPIException(
            data='%s exited %d: %s' % (' '.join(argv), proc.returncode,
                                       proc.stderr.strip()))
    return proc.stdout


def _sectors(size_gb):
    return size_gb * units.Gi // SECTOR


class LoopFileDriver(driver.VolumeDriver):
    """Volumes as sparse files, exported on loop devices."""

    VERSION = '1.0.0'
    CI_WIKI_NAME = 'nova-openvz'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(loop_opts)

    @property
    def _dir(self):
        return self.configuration.loop_volumes_dir

    def do_setup(self, context):
        os.makedirs(self._dir, exist_ok=True)

    def check_for_setup_error(self):
        if not shutil.which('losetup'):
            raise exception.VolumeBackendAPIException(
                data='losetup (util-linux) is not installed')
        if not os.path.isdir(self._dir):
            raise exception.VolumeBackendAPIException(
                data='%s is not a directory' % self._dir)

    def _update_volume_stats(self):
        disk = shutil.disk_usage(self._dir)
        self._stats = {
            'volume_backend_name':
                self.configuration.safe_get('volume_backend_name') or 'loop',
            'vendor_name': 'nova-openvz test cloud',
            'driver_version': self.VERSION,
            'storage_protocol': 'local',
            'total_capacity_gb': disk.total // units.Gi,
            'free_capacity_gb': disk.free // units.Gi,
            'reserved_percentage': 0,
            'thin_provisioning_support': True,
            'max_over_subscription_ratio': 20.0,
            'multiattach': False,
        }

    def local_path(self, volume):
        return os.path.join(self._dir, volume.name)

    # -- the files ---------------------------------------------------------

    def _create_file(self, path, size_gb, source=None):
        if source:
            # Holes stay holes: a 1 GiB volume of a few written blocks
            # costs those blocks.
            subprocess.run(['cp', '--sparse=always', source, path],
                           check=True)
        else:
            open(path, 'xb').close()
        os.truncate(path, (PART_START + _sectors(size_gb)) * SECTOR)

    def create_volume(self, volume):
        self._create_file(self.local_path(volume), volume.size)

    def create_cloned_volume(self, volume, src_vref):
        self._create_file(self.local_path(volume), volume.size,
                          source=self.local_path(src_vref))

    def create_snapshot(self, snapshot):
        self._create_file(self.local_path(snapshot), snapshot.volume_size,
                          source=self.local_path(snapshot.volume))

    def create_volume_from_snapshot(self, volume, snapshot):
        self._create_file(self.local_path(volume), volume.size,
                          source=self.local_path(snapshot))

    def delete_snapshot(self, snapshot):
        self._remove_file(self.local_path(snapshot))

    def delete_volume(self, volume):
        self._remove_file(self.local_path(volume))

    def _remove_file(self, path):
        self._detach_loops(path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def extend_volume(self, volume, new_size):
        path = self.local_path(volume)
        os.truncate(path, (PART_START + _sectors(new_size)) * SECTOR)
        # An attached volume's device learns its new size at once.
        for device in self._loops(path):
            _run('losetup', '--set-capacity', device)
            _run('resizepart', device, '1', str(_sectors(new_size)))

    # -- the loop devices --------------------------------------------------

    def _loops(self, path):
        """The loop devices backed by ``path``."""
        if not os.path.exists(path):
            return []
        out = _run('losetup', '--noheadings', '--output', 'NAME',
                   '--associated', path)
        return [line.strip() for line in out.splitlines() if line.strip()]

    def _attach_loop(self, path, size_gb):
        """A new loop device of ``path`` with its partition; the device."""
        device = _run('losetup', '--find', '--show', path).strip()
        # A loop device freed while its partition was still open can keep
        # that partition: drop it first.
        subprocess.run(['delpart', device, '1'], capture_output=True)
        try:
            _run('addpart', device, '1', str(PART_START),
                 str(_sectors(size_gb)))
        except exception.VolumeBackendAPIException:
            subprocess.run(['losetup', '--detach', device],
                           capture_output=True)
            raise
        return device

    def _detach_loops(self, path):
        for device in self._loops(path):
            subprocess.run(['delpart', device, '1'], capture_output=True)
            _run('losetup', '--detach', device)

    # The loop device is attached by initialize_connection, once per
    # volume however many attachments share it; nothing to do here.
    def create_export(self, context, volume, connector):
        pass

    def ensure_export(self, context, volume):
        pass

    def remove_export(self, context, volume):
        # Cinder calls this once no attachment shares the connection
        # (terminate_connection's answer): the loop device goes.
        self._detach_loops(self.local_path(volume))

    def initialize_connection(self, volume, connector, **kwargs):
        path = self.local_path(volume)
        devices = self._loops(path)
        # A move between hosts of this one machine attaches on the
        # destination before it detaches on the source: one loop device
        # serves both attachments.
        device = devices[0] if devices else self._attach_loop(path,
                                                              volume.size)
        partition = device + 'p1'
        # Without udev, devtmpfs makes the node, soon.
        for _ in range(50):
            if os.path.exists(partition):
                break
            time.sleep(0.1)
        LOG.info('volume %s on %s', volume.id, partition)
        return {'driver_volume_type': 'local',
                'data': {'device_path': partition, 'volume_id': volume.id}}

    def terminate_connection(self, volume, connector, **kwargs):
        # True keeps the loop device: another attachment (the other end of
        # a move) still uses it.  The one being deleted is still listed.
        attachments = [a for a in (volume.volume_attachment or [])
                       if a.connector]
        return len(attachments) > 1
