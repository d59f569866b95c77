"""Cinder volumes and the flavor's ephemeral disk in OpenVZ containers.

os-brick connects a volume on the host, as for any Nova driver.  The
container then gets the host's block device under the name Nova assigned
(``/dev/vdb``...):

* ``vzctl set <CTID> --devices b:<major>:<minor>:rw --save`` lets the
  container use the device (vzctl applies it live and keeps it in DEVICES);
* the node is made inside: at once with ``vzctl exec2 <CTID> mknod ...``
  when the container runs, and at every later start by the container's
  ``<CTID>.start`` action script, which vzctl runs inside the container
  before init (see
  :func:`nova_openvz.privsep.containers.set_volume_node`).  So the volume
  survives reboots and stop/start, and a volume given at boot is
  there before the container's init runs.

Detach refuses while a file system of the volume is mounted inside the
container (the guest must unmount it, as it would release a virtio disk),
then removes the node, the device access and the start-script line, and
disconnects the volume on the host.

The root file system cannot live on a volume (an OpenVZ container's root is
its ploop image or simfs directory), so boot from volume is refused before
anything is made.

The flavor's ephemeral disk is a second file system, labelled
``ephemeral0`` and mounted at ``/mnt`` inside the container, where
cloud-init's default ``mounts`` and Nova's libvirt guests put it.
"""

import os
import stat

from nova import exception as nova_exception
from nova import utils as nova_utils
from nova.virt import driver
from os_brick import exception as brick_exception
from os_brick.initiator import connector
from oslo_log import log as logging
from oslo_utils import excutils

from nova_openvz import conf as openvz_conf
from nova_openvz import exception
from nova_openvz import hosttools
from nova_openvz import privsep
from nova_openvz.privsep import containers as priv_containers

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF

#: The root device name Nova numbers volume names from (vdb, vdc...).
ROOT_DEVICE_NAME = '/dev/vda'
#: Where the ephemeral disk is mounted inside the container.
EPHEMERAL_MOUNTPOINT = '/mnt'
#: vzctl exec2 on a stopped container.
EXIT_NOT_RUNNING = 31


def connector_properties():
    """This host's initiator data for Cinder, from os-brick."""
    return connector.get_connector_properties(
        nova_utils.get_root_helper(), CONF.my_block_storage_ip,
        multipath=False, enforce_multipath=False, host=CONF.host)


def _brick(connection_info):
    protocol = connection_info.get('driver_volume_type') or ''
    try:
        return connector.InitiatorConnector.factory(
            protocol, nova_utils.get_root_helper(), use_multipath=False)
    except (brick_exception.InvalidConnectorProtocol, ValueError):
        raise nova_exception.VolumeDriverNotFound(driver_type=protocol)


def _volume_id(connection_info):
    data = connection_info.get('data') or {}
    return data.get('volume_id') or connection_info.get('serial') or '?'


def device_name(mountpoint):
    """``/dev/vdb`` -> ``vdb``, refused unless a plain device name."""
    prefix, _, name = (mountpoint or '').rpartition('/')
    try:
        if prefix not in ('', '/dev'):
            raise privsep.ArgumentRejected(mountpoint)
        priv_containers.check_device_node(name, 1, 0)
    except privsep.ArgumentRejected:
        raise nova_exception.InvalidInput(
            reason='device name %r cannot be given to a container'
            % mountpoint)
    return name


def _brick_call(connection_info, error, method, *args):
    """Run one os-brick connector method; its failure becomes ``error``."""
    try:
        return getattr(_brick(connection_info), method)(*args)
    except nova_exception.NovaException:
        raise
    except Exception as e:
        raise error(volume_id=_volume_id(connection_info), reason=e)


def connect(connection_info):
    """Connect a volume on the host; return its block device path."""
    data = connection_info.setdefault('data', {})
    info = _brick_call(connection_info, exception.VolumeConnectFailed,
                       'connect_volume', data)
    # Kept in the BDM, as libvirt does, for detach and extend.
    data['device_path'] = info['path']
    return info['path']


