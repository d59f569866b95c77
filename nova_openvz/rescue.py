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

"""Rescue and unrescue: a second container that mends the server's root.

Rescue makes a *rescue container* from the rescue image (Nova passes the
image asked for, or the server's own), with the server's flavor limits and
its Neutron ports (the same MACs and host devices: Neutron's rules apply
to it), a config drive of its own carrying the rescue password when the
server has one, and root's password set to the rescue password.  The
server's container is stopped and mounted (``vzctl mount``), and the
rescue container's mount action script binds that root read-write at
``/mnt/rescue`` inside (:mod:`nova_openvz.privsep.rescue`): a file fixed
there is in the server after unrescue.  Volumes stay attached to the
stopped server and are not shown in the rescue container (no stable
device rescue).

The rescue container has no vzctl NAME; its DESCRIPTION names the rescued
instance (``nova-rescue=<uuid>``), so the listing finds it after any
restart and ``get_info`` reports its state while the server is rescued.
Unrescue removes it, its config drive and its scripts, unmounts the
server's root and starts the server again.  Each rescue step that made
something is undone if a later one fails.
"""

from nova import exception as nova_exception
from nova.image import glance
from nova import objects
from oslo_log import log as logging

from nova_openvz import conf as openvz_conf
from nova_openvz import configdrive
from nova_openvz import container as vz_container
from nova_openvz import guestscripts
from nova_openvz import inventory
from nova_openvz import network
from nova_openvz.privsep import rescue as priv_rescue
from nova_openvz import resources
from nova_openvz import rollback
from nova_openvz import settings
from nova_openvz import volumes

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF

#: Where the rescued server's root is inside the rescue container.
MOUNT_POINT = priv_rescue.MOUNT_POINT


def _rescue_handle(ctid):
    # No listing to tell: rescue and unrescue invalidate it at the end.
    return vz_container.Container(ctid)


def find(listing, instance_uuid, fresh=False):
    """The handle of an instance's rescue container, or None."""
    record = listing.find_rescue(instance_uuid, fresh=fresh)
    return None if record is None else _rescue_handle(record.ctid)


def _create(driver, context, instance, image_meta):
    if 'id' not in image_meta:
        # No rescue image named: the server's own, as Nova's default.
        image_meta = objects.ImageMeta.from_image_ref(
            context, glance.API(), instance.image_ref)
    template = driver.templates.ensure(context, instance, image_meta)
    identity = settings.Identity('', inventory.describe_rescue(instance.uuid),
                                 network.guest_hostname(instance.hostname))
    ctid = driver.allocator.reserve()
    try:
        handle = _rescue_handle(ctid)
        with rollback.undone_on_failure(handle.remove):
            handle.create(template, resources.disk(instance.flavor),
                          identity)
        return handle
    finally:
        driver.allocator.release(ctid)


def rescue(driver, context, instance, network_info, image_meta, password,
           block_device_info):
    """Rescue ``instance`` (see the module docstring)."""
    server = driver.listing.handle(instance.uuid, fresh=True)
    if find(driver.listing, instance.uuid) is not None:
        raise nova_exception.InstanceInvalidState(
            attr='rescue', instance_uuid=instance.uuid, state='rescued',
            method='rescue')
    nics = network.nics(network_info, server.interfaces)
    was_running = server.running
    try:
        handle = _create(driver, context, instance, image_meta)
        with rollback.undone_on_failure(_remove, handle, instance):
            if configdrive.required_by(instance):
                handle.show_config_drive(configdrive.build(
                    instance, network_info, password, None, rescue=True))
            handle.configure(
                settings.Power(max(1, CONF.shutdown_timeout), onboot=False),
                resources.limits(instance.flavor, volumes.swap_mb(
                    instance, block_device_info)),
                network.settings(nics))
            # The server stops before its rescuer takes its ports (Nova's
            # manager powered it off already, unless a caller did not).
            if was_running:
                server.stop()
            with rollback.undone_on_failure(_restart_server, driver,
                                            instance, server, network_info,
                                            nics, was_running):
                server.mount()
                priv_rescue.write_rescue_scripts(handle.ctid, server.ctid)
                network.replug_switch_ports(instance, network_info)
                driver._start(instance, handle, network_info, nics)
                # Nova's API always sends one (a generated one when the
                # user gave none); without one the image's stays.
                if password:
                    handle.run_script(guestscripts.password_script(
                        'root', password))
    finally:
        driver.listing.invalidate()
    LOG.info('Rescue container %d runs with the root of container %d at '
             '%s', handle.ctid, server.ctid, MOUNT_POINT, instance=instance)


def _remove(handle, instance):
    handle.remove()
    configdrive.remove_rescue(instance)


def _restart_server(driver, instance, server, network_info, nics,
                    was_running):
    server.umount()
    if was_running:
        network.replug_switch_ports(instance, network_info)
        driver._start(instance, server, network_info, nics)


def remove(listing, instance, fresh=False):
    """Remove the instance's rescue container if it has one.

    The listing's view suffices (rescue and unrescue refresh it), so a
    delete costs no extra listing of the host.

    :returns: whether there was one.
    """
    handle = find(listing, instance.uuid, fresh=fresh)
    if handle is None:
        configdrive.remove_rescue(instance)
        return False
    try:
        _remove(handle, instance)
    finally:
        listing.invalidate()
    return True


def unrescue(driver, instance):
    """Remove the rescue container and start the server again."""
    server = driver.listing.handle(instance.uuid, fresh=True)
    if not remove(driver.listing, instance, fresh=True):
        LOG.warning('No rescue container to remove', instance=instance)
    network_info = instance.get_network_info()
    try:
        _restart_server(driver, instance, server, network_info,
                        network.nics(network_info, server.interfaces), True)
    finally:
        driver.listing.invalidate()
    LOG.info('Container %d runs again after its rescue', server.ctid,
             instance=instance)
