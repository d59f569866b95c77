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

"""Moving a container to another OpenVZ host: cold and live migration.

The transport is OpenVZ's own ``vzmigrate`` (reference 5.4), not a copy of
the driver's: it carries the private area (ploop image or simfs tree), the
config and the action scripts with rsync over root ssh, checks the peer
first (OpenVZ running, CT ID free, addresses unused, ploop support) and
undoes its own steps on failure.  Its contract shapes the flows:

* the container keeps its CT ID: vzmigrate cannot renumber, and exits 9
  when the peer has that ID.  The driver asks ``vzmigrate --check-only``
  before anything changes, so such a move is refused with vzmigrate's words
  and the server stays as it was on the source;
* cold migration (and resize to another host) runs ``vzmigrate -r no`` on
  the stopped container: the source keeps its area, its config renamed
  ``<CTID>.conf.migrated`` (invisible to vzctl and vzlist), until Nova
  confirms (then it is destroyed) or reverts (then it is renamed back and
  started: the server is back exactly as it was, files included), or the
  server settles on another host without either (a failure there, or of
  the confirm: then the source's resource update destroys it);
* live migration runs ``vzmigrate --online``: the source is removed by
  vzmigrate once the container runs on the peer.  Volumes move with it
  unless the guest has one mounted (a mount of an outside device does not
  move with a guest): their access is withheld before vzmigrate, whose
  copied config would grant the source's device numbers on the peer, and
  granted under the peer's numbers on arrival (or given back here if the
  move fails).

On the destination the driver redoes what belongs to the host rather than
the container: volumes are connected with os-brick and granted under their
new device numbers, ports plugged, the config drive rebuilt under this
host's instance directory, the console logged again.  The console log of
the source stays behind (vzmigrate carries only the container).

Driver methods stay thin: :class:`CrossHost` holds each flow.
"""

import json

from nova.compute import utils as compute_utils
from nova.compute import vm_states
from nova import exception as nova_exception
from nova import objects
from nova.virt import driver as virt_driver
from oslo_log import log as logging
from oslo_utils import excutils

from nova_openvz import conf as openvz_conf
from nova_openvz import configdrive
from nova_openvz import console
from nova_openvz import exception
from nova_openvz import guestscripts
from nova_openvz import hosttools
from nova_openvz import network
from nova_openvz.privsep import containers as priv_containers
from nova_openvz.privsep import migration as priv_migration
from nova_openvz import resize
from nova_openvz import resources
from nova_openvz import rollback
from nova_openvz import settings
from nova_openvz import volumes
from nova_openvz import vz4

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF


def check(container, peer, online=False):
    """vzmigrate's own checks of a move to ``peer``, changing nothing.

    :raises: MigrationPreCheckError with vzmigrate's message and exit code
        (peer unreachable, CT ID taken there, addresses in use...).
    """
    try:
        argv = vz4.migrate(container.ctid, peer, online=online,
                           check_only=True)
    except ValueError:
        raise nova_exception.MigrationPreCheckError(
            reason='%r cannot name a peer host for vzmigrate' % peer)
    try:
        hosttools.run('vzmigrate', *argv)
    except exception.HostToolError as e:
        raise nova_exception.MigrationPreCheckError(
            reason=e.format_message())


def move(container, peer, online=False):
    """Move the container to ``peer``: live, or keeping the source area."""
    hosttools.run('vzmigrate', *vz4.migrate(container.ctid, peer,
                                            online=online,
                                            keep_source=not online))


def migrated_container(listing, instance):
    """The handle of the instance's container moved away with ``-r no``.

    Its config is renamed back first, so vzctl sees it again.

    :raises: MigratedContainerMissing when this host kept none.
    """
    ctid = priv_migration.migrated_ctid(instance.uuid)
    if ctid is None:
        raise exception.MigratedContainerMissing(instance_uuid=instance.uuid)
    priv_migration.restore_migrated_config(ctid)
    listing.changed(instance.uuid, ctid)
    return listing.new_handle(ctid, instance.uuid)


def regrant_volumes(container, block_device_info):
    """Connect the volumes on this host; the settings granting them.

    The container's start script and DEVICES still name the device numbers
    of the host it came from: each volume's node is recorded again under
    this host's numbers, and the old access taken back.
    """
    items = []
    for bdm in virt_driver.block_device_info_get_mapping(
            block_device_info):
        name = volumes.device_name(bdm['mount_device'])
        path = volumes.connect(bdm['connection_info'])
        device, previous = container.keep_volume(name, path)
        if previous and previous != device:
            items.append(settings.DeviceAccess(*previous, granted=False))
        items.append(settings.DeviceAccess(*device))
        if hasattr(bdm, 'save'):
            bdm.save()
    return items