def disconnect(connection_info):
    _brick_call(connection_info, exception.VolumeConnectFailed,
                'disconnect_volume', connection_info.get('data') or {}, None)


def block_numbers(path):
    """(major, minor) of the block device at ``path``."""
    try:
        info = os.stat(path)
    except OSError as e:
        raise exception.VolumeNotABlockDevice(path=path, reason=e.strerror)
    if not stat.S_ISBLK(info.st_mode):
        raise exception.VolumeNotABlockDevice(path=path,
                                              reason='not a block device')
    return os.major(info.st_rdev), os.minor(info.st_rdev)


def devices_arg(major, minor, access='rw'):
    return 'b:%d:%d:%s' % (major, minor, access)


def _make_node_now(ctid, name, major, minor):
    """Make the node in a running container (a stopped one: at start)."""
    hosttools.vzctl('exec2', ctid, 'rm -f /dev/%s; mknod -m 0660 /dev/%s b '
                    '%d %d' % (name, name, major, minor),
                    ok_codes=(0, EXIT_NOT_RUNNING))


def check_boot(instance, block_device_info):
    """Refuse what the container cannot boot with, before making anything."""
    root = driver.block_device_info_get_root_device(block_device_info)
    for bdm in driver.block_device_info_get_mapping(block_device_info):
        if bdm.get('boot_index') == 0 or (
                root and bdm.get('mount_device') == root):
            raise exception.BootFromVolumeNotSupported()
        device_name(bdm.get('mount_device'))
    ephemerals = driver.block_device_info_get_ephemerals(block_device_info)
    if len(ephemerals) > 1:
        raise exception.EphemeralNotSupported(
            reason='one ephemeral disk per server, %d asked'
            % len(ephemerals))


def ephemeral_gb(instance, block_device_info):
    ephemerals = driver.block_device_info_get_ephemerals(block_device_info)
    if ephemerals:
        return ephemerals[0].get('size') or 0
    return instance.flavor.ephemeral_gb or 0


def swap_mb(instance, block_device_info):
    swap = driver.block_device_info_get_swap(block_device_info)
    if swap and swap.get('swap_size'):
        return swap['swap_size']
    return instance.flavor.swap or 0


