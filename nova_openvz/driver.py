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

"""Nova compute driver for OpenVZ containers.

Load it with ``compute_driver = openvz.OpenVZDriver``.  This module only
orchestrates: Nova's objects become typed settings (:mod:`.resources`,
:mod:`.network`, :mod:`.volumes`), which a container handle
(:mod:`.container`) applies; no command line is built here (see
doc/source/contributor/design.rst).
"""

import os
import re

from nova.compute import power_state
from nova import context as nova_context
from nova import exception as nova_exception
from nova.objects import fields
from nova.virt import driver
from nova.virt import hardware
from nova.virt import node as virt_node
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import excutils

from nova_openvz import conf as openvz_conf
from nova_openvz import configdrive
from nova_openvz import console
from nova_openvz import container as vz_container
from nova_openvz import diagnostics
from nova_openvz import events
from nova_openvz import exception
from nova_openvz import guestscripts
from nova_openvz import hostinfo
from nova_openvz import images
from nova_openvz import inventory
from nova_openvz import migration
from nova_openvz import network
from nova_openvz import pausing
from nova_openvz import power
from nova_openvz import privsep
from nova_openvz import rescue as vz_rescue
from nova_openvz import resize
from nova_openvz import resources
from nova_openvz import rollback
from nova_openvz import settings
from nova_openvz import snapshots
from nova_openvz import volumes

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF

TOOLS = ('vzctl', 'vzlist')
_USER_RE = re.compile(r'^[a-z_][a-z0-9_-]{0,31}\Z')
# How often spawn retries with a new CT ID when another vzctl user took
# the one it picked (exit 9 or 44).
CTID_ATTEMPTS = 3