def _volumes_of(block_device_info):
    return virt_driver.block_device_info_get_mapping(block_device_info)


class CrossHost(object):
    """The cross-host flows, orchestrated with the driver's own steps.

    :param driver: the :class:`~nova_openvz.driver.OpenVZDriver`; its
        listing, volumes, ``power_off``/``power_on`` and ``_start`` are
        what spawn and power actions use too.
    """

    def __init__(self, driver):
        self.driver = driver
        #: Instances whose live migration an operator aborted.
        self._aborted = set()

    @property
    def listing(self):
        return self.driver.listing

    # -- cold migration and resize to another host ---------------------------

    def send(self, context, instance, peer, flavor, network_info,
             block_device_info, timeout, retry_interval):
        """Source side: check, stop, ``vzmigrate -r no``; the disk info.

        A refused check or a failed move leaves the server as it was on
        this host (restarted if it ran), and Nova puts it back to ACTIVE
        with vzmigrate's message (InstanceFaultRollback).
        """
        container = self.listing.handle(instance.uuid, fresh=True)
        if flavor.root_gb and flavor.root_gb < instance.flavor.root_gb:
            raise nova_exception.InstanceFaultRollback(
                inner_exception=nova_exception.ResizeError(
                    reason='the disk of a container cannot shrink (%d GB to '
                           '%d GB)' % (instance.flavor.root_gb,
                                       flavor.root_gb)))
        try:
            check(container, peer)
        except nova_exception.MigrationPreCheckError as e:
            raise nova_exception.InstanceFaultRollback(inner_exception=e)
        running = container.running
        try:
            self.driver.power_off(instance, timeout, retry_interval)
            move(container, peer)
        except Exception as e:
            LOG.error('Moving container %d to %s failed: %s', container.ctid,
                      peer, e, instance=instance)
            if running:
                self._restart_quietly(context, instance, network_info,
                                      block_device_info)
            raise nova_exception.InstanceFaultRollback(inner_exception=e)
        self.listing.forget(instance.uuid)
        console.detach(instance)
        # os-brick's connections on this host go; a revert connects again.
        self.driver.volumes.disconnect_all(block_device_info, instance)
        LOG.info('Container %d moved to %s; its area stays here until the '
                 'move is confirmed', container.ctid, peer,
                 instance=instance)
        return json.dumps({'ctid': container.ctid, 'running': running})

    def _restart_quietly(self, context, instance, network_info,
                         block_device_info):
        try:
            # A failed stop may have left it running.
            if not self.listing.handle(instance.uuid, fresh=True).running:
                self.driver.power_on(context, instance, network_info,
                                     block_device_info)
        except Exception:
            LOG.exception('Could not start the container again after a '
                          'failed move', instance=instance)

    def receive(self, context, migration, instance, disk_info, network_info,
                resize_instance, block_device_info, power_on):
        """Destination side: the moved container joins this host.

        When a step here fails, Nova has already made this host the
        server's (the source ran ``resize_instance``) and puts it in ERROR,
        telling that a hard reboot may recover it here.  So the container
        stays, stopped, with the server's files, its ports and volumes as
        set up here, and its console logger stopped; a hard reboot starts
        it.  The source keeps its copy, hidden from vzctl, until its next
        resource update (:meth:`remove_abandoned_copies`): Nova calls the
        source no more for this move.
        """
        container = self.listing.handle(instance.uuid, fresh=True)
        try:
            items = [settings.Power(max(1, CONF.shutdown_timeout),
                                    onboot=False)]
            if resize_instance:
                items.append(resources.limits(
                    instance.flavor,
                    volumes.swap_mb(instance, block_device_info)))
            items += regrant_volumes(container, block_device_info)
            container.configure(*items)
            if resize_instance:
                # Grown here, stopped (the source refused a shrink).
                resize.set_disk(container, instance.flavor)
            self._settle(context, instance, container, network_info,
                         power_on)
        except Exception as e:
            with excutils.save_and_reraise_exception():
                LOG.error('Container %d from %s could not join this host: '
                          '%s; kept here stopped, a hard reboot starts it',
                          container.ctid, migration.source_compute, e,
                          instance=instance)
                self._hold(instance, container)
        LOG.info('Container %d arrived from %s', container.ctid,
                 migration.source_compute, instance=instance)

    def _hold(self, instance, container):
        """Keep an arrived container that failed to settle: stopped."""
        # Ports and volume connections stay: they are the server's on
        # this host now, and a hard reboot (Nova's recovery) expects them.
        for step, args in ((_stop_if_running, (self.listing, instance)),
                           (console.detach, (instance,))):
            try:
                step(*args)
            except Exception:
                LOG.exception('Could not undo a step for container %d',
                              container.ctid, instance=instance)

    def _settle(self, context, instance, container, network_info, power_on):
        """Config drive, console and ports of a container on this host."""
        if configdrive.required_by(instance):
            # Rebuilt as libvirt does after a move: no admin password or
            # injected files, which Nova keeps only for the first boot.
            container.show_config_drive(configdrive.build(
                instance, network_info, None, None))
        console.attach_quietly(instance, container)
        if power_on:
            self.driver._start(instance, container, network_info,
                               network.nics(network_info,
                                            container.interfaces),
                               wait_for_ports=True)

    def confirm(self, context, migration, instance, network_info):
        """Source side: destroy the area kept for a revert."""
        self.remove_kept_copy(instance)

    def remove_kept_copy(self, instance):
        """Destroy what a move kept of the instance on this host.

        A failed removal hides the copy again (``<CTID>.conf.migrated``),
        so neither vzctl nor this host's nova-compute takes it for a
        server; :meth:`remove_abandoned_copies` tries again later.
        """
        try:
            container = migrated_container(self.listing, instance)
        except exception.MigratedContainerMissing:
            LOG.info('Nothing of the instance was kept on this host',
                     instance=instance)
        else:
            with rollback.undone_on_failure(priv_migration.hide_config,
                                            container.ctid):
                container.remove()
        console.remove(instance)
        configdrive.remove(instance)
        # The ports were unplugged here when the container stopped to
        # leave (send): unplugging now could take back what the
        # destination plugged under the same names on a shared switch.

    def remove_abandoned_copies(self, context):
        """Remove kept copies whose server now lives elsewhere for good.

        A cold move that failed after the source handed the server over
        (on the destination, or in the source's confirm) leaves the
        source's copy hidden, and Nova calls the source no more for that
        move.  Once the server is deleted, or settled on another host
        (no move of it awaiting a confirm or revert, none in progress),
        the copy can never be wanted again.  Run with the resource update,
        each minute.
        """
        try:
            copies = priv_migration.kept_copies()
        except Exception:
            # Never in the way of the resource update it runs with.
            LOG.exception('Could not list the copies kept for moves')
            return
        context = context.elevated(read_deleted='yes')
        for uuid in copies:
            try:
                instance = objects.Instance.get_by_uuid(context, uuid)
            except nova_exception.InstanceNotFound:
                continue    # not known to this cloud: an operator's
            if instance.deleted or (
                    instance.host != CONF.host and
                    instance.vm_state != vm_states.RESIZED and
                    instance.task_state is None):
                LOG.info('Removing the copy of container %d kept for a '
                         'move that ended on %s', copies[uuid],
                         instance.host, instance=instance)
                try:
                    self.remove_kept_copy(instance)
                except Exception:
                    LOG.exception('Could not remove the kept copy',
                                  instance=instance)

    def revert(self, context, instance, network_info, migration,
               block_device_info, power_on):
        """Source side: the kept container runs again, as it was."""
        container = migrated_container(self.listing, instance)
        grants = regrant_volumes(container, block_device_info)
        if grants:
            container.configure(*grants)
        console.attach_quietly(instance, container)
        if power_on:
            self.driver._start(instance, container, network_info,
                               network.nics(network_info,
                                            container.interfaces),
                               wait_for_ports=True)
        LOG.info('Container %d is back from %s', container.ctid,
                 migration.dest_compute, instance=instance)

    # -- live migration ------------------------------------------------------

    def check_destination(self):
        """What the destination tells the source: nothing is shared.

        Nova has no generic live-migration data object; Hyper-V's has only
        ``is_shared_instance_path``, exactly this driver's case (and makes
        Nova clean up the source after the move, and the destination
        after a rollback).
        """
        return objects.HyperVLiveMigrateData(is_shared_instance_path=False)

    def check_source(self, instance, dest_check_data, block_device_info):
        """What the source can tell alone: the peer is asked at the move."""
        container = self.listing.handle(instance.uuid, fresh=True)
        if not container.running:
            raise nova_exception.MigrationPreCheckError(
                reason='container %d is not running: vzmigrate --online '
                       'moves running containers only' % container.ctid)
        if _volumes_of(block_device_info):
            # Asked again at the move: the guest may mount one meanwhile.
            self.driver.volumes.refuse_if_mounted(container)
        return dest_check_data

    def prepare_destination(self, instance, network_info, migrate_data,
                            block_device_info):
        """Destination side, before the switch: volumes, ports, config drive.

        The config drive is rebuilt here under the same instance directory
        as on the source (``instances_path`` is the same on every host),
        so the mount script that comes with the container finds it.
        """
        for bdm in _volumes_of(block_device_info):
            volumes.connect(bdm['connection_info'])
        network.plug(instance, network_info)
        if configdrive.required_by(instance):
            configdrive.build(instance, network_info, None, None)
        return migrate_data

    def live(self, context, instance, dest, post_method, recover_method,
             block_migration, migrate_data):
        """Source side: ``vzmigrate --online``, then Nova's callbacks.

        Any failure (refused by the peer's checks, or a step of the move,
        which vzmigrate undoes) leaves the container running here: Nova's
        rollback puts the server back to ACTIVE on this host, with a fault
        holding vzmigrate's message.
        """
        container = self.listing.handle(instance.uuid, fresh=True)
        withheld = []
        try:
            check(container, dest, online=True)
            withheld = self.driver.volumes.withhold(container)
            call = hosttools.run('vzmigrate', *vz4.migrate(
                container.ctid, dest, online=True))
        except Exception as e:
            aborted = instance.uuid in self._aborted
            self._aborted.discard(instance.uuid)
            with excutils.save_and_reraise_exception() as ctxt:
                ctxt.reraise = False
                if aborted:
                    LOG.info('Live migration of container %d to %s aborted',
                             container.ctid, dest, instance=instance)
                else:
                    LOG.error('Live migration of container %d to %s '
                              'failed: %s', container.ctid, dest, e,
                              instance=instance)
                    compute_utils.add_instance_fault_from_exc(context,
                                                              instance, e)
                self.listing.invalidate()
                _resume_quietly(container)
                self.driver.volumes.give_back(container, withheld)
                recover_method(context, instance, dest, migrate_data,
                               migration_status='cancelled' if aborted
                               else 'failed')
            return
        # vzmigrate destroyed the source with vzctl, which leaves
        # <CTID>.*.destroyed files, as after any destroy.
        priv_containers.remove_destroyed_configs(container.ctid)
        self._remove_source_copy(context, instance)
        LOG.info('Container %d moved to %s live in %.1fs', container.ctid,
                 dest, call.seconds, instance=instance)
        post_method(context, instance, dest, block_migration, migrate_data)

    def _remove_source_copy(self, context, instance):
        """Remove the container vzmigrate failed to remove from here.

        Once the container runs on the peer, vzmigrate does not check its
        last steps here (kill, unmount, destroy): a failed one leaves a
        second copy of the server on this host, running or not.  The
        server is the peer's now, so this copy goes; if it cannot, the
        server gets a fault saying so, for an operator.
        """
        try:
            leftover = self.listing.handle(instance.uuid, fresh=True)
        except nova_exception.InstanceNotFound:
            return
        LOG.warning('vzmigrate left container %d here after moving it; '
                    'removing it', leftover.ctid, instance=instance)
        try:
            leftover.remove()
        except exception.HostToolError as e:
            LOG.error('Could not remove container %d left by vzmigrate: %s',
                      leftover.ctid, e, instance=instance)
            compute_utils.add_instance_fault_from_exc(context, instance, e)
        finally:
            self.listing.forget(instance.uuid)

    def abort(self, instance):
        """Stop the running ``vzmigrate --online``; :meth:`live` recovers.

        vzmigrate undoes what it can when a step fails, but a stopped run
        may leave the container frozen: it is thawed here, and Nova's
        rollback removes what reached the destination.
        """
        container = self.listing.handle(instance.uuid)
        self._aborted.add(instance.uuid)
        if not priv_migration.stop_migration(container.ctid):
            self._aborted.discard(instance.uuid)
            raise nova_exception.NoActiveMigrationForInstance(
                instance_id=instance.uuid)

    def arrived_live(self, context, instance, network_info,
                     block_device_info):
        """Destination side, after the switch: volumes, config drive, console.

        The volumes come with their access withheld (see
        :meth:`~nova_openvz.volumes.ContainerVolumes.withhold`): each is
        granted under this host's device numbers and its node made again.
        """
        container = self.listing.handle(instance.uuid, fresh=True)
        grants = regrant_volumes(container, block_device_info)
        if grants:
            container.configure(*grants)
            for name, device in container.volume_nodes().items():
                container.run_script(
                    guestscripts.make_node_script(name, *device))
        if configdrive.required_by(instance):
            container.show_config_drive(configdrive.directory(instance))
        console.attach_quietly(instance, container)


def _stop_if_running(listing, instance):
    """Stop a container a failed step may have left running."""
    container = listing.handle(instance.uuid, fresh=True)
    if container.running:
        container.stop(fast=True)


def _resume_quietly(container):
    """Thaw a container a stopped vzmigrate may have left frozen."""
    try:
        container.thaw()
    except exception.HostToolError as e:
        # Not frozen (the usual case): vzctl says so.
        LOG.debug('Container %d not thawed: %s', container.ctid,
                  e.format_message())