class ContainerVolumes(object):
    """Volume and ephemeral work on one host's containers."""

    def prepare_spawn(self, ctid, instance, block_device_info, layout):
        """Connect a new container's volumes and make its ephemeral disk.

        :returns: the ``vzctl set`` options that give the container its
            volumes; the caller adds them to its one ``set`` call.
        """
        args = []
        size = ephemeral_gb(instance, block_device_info)
        if size:
            if layout != 'ploop':
                raise exception.EphemeralNotSupported(
                    reason='the ephemeral disk needs the ploop layout, '
                           'this flavor gives %s' % layout)
            priv_containers.make_ephemeral_disk(
                ctid, size, CONF.default_ephemeral_format or 'ext4',
                EPHEMERAL_MOUNTPOINT)
        for bdm in driver.block_device_info_get_mapping(block_device_info):
            name = device_name(bdm['mount_device'])
            path = connect(bdm['connection_info'])
            major, minor = block_numbers(path)
            priv_containers.set_volume_node(ctid, name, major, minor)
            args += ['--devices', devices_arg(major, minor)]
            if hasattr(bdm, 'save'):
                bdm.save()
        return args

    def disconnect_all(self, block_device_info, instance):
        """Disconnect every volume of a server on the host, best effort.

        A failure is logged, the others are still disconnected, and the
        first failure is raised at the end.
        """
        failed = None
        for bdm in driver.block_device_info_get_mapping(block_device_info):
            try:
                disconnect(bdm['connection_info'])
            except Exception as e:
                LOG.exception('Could not disconnect volume %s',
                              _volume_id(bdm['connection_info']),
                              instance=instance)
                failed = failed or e
        if failed is not None:
            raise failed

    def attach(self, ctid, connection_info, mountpoint, encryption=None):
        if encryption:
            raise nova_exception.VolumeEncryptionNotSupported(
                volume_type=connection_info.get('driver_volume_type'),
                volume_id=_volume_id(connection_info))
        name = device_name(mountpoint)
        path = connect(connection_info)
        try:
            major, minor = block_numbers(path)
            previous = priv_containers.set_volume_node(ctid, name, major,
                                                       minor)
            if previous and previous != (major, minor):
                raise nova_exception.InvalidInput(
                    reason='device %s of the container is already another '
                           'volume' % mountpoint)
            hosttools.vzctl('set', ctid, '--devices',
                            devices_arg(major, minor), '--save')
            _make_node_now(ctid, name, major, minor)
        except Exception:
            with excutils.save_and_reraise_exception():
                self._undo_attach(ctid, name, path, connection_info)

    def _undo_attach(self, ctid, name, path, connection_info):
        """Each step on its own, so one failure does not keep the rest."""
        def step(function, *args, **kwargs):
            try:
                function(*args, **kwargs)
            except Exception:
                LOG.exception('Could not undo the attachment of %s at %s',
                              path, name)
        nodes = {}
        step(lambda: nodes.update(priv_containers.volume_nodes(ctid)))
        if name in nodes:
            major, minor = nodes[name]
            step(hosttools.vzctl, 'exec2', ctid, 'rm -f /dev/%s' % name,
                 ok_codes=(0, EXIT_NOT_RUNNING))
            step(hosttools.vzctl, 'set', ctid, '--devices',
                 devices_arg(major, minor, 'none'), '--save')
            step(priv_containers.set_volume_node, ctid, name)
        step(disconnect, connection_info)

    def _mounted_inside(self, ctid, major, minor):
        """Mount points of the device inside a running container."""
        call = hosttools.vzctl('exec2', ctid, 'cat /proc/self/mountinfo',
                               ok_codes=(0, EXIT_NOT_RUNNING))
        if call.exit_code == EXIT_NOT_RUNNING:
            return []
        wanted = '%d:%d' % (major, minor)
        return [fields[4] for fields in
                (line.split() for line in call.stdout.splitlines())
                if len(fields) > 4 and fields[2] == wanted]

    def detach(self, ctid, connection_info, mountpoint):
        """Take the volume away from the container, then disconnect it."""
        name = device_name(mountpoint)
        if ctid is not None:
            nodes = priv_containers.volume_nodes(ctid)
            if name in nodes:
                major, minor = nodes[name]
                mounts = self._mounted_inside(ctid, major, minor)
                if mounts:
                    raise nova_exception.DeviceDetachFailed(
                        device=mountpoint,
                        reason='mounted inside the container at %s; unmount '
                               'it first' % ', '.join(mounts))
                hosttools.vzctl('exec2', ctid, 'rm -f /dev/%s' % name,
                                ok_codes=(0, EXIT_NOT_RUNNING))
                hosttools.vzctl('set', ctid, '--devices',
                                devices_arg(major, minor, 'none'), '--save')
                priv_containers.set_volume_node(ctid, name)
            else:
                LOG.warning('Container %d has no volume at %s', ctid,
                            mountpoint)
        disconnect(connection_info)

    def extend(self, connection_info, requested_size):
        """Let the host see the volume's new size.

        The container uses the host's device directly, so once os-brick
        sees the new size the container does too.
        """
        size = _brick_call(connection_info, exception.VolumeExtendFailed,
                           'extend_volume',
                           connection_info.get('data') or {})
        if size is None or size < requested_size:
            raise exception.VolumeExtendFailed(
                volume_id=_volume_id(connection_info),
                reason='the host sees %s bytes, %d were asked'
                % (size, requested_size))
        return size
