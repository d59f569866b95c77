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

"""Cinder volumes and the flavor's ephemeral disk in OpenVZ containers.

os-brick connects a volume on the host, as for any Nova driver.  The
container then gets the host's block device under the name Nova assigned
(``/dev/vdb``...):

* the privileged helper looks at the device os-brick gave, refuses one the
  host uses, and records its node in the container's ``<CTID>.start``
  action script, which vzctl runs inside the container at every start
  before init (:func:`nova_openvz.privsep.containers.grant_volume`).  So
  the volume survives reboots and stop/start, and a volume given at boot
  is there before the container's init runs;
* the container may use the device (a :class:`~nova_openvz.settings.
  DeviceAccess` setting: ``vzctl set --devices``, applied live and kept in
  DEVICES), which the helper allows only for a recorded device;
* the node is made inside at once when the container runs (a guest script,
  :func:`nova_openvz.guestscripts.make_node_script`).

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

from nova import exception as nova_exception
from nova import utils as nova_utils
from nova.virt import driver
from os_brick import exception as brick_exception
from os_brick.initiator import connector
from oslo_log import log as logging
from oslo_utils import excutils

from nova_openvz import conf as openvz_conf
from nova_openvz import exception
from nova_openvz import guestscripts
from nova_openvz import privsep
from nova_openvz.privsep import containers as priv_containers
from nova_openvz import rollback
from nova_openvz import settings

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF

#: The root device name Nova numbers volume names from (vdb, vdc...).
ROOT_DEVICE_NAME = '/dev/vda'
#: Where the ephemeral disk is mounted inside the container.
EPHEMERAL_MOUNTPOINT = '/mnt'


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


def _now(function, *args, **kwargs):
    return function(*args, **kwargs)


class ContainerVolumes(object):
    """Volume and ephemeral work on one host's containers."""

    def prepare_spawn(self, container, instance, block_device_info,
                      layout):
        """Connect a new container's volumes and make its ephemeral disk.

        :returns: the :class:`~nova_openvz.settings.DeviceAccess` settings
            of its volumes; the caller adds them to its one configure call.
        """
        grants = []
        size = ephemeral_gb(instance, block_device_info)
        if size:
            if layout != 'ploop':
                raise exception.EphemeralNotSupported(
                    reason='the ephemeral disk needs the ploop layout, '
                           'this flavor gives %s' % layout)
            container.make_ephemeral_disk(
                size, CONF.default_ephemeral_format or 'ext4',
                EPHEMERAL_MOUNTPOINT)
        for bdm in driver.block_device_info_get_mapping(block_device_info):
            name = device_name(bdm['mount_device'])
            path = connect(bdm['connection_info'])
            device, _previous = container.keep_volume(name, path)
            grants.append(settings.DeviceAccess(*device))
            if hasattr(bdm, 'save'):
                bdm.save()
        return grants

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

    def attach(self, container, connection_info, mountpoint,
               encryption=None):
        if encryption:
            raise nova_exception.VolumeEncryptionNotSupported(
                volume_type=connection_info.get('driver_volume_type'),
                volume_id=_volume_id(connection_info))
        name = device_name(mountpoint)
        path = connect(connection_info)
        try:
            device, previous = container.keep_volume(name, path)
            if previous and previous != device:
                raise nova_exception.InvalidInput(
                    reason='device %s of the container is already another '
                           'volume' % mountpoint)
            container.configure(settings.DeviceAccess(*device))
            container.run_script(guestscripts.make_node_script(name, *device),
                                 stopped_ok=True)
        except Exception:
            with excutils.save_and_reraise_exception():
                self._undo_attach(container, name, path, connection_info)

    def _undo_attach(self, container, name, path, connection_info):
        """Each step on its own, so one failure does not keep the rest."""
        def step(function, *args, **kwargs):
            try:
                function(*args, **kwargs)
            except Exception:
                LOG.exception('Could not undo the attachment of %s at %s',
                              path, name)
        nodes = {}
        step(lambda: nodes.update(container.volume_nodes()))
        if name in nodes:
            self._take_away(container, name, nodes[name], step)
        step(disconnect, connection_info)

    @staticmethod
    def _take_away(container, name, device, step=None):
        """Remove the node, the access and the start-script line.

        :param step: runs each step (default: at once, failures raise).
        """
        step = step or _now
        step(container.run_script, guestscripts.remove_node_script(name),
             stopped_ok=True)
        # While the container may still use the device, the guest keeps
        # its node (Nova still shows the volume attached).
        with rollback.undone_on_failure(
                container.run_script,
                guestscripts.make_node_script(name, *device), True):
            step(container.configure, settings.DeviceAccess(*device,
                                                            granted=False))
        step(container.forget_volume, name)

    def _mounted_inside(self, container, major, minor):
        """Mount points of the device inside a running container."""
        call = container.run_script(guestscripts.MOUNTINFO_SCRIPT,
                                    stopped_ok=True)
        if call.exit_code != 0:
            return []
        wanted = '%d:%d' % (major, minor)
        return [fields[4] for fields in
                (line.split() for line in call.stdout.splitlines())
                if len(fields) > 4 and fields[2] == wanted]

    def refuse_if_mounted(self, container):
        """Refuse a live move while the guest has a volume mounted.

        :returns: the volume nodes checked, ``{name: (major, minor)}``.
        :raises: VolumeMountedInside, naming each mount.
        """
        nodes = container.volume_nodes()
        mounts = []
        for name, device in sorted(nodes.items()):
            points = self._mounted_inside(container, *device)
            if points:
                mounts.append('/dev/%s at %s' % (name, ', '.join(points)))
        if mounts:
            raise exception.VolumeMountedInside(mounts='; '.join(mounts))
        return nodes

    def withhold(self, container):
        """Take the volumes' device access away; the devices withheld.

        Before ``vzmigrate --online``: it restores the container on the
        peer with the config it copies, and there the same device numbers
        may be another disk.  The access is given again under the peer's
        numbers on arrival (:func:`nova_openvz.migration.regrant_volumes`),
        or back here if the move fails.  Refused while one is mounted
        inside: a mount of an outside device cannot move with the guest.
        """
        devices = sorted(self.refuse_if_mounted(container).values())
        if devices:
            container.configure(*[settings.DeviceAccess(*device,
                                                        granted=False)
                                  for device in devices])
        return devices

    def give_back(self, container, devices):
        """Undo :meth:`withhold` (the move failed); errors are logged."""
        if not devices:
            return
        try:
            container.configure(*[settings.DeviceAccess(*device)
                                  for device in devices])
        except Exception:
            LOG.exception('Could not give container %d its volumes back',
                          container.ctid)

    def detach(self, container, connection_info, mountpoint):
        """Take the volume away from the container, then disconnect it.

        :param container: its handle, None when it is gone.
        """
        name = device_name(mountpoint)
        if container is not None:
            nodes = container.volume_nodes()
            if name in nodes:
                mounts = self._mounted_inside(container, *nodes[name])
                if mounts:
                    raise nova_exception.DeviceDetachFailed(
                        device=mountpoint,
                        reason='mounted inside the container at %s; unmount '
                               'it first' % ', '.join(mounts))
                self._take_away(container, name, nodes[name])
            else:
                LOG.warning('Container %d has no volume at %s',
                            container.ctid, mountpoint)
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