class OpenVZDriver(driver.ComputeDriver):
    """Runs Nova instances as OpenVZ containers."""

    capabilities = dict(driver.ComputeDriver.capabilities)
    capabilities.update({
        # OS template tarballs are uploaded to Glance as raw/bare images.
        'supports_image_type_raw': True,
        # ploop images are converted to OS templates, once per host.
        'supports_image_type_ploop': True,
        # Neutron ports join and leave a running container live.
        'supports_attach_interface': True,
        # manage_image_cache removes templates no instance uses.
        'has_imagecache': True,
        # The container uses the host's block device: os-brick's view of
        # the new size is the container's (COMPUTE_VOLUME_EXTEND).
        'supports_extend_volume': True,
        # A resize may stay on the host (allow_resize_to_same_host) and is
        # then live (resize.py).  A cold migration with the same flavor
        # must leave the host, or it would move nothing: this capability
        # (COMPUTE_SAME_HOST_COLD_MIGRATE) would let it stay.
        'supports_migrate_to_same_host': False,
        # A server of a dead host is built again from its image elsewhere.
        'supports_evacuate': True,
    })

    def __init__(self, virtapi):
        super().__init__(virtapi)
        self.facts = hostinfo.HostFacts()
        self.listing = inventory.ContainerListing()
        self.allocator = inventory.CtidAllocator(self.listing)
        self.templates = images.TemplateCache()
        self.volumes = volumes.ContainerVolumes()
        self.hypervisor_version = 0
        self.lifecycle_events = None
        self.moves = migration.CrossHost(self)
        network.initialize()

    # Host ------------------------------------------------------------------

    def init_host(self, host):
        """Check the tools, their version and vz.conf; fail loudly."""
        problems = privsep.paths().problems()
        for tool in TOOLS:
            path = '%s/%s' % (CONF.openvz.tools_dir, tool)
            if not _is_executable(path):
                problems.append('%s is missing or not executable' % path)
        if not problems:
            try:
                self.hypervisor_version = vz_container.tools_version()
            except (exception.HostToolError, ValueError) as e:
                problems.append('vzctl --version failed: %s' % e)
        if not problems:
            try:
                self.facts.get()
            except exception.HostNotReady as e:
                problems.append(str(e))
        if problems:
            raise exception.HostNotReady(reason='; '.join(problems))
        images.clear_staging()
        containers = self.listing.all(fresh=True)
        LOG.info('OpenVZ host ready: vzctl %s, %d containers of Nova',
                 self.hypervisor_version, len(containers))
        snapshots.thaw_leftovers(self.listing, containers)
        if CONF.openvz.lifecycle_event_interval > 0 and \
                self.lifecycle_events is None:
            self.lifecycle_events = events.LifecyclePoller(
                self.listing, self.listing.inflight, self.emit_event,
                CONF.openvz.lifecycle_event_interval)
            self.lifecycle_events.start()

    def cleanup_host(self, host):
        """Stop the lifecycle event poller, waiting for a poll under way."""
        if self.lifecycle_events is not None:
            self.lifecycle_events.stop(timeout=CONF.openvz.tool_timeout)
            self.lifecycle_events = None

    def get_available_nodes(self, refresh=False):
        return [CONF.host]

    def get_host_ip_addr(self):
        return CONF.my_ip

    def get_host_uptime(self):
        return processutils.execute('env', 'LANG=C', 'uptime')[0]

    def get_available_resource(self, nodename):
        # Nova's periodic resource update is the driver's only regular
        # call: copies kept for moves that ended elsewhere go then.
        self.moves.remove_abandoned_copies(
            nova_context.get_admin_context())
        facts = self.facts.get()
        total_gb, free_gb = resources.disk_gb(
            privsep.paths().private_parent())
        owned = self.listing.all().values()
        return {
            'vcpus': facts['vcpus'],
            'memory_mb': facts['memory_mb'],
            'local_gb': total_gb,
            'vcpus_used': sum(c.cpus for c in owned),
            'memory_mb_used': sum(c.memory_limit_kb for c in owned) // 1024,
            'local_gb_used': total_gb - free_gb,
            'hypervisor_type': fields.HVType.OPENVZ,
            'hypervisor_version': self.hypervisor_version,
            'hypervisor_hostname': nodename,
            'cpu_info': self.facts.cpu_info_json(),
            'disk_available_least': free_gb,
            'supported_instances': [(facts['arch'], fields.HVType.OPENVZ,
                                     fields.VMMode.EXE)],
            'numa_topology': None,
            # The host's stable node identity, as libvirt gives it.
            'uuid': virt_node.get_local_node_uuid(),
        }

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        facts = self.facts.get()
        total_gb, _free = resources.disk_gb(privsep.paths().private_parent())
        ratios = self._get_allocation_ratios(
            provider_tree.data(nodename).inventory)
        provider_tree.update_inventory(nodename, resources.inventory(
            facts['vcpus'], facts['memory_mb'], total_gb, ratios,
            self._get_reserved_host_disk_gb_from_config()))

    # Inventory of containers -------------------------------------------------

    def list_instances(self):
        """Nova's instance names of the containers this driver made."""
        return [c.instance_name for c in self.listing.all().values()
                if c.instance_name]

    def list_instance_uuids(self):
        return list(self.listing.all())

    def instance_exists(self, instance):
        return self.listing.find(instance.uuid) is not None

    def get_num_instances(self):
        return len(self.listing.all())

    def get_info(self, instance, use_cache=True):
        try:
            container = self.listing.find(instance.uuid, fresh=not use_cache)
            # A rescued server is its rescue container, as Nova sees it.
            rescue = container and self.listing.find_rescue(instance.uuid)
        except exception.HostToolError as e:
            # Nova asks right after a boot or a change succeeded, and a
            # failure there orphans the container (a boot's is not cleaned
            # up): the state is unknown until the next power sync.
            LOG.warning('Power state unknown: %s', e.format_message(),
                        instance=instance)
            return hardware.InstanceInfo(state=power_state.NOSTATE)
        if container is None:
            raise nova_exception.InstanceNotFound(instance_id=instance.uuid)
        return hardware.InstanceInfo(state=power.of(rescue or container))

    def _container(self, instance, fresh=False):
        """The instance's listing record and its container handle.

        :param fresh: read it now (one vzlist call for it alone).
        """
        record = self.listing.find(instance.uuid, fresh=fresh)
        if record is None:
            raise nova_exception.InstanceNotFound(instance_id=instance.uuid)
        return record, self.listing.new_handle(
            record.ctid, instance.uuid, record.status, record.paused)

    def _changing(self, instance):
        """Context: the driver changes the instance (no lifecycle event)."""
        return self.listing.inflight.changing(instance.uuid)

    # Lifecycle -------------------------------------------------------------

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        volumes.check_boot(instance, block_device_info)
        nics = network.nics(network_info)
        template = self.templates.ensure(context, instance, image_meta)
        container = self._create(instance, template, settings.Identity(
            instance.uuid, inventory.describe(instance.uuid, instance.name),
            network.guest_hostname(instance.hostname)))
        try:
            grants = self.volumes.prepare_spawn(
                container, instance, block_device_info,
                resources.layout(instance.flavor))
            if configdrive.required_by(instance):
                container.show_config_drive(configdrive.build(
                    instance, network_info, admin_password, injected_files))
            # Nova's own shutdown_timeout becomes the graceful stop window,
            # so a normal power off needs no extra call (0 means vzctl's
            # default there, hence at least 1).
            container.configure(
                settings.Power(max(1, CONF.shutdown_timeout), onboot=False),
                resources.limits(instance.flavor,
                                 volumes.swap_mb(instance, block_device_info)),
                *grants, network.settings(nics))
            # Attached before the first start, the log shows init's start.
            console.attach_quietly(instance, container)
            if power_on:
                self._start(instance, container, network_info, nics,
                            wait_for_ports=True)
        except Exception as error:
            with excutils.save_and_reraise_exception() as ctxt:
                console.remove(instance)
                left = self._remove_quietly(container, instance)
                network.unplug(instance, network_info, quiet=True)
                configdrive.remove(instance)
                self._disconnect_quietly(block_device_info, instance)
                ctxt.reraise = left is None
            # The fault must say a container stayed, and why: Nova's
            # destroy (or a later delete) removes it once the cause is gone.
            raise exception.ContainerLeftBehind(
                ctid=container.ctid, error=_said(error),
                cleanup=_said(left)) from error
        LOG.info('Container %d created%s', container.ctid,
                 ' and running' if power_on else '', instance=instance)

    def _create(self, instance, template, identity):
        """Create the instance's container under a free CT ID; its handle.

        Retried with another ID when another vzctl user took the one
        picked (exit 9 or 44).
        """
        tried = set()
        for attempt in range(CTID_ATTEMPTS):
            container = self.listing.new_handle(
                self.allocator.reserve(avoid=tried), instance.uuid)
            tried.add(container.ctid)
            try:
                container.create(template, resources.disk(instance.flavor),
                                 identity)
                return container
            except (exception.ContainerLocked,
                    exception.PrivateAreaExists) as e:
                # Someone else took this ID between our look and create.
                LOG.warning('CT ID %d was taken (%s), picking another',
                            container.ctid, e.format_message(),
                            instance=instance)
                if attempt == CTID_ATTEMPTS - 1:
                    raise
            except Exception:
                with excutils.save_and_reraise_exception():
                    self._remove_quietly(container, instance)
            finally:
                self.allocator.release(container.ctid)

    def _start(self, instance, container, network_info, nics,
               wait_for_ports=False):
        """Plug the ports, start the container, configure its interfaces.

        With ``wait_for_ports``, wait (as libvirt does) for Neutron's
        network-vif-plugged events of ports not yet active: the host ends
        appear when vzctl starts the container.
        """
        events = network.plugged_events(network_info) if wait_for_ports \
            else []
        try:
            with self.virtapi.wait_for_instance_event(
                    instance, events, timeout=CONF.vif_plugging_timeout,
                    error_callback=_neutron_failed):
                network.plug(instance, network_info)
                container.start()
        except nova_exception.InstanceEventTimeout:
            if CONF.vif_plugging_is_fatal:
                raise nova_exception.VirtualInterfaceCreateException()
            LOG.warning('Neutron did not report every port plugged; going '
                        'on since vif_plugging_is_fatal is False',
                        instance=instance)
        self._configure_interfaces(container, nics, every=True)

    def _configure_interfaces(self, container, nics, every=False):
        """Write and apply the interfaces' addresses inside the guest.

        ``every``: ``nics`` are all the container's interfaces, so files
        of interfaces detached while it was stopped are forgotten too.
        """
        if nics and not network.routed():
            container.run_script(guestscripts.network_script(nics,
                                                             prune=every))

    def _remove_quietly(self, container, instance):
        """Clean up after a failed spawn without hiding its error.

        :returns: the removal's own error, None when the container is gone.
        """
        try:
            container.remove()
        except Exception as e:
            LOG.exception('Could not remove container %d after a failed '
                          'spawn', container.ctid, instance=instance)
            return e
        return None

    def _disconnect_quietly(self, block_device_info, instance):
        try:
            self.volumes.disconnect_all(block_device_info, instance)
        except Exception:
            LOG.exception('Could not disconnect the volumes of a failed '
                          'spawn', instance=instance)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        """Remove the container; a container already gone is no error.

        With ``destroy_disks=False`` the container is only stopped, so its
        disk and config stay for a later start on this host.  The first
        half of a revert of a resize on this host keeps the container
        running (see :func:`nova_openvz.resize.keeps_container`).
        """
        if resize.keeps_container(context, instance):
            LOG.info('Resize reverted on this host: the container stays, '
                     'its old flavor comes back live', instance=instance)
            return
        self.cleanup(context, instance, network_info, block_device_info,
                     destroy_disks)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True):
        try:
            container = self.listing.handle(instance.uuid, fresh=True)
        except nova_exception.InstanceNotFound:
            container = None
        if destroy_disks:
            console.remove(instance)
            vz_rescue.remove(self.listing, instance)
        if container is None:
            LOG.info('Container already gone', instance=instance)
        elif destroy_disks:
            container.remove()
        else:
            container.stop(fast=True)
        if destroy_vifs:
            network.unplug(instance, network_info, quiet=True)
        if destroy_disks:
            configdrive.remove(instance)
        # The host side of the volumes goes in every case, as with libvirt.
        self.volumes.disconnect_all(block_device_info, instance)

    def reboot(self, context, instance, network_info, reboot_type,
               block_device_info=None, bad_volumes_callback=None,
               accel_info=None, share_info=None):
        """Restart the container.

        Soft: halt inside the container, killed after its STOP_TIMEOUT,
        then start.  Hard: kill, then start.
        """
        record, container = self._container(instance)
        console.attach_quietly(instance, container)
        # Before the restart: the port is deleted with its old device and
        # added again to wait for the new one vzctl makes at start.
        network.replug_switch_ports(instance, network_info)
        with self._changing(instance):
            # Nova hard-reboots a paused server too: the restart kills the
            # frozen processes, and the pause mark must go with them.
            container.restart(fast=reboot_type == 'HARD')
            pausing.forget(container, record.description)

    # Pause and suspend ------------------------------------------------------

    def pause(self, instance):
        """Freeze every process of the container (:mod:`.pausing`)."""
        # Fresh: the DESCRIPTION is rewritten from what vzlist shows now.
        record, container = self._container(instance, fresh=True)
        with self._changing(instance):
            pausing.pause(container, record.description)

    def unpause(self, instance):
        """Thaw the container; one Nova did not pause is left as it is."""
        record, container = self._container(instance, fresh=True)
        if not record.paused:
            LOG.warning('Container %d is not paused; nothing to unpause',
                        record.ctid, instance=instance)
            return
        with self._changing(instance):
            pausing.unpause(container, record.description)

    def suspend(self, context, instance):
        """Checkpoint to the dump file and stop (``vzctl chkpnt``).

        vzlist then shows the container ``suspended``.  Its ports are
        unplugged as at power off: their host ends went with it.
        """
        container = self.listing.handle(instance.uuid, fresh=True)
        with self._changing(instance):
            container.suspend()
        network.unplug(instance, instance.get_network_info(), quiet=True)

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None):
        """Restore from the dump file (``vzctl restore``), which goes.

        On a host whose kernel cannot restore memory (a simulated host
        without CRIU) the container boots again from its disk instead; the
        guest's interfaces are configured again for that case, which
        changes nothing in a guest restored with its memory.
        """
        container = self.listing.handle(instance.uuid, fresh=True)
        console.attach_quietly(instance, container)
        with self._changing(instance):
            network.plug(instance, network_info)
            if container.status == 'suspended':
                container.resume()
            else:
                # No dump to restore (never suspended, or it was lost):
                # what Nova wants is a running server.
                LOG.warning('Container %d is %s, not suspended; starting '
                            'it', container.ctid, container.status,
                            instance=instance)
                container.start()
        self._configure_interfaces(
            container, network.nics(network_info, container.interfaces),
            every=True)

    def power_off(self, instance, timeout=0, retry_interval=0):
        """Graceful halt within ``timeout`` seconds, else killed.

        vzctl sends the halt once and kills the container when its
        STOP_TIMEOUT expires, so ``retry_interval`` has nothing to repeat.
        The ports are unplugged once the container is down.
        """
        record, container = self._container(instance)
        with self._changing(instance):
            if record.paused:
                # A frozen guest cannot halt; Nova stops a paused server
                # only when its power sync finds it stopped already.
                container.thaw()
            if timeout <= 0:
                # As libvirt: no window (os_shutdown_timeout 0 or below) is
                # a hard stop, never a STOP_TIMEOUT vzctl would refuse.
                container.stop(fast=True)
            else:
                if container.stop_timeout != timeout:
                    container.configure(settings.Power(timeout))
                container.stop()
            pausing.forget(container, record.description)
        network.unplug(instance, instance.get_network_info(), quiet=True)

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        record, container = self._container(instance)
        console.attach_quietly(instance, container)
        with self._changing(instance):
            # A pause mark left by a container that stopped while paused
            # would call the started one PAUSED.
            pausing.forget(container, record.description)
            self._start(instance, container, network_info,
                        network.nics(network_info, container.interfaces))

    def resume_state_on_host_boot(self, context, instance, network_info,
                                  share_info, block_device_info=None):
        """Bring the server back running.

        A stopped container is started; one suspended is restored from its
        dump (vzctl start restores a container with a dump file); one
        paused is thawed.
        """
        record, container = self._container(instance)
        if record.paused:
            self.unpause(instance)
        elif power.from_vzlist(container.status) != power_state.RUNNING:
            self.power_on(context, instance, network_info, block_device_info)
        else:
            console.attach_quietly(instance, container)
            network.plug(instance, network_info)

    # Resize and migration ----------------------------------------------------
    # A resize that stays on this host is live (resize.py): the container
    # is never stopped.  A move to another host goes through vzmigrate
    # (migration.py).

    def migrate_disk_and_power_off(self, context, instance, dest,
                                   flavor, network_info,
                                   block_device_info=None,
                                   timeout=0, retry_interval=0):
        """Same host: apply the new flavor live; nothing is powered off.

        A refused or failed resize raises InstanceFaultRollback (the
        server stays ACTIVE, or SHUTOFF, with the reason in the action).
        Another host: vzmigrate copies the container there.
        """
        migration = resize.migration_of(context, instance)
        if resize.stays_on_host(migration):
            with resize.kept_on_failure():
                container = self.listing.handle(instance.uuid, fresh=True)
            resize.apply(container, instance, flavor, block_device_info)
            # No disk moved: finish_migration has nothing to receive.
            return jsonutils.dumps([])
        return self.moves.send(context, instance, dest, flavor, network_info,
                               block_device_info, timeout, retry_interval)

    def finish_migration(self, context, migration, instance, disk_info,
                         network_info, image_meta, resize_instance,
                         allocations, block_device_info=None, power_on=True,
                         share_info=None):
        if resize.stays_on_host(migration):
            # The new flavor is in place since migrate_disk_and_power_off.
            self._power_on_if_stopped(context, instance, network_info,
                                      block_device_info, power_on)
            return
        self.moves.receive(context, migration, instance, disk_info,
                           network_info, resize_instance, block_device_info,
                           power_on)

    def confirm_migration(self, context, migration, instance, network_info):
        if resize.stays_on_host(migration):
            # Nothing to remove: the container is the server.
            return
        self.moves.confirm(context, migration, instance, network_info)

    def finish_revert_migration(self, context, instance, network_info,
                                migration, block_device_info=None,
                                power_on=True, share_info=None):
        """Same host: the old flavor's limits (and disk) back, live."""
        if resize.stays_on_host(migration):
            resize.revert(self.listing.handle(instance.uuid, fresh=True),
                          instance, block_device_info)
            self._power_on_if_stopped(context, instance, network_info,
                                      block_device_info, power_on)
            return
        self.moves.revert(context, instance, network_info, migration,
                          block_device_info, power_on)

    def _power_on_if_stopped(self, context, instance, network_info,
                             block_device_info, power_on):
        """Start a container Nova wants running that is not (it stopped)."""
        if power_on and not self.listing.handle(instance.uuid,
                                                fresh=True).running:
            self.power_on(context, instance, network_info, block_device_info)

    def check_can_live_migrate_destination(self, context, instance,
                                           src_compute_info, dst_compute_info,
                                           block_migration=False,
                                           disk_over_commit=False):
        return self.moves.check_destination()

    def cleanup_live_migration_destination_check(self, context,
                                                 dest_check_data):
        """Nothing to undo: the destination check made nothing."""

    def check_can_live_migrate_source(self, context, instance,
                                      dest_check_data,
                                      block_device_info=None):
        return self.moves.check_source(instance, dest_check_data,
                                       block_device_info)

    def pre_live_migration(self, context, instance, block_device_info,
                           network_info, disk_info, migrate_data):
        return self.moves.prepare_destination(instance, network_info,
                                              migrate_data, block_device_info)

    def live_migration(self, context, instance, dest,
                       post_method, recover_method, block_migration=False,
                       migrate_data=None):
        self.moves.live(context, instance, dest, post_method, recover_method,
                        block_migration, migrate_data)

    def live_migration_abort(self, instance):
        self.moves.abort(instance)

    def post_live_migration(self, context, instance, block_device_info,
                            migrate_data=None):
        """vzmigrate removed the source container; its volumes remain."""
        self.volumes.disconnect_all(block_device_info, instance)

    def post_live_migration_at_source(self, context, instance, network_info):
        network.unplug(instance, network_info, quiet=True)

    def post_live_migration_at_destination(self, context, instance,
                                           network_info,
                                           block_migration=False,
                                           block_device_info=None):
        self.moves.arrived_live(context, instance, network_info,
                                block_device_info)

    def rollback_live_migration_at_destination(self, context, instance,
                                               network_info,
                                               block_device_info,
                                               destroy_disks=True,
                                               migrate_data=None):
        """Remove what a failed move left here (vzmigrate undoes its own)."""
        self.cleanup(context, instance, network_info, block_device_info,
                     destroy_disks=destroy_disks)

    # Networking --------------------------------------------------------------

    def plug_vifs(self, instance, network_info):
        network.plug(instance, network_info)

    def unplug_vifs(self, instance, network_info):
        network.unplug(instance, network_info)

    def attach_interface(self, context, instance, image_meta, vif):
        """Give the container a new port; live when it runs."""
        container = self.listing.handle(instance.uuid)
        if network.routed():
            raise nova_exception.InterfaceAttachFailed(
                instance_uuid=instance.uuid)
        nic = network.nics([vif], container.interfaces)[0]
        network.plug(instance, [vif])
        with rollback.undone_on_failure(network.unplug, instance, [vif],
                                        True):
            # Live on a running container; saved for the next start anyway.
            container.configure(settings.AddedPort(nic))
            # A guest that cannot take it must not keep the NETIF entry
            # and its veth: the port is Neutron's again after a failure.
            with rollback.undone_on_failure(container.configure,
                                            settings.RemovedPort(nic.ifname)):
                if container.running:
                    self._configure_interfaces(container, [nic])

    def detach_interface(self, context, instance, vif):
        container = self.listing.handle(instance.uuid)
        ifname = network.interface_of(vif, container.interfaces)
        if ifname is None:
            LOG.warning('Port %s is not in the container; nothing to detach',
                        vif['id'], instance=instance)
        else:
            restore = []
            if container.running:
                restore = network.nics([vif], container.interfaces)
                container.run_script(
                    guestscripts.remove_interface_script(ifname))
            # The guest forgot the interface: while the container keeps the
            # port, so must the guest (Nova still shows it attached).
            with rollback.undone_on_failure(self._configure_interfaces,
                                            container, restore):
                container.configure(settings.RemovedPort(ifname))
        network.unplug(instance, [vif])

    # Inside the guest ----------------------------------------------------

    def get_console_output(self, context, instance):
        """The console log's last 100 KiB: what init and the guest printed.

        Each byte is one character (Latin-1); Nova's API returns ASCII.
        """
        return console.output(instance, self.listing.handle(instance.uuid))

    def get_serial_console(self, context, instance):
        """A TCP port where nova-serialproxy reaches the container's console.

        The host's console agent serves it (``[serial_console]``
        ``proxyclient_address`` and ``port_range``) while logging it;
        ConsoleTypeUnavailable when ``[serial_console] enabled`` is False.
        """
        return console.serial(instance, self.listing.handle(instance.uuid))

    def set_admin_password(self, instance, new_pass):
        """Set the password with the guest's chpasswd; never in an argv."""
        user = instance.image_meta.properties.get('os_admin_user', 'root')
        if not _USER_RE.match(user):
            raise nova_exception.InvalidInput(
                reason='os_admin_user %r is not a user name' % user)
        try:
            script = guestscripts.password_script(user, new_pass)
        except ValueError as e:
            raise nova_exception.InvalidInput(reason=str(e))
        self.listing.handle(instance.uuid).run_script(script)

    # Rescue ----------------------------------------------------------------

    def rescue(self, context, instance, network_info, image_meta,
               rescue_password, block_device_info, share_info=None):
        """A rescue container with the server's root at /mnt/rescue.

        See :mod:`nova_openvz.rescue`; the server's container is stopped
        until :meth:`unrescue`.
        """
        vz_rescue.rescue(self, context, instance, network_info, image_meta,
                         rescue_password, block_device_info)

    def unrescue(self, context, instance):
        vz_rescue.unrescue(self, instance)

    # Diagnostics -----------------------------------------------------------

    def _diagnostics_sample(self, instance):
        container = self.listing.handle(instance.uuid, fresh=True)
        return container, diagnostics.Sample(
            container, privsep.paths().root_dir(container.ctid))

    def get_instance_diagnostics(self, instance):
        """CPU, memory, disk and interface counters from the host's own.

        See :mod:`nova_openvz.diagnostics` for where each figure comes from.
        """
        container, sample = self._diagnostics_sample(instance)
        return diagnostics.instance_diagnostics(
            instance, sample, power.from_vzlist(sample.status),
            configdrive.required_by(instance))

    def get_diagnostics(self, instance):
        """The legacy form, with every beancounter's five columns."""
        return diagnostics.legacy_diagnostics(
            self._diagnostics_sample(instance)[1])

    def get_host_cpu_stats(self):
        return diagnostics.host_cpu_stats()

    # Images ---------------------------------------------------------------

    def manage_image_cache(self, context, all_instances):
        self.templates.manage(all_instances)

    def snapshot(self, context, instance, image_id, update_task_state):
        """Snapshot a running or stopped server without stopping it."""
        try:
            record, container = self._container(instance, fresh=True)
        except nova_exception.InstanceNotFound:
            raise nova_exception.InstanceNotRunning(instance_id=instance.uuid)
        snapshots.snapshot(context, instance, container, record.description,
                           image_id, update_task_state)

    # Volumes ---------------------------------------------------------------

    def default_root_device_name(self, instance, image_meta, root_bdm):
        """``/dev/vda``, so volumes are named ``/dev/vdb``... as on KVM.

        A container's root is no block device; the name only anchors the
        names Nova gives volumes, which images and Trove expect at vdb.
        """
        return volumes.ROOT_DEVICE_NAME

    def get_volume_connector(self, instance):
        return volumes.connector_properties()

    def attach_volume(self, context, connection_info, instance, mountpoint,
                      disk_bus=None, device_type=None, encryption=None):
        self.volumes.attach(self.listing.handle(instance.uuid),
                            connection_info, mountpoint, encryption)

    def detach_volume(self, context, connection_info, instance, mountpoint,
                      encryption=None):
        try:
            container = self.listing.handle(instance.uuid, fresh=True)
        except nova_exception.InstanceNotFound:
            container = None
        self.volumes.detach(container, connection_info, mountpoint)

    def extend_volume(self, context, connection_info, instance,
                      requested_size):
        self.volumes.extend(connection_info, requested_size)


def _neutron_failed(event_name, instance):
    LOG.error('Neutron reported failure on event %(event)s',
              {'event': event_name}, instance=instance)
    if CONF.vif_plugging_is_fatal:
        raise nova_exception.VirtualInterfaceCreateException()


def _is_executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _said(error):
    """An error's message as a server fault shows it."""
    if isinstance(error, nova_exception.NovaException):
        return error.format_message()
    return str(error) or type(error).__name__
