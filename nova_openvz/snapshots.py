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

"""Nova snapshots of containers, uploaded to Glance as OS templates.

A snapshot never stops the server.  For a ploop container (reference 1.10)
the container is frozen (``vzctl chkpnt --suspend``) only while vzctl
takes a ploop snapshot without a memory dump (``--skip-suspend``), then
thawed; the snapshot is mounted read-only (``snapshot-mount``), packed by
the privileged helper into a gzip tarball of the root filesystem, unmounted
and deleted (``snapshot-delete`` merges it back).  A simfs container has no
ploop snapshots: it stays frozen while its private area is packed.  The
tarball is what ``vzctl create`` unpacks, so the image boots again like any
OS template (``disk_format=raw``, ``container_format=bare``).

Every step that made something undoes it, in reverse order, whether the
snapshot succeeds or fails.  A freeze is the one step a dying nova-compute
cannot leave behind unseen: vzlist lists a frozen container as running, so
the container's DESCRIPTION says it (:data:`inventory.SNAPSHOT_FREEZE_WORD`)
from before the freeze until after the thaw, and the next nova-compute
thaws what it finds so marked (:func:`thaw_leftovers`).
"""

import contextlib
import os
import uuid

from nova.compute import task_states
from nova.image import glance
from nova import objects
from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import fileutils

from nova_openvz import conf as openvz_conf
from nova_openvz import console
from nova_openvz import exception
from nova_openvz import hosttools
from nova_openvz import inventory
from nova_openvz.privsep import images as priv_images
from nova_openvz import rollback
from nova_openvz import settings

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF

IMAGE_API = glance.API()


def _thaw_or_restart(instance, container):
    """Thaw; a container that cannot be thawed is restarted, not left frozen.

    Nova goes on showing the server running and nothing in its API could
    thaw a frozen container, so it is killed and started again (as
    libvirt starts a guest again after a failed cold snapshot): it runs,
    as Nova shows it, with its console log.
    """
    try:
        container.thaw()
    except Exception:
        with excutils.save_and_reraise_exception():
            _restart(instance, container)


def _restart(instance, container):
    LOG.error('CT %d could not be thawed: restarting it', container.ctid,
              instance=instance)
    container.restart(fast=True)
    console.attach_quietly(instance, container)


def _mark_frozen(container, description, frozen):
    container.configure(settings.Description(inventory.with_word(
        description, inventory.SNAPSHOT_FREEZE_WORD, frozen)))


@contextlib.contextmanager
def _frozen(instance, container, description):
    """Freeze the container's processes for the block.

    :param description: the container's DESCRIPTION, or None to leave its
        processes as they are (a stopped or paused container).
    """
    if description is None:
        yield
        return
    _mark_frozen(container, description, True)
    with rollback.undone_by(_mark_frozen, container, description, False):
        container.freeze()
        with rollback.undone_by(_thaw_or_restart, instance, container):
            yield


def thaw_leftovers(listing, records):
    """Thaw the containers a dead nova-compute left frozen for a snapshot.

    Only those whose DESCRIPTION holds the freeze word: every other
    container costs nothing here.  Whether the freeze happened is not
    known (it may have died just before it), and vzctl does not say what
    a thaw of a container that is not frozen does, so a thaw that fails
    restarts the container, as after a failed thaw in a snapshot.

    :param records: ``{instance_uuid: ContainerRecord}`` of the listing.
    """
    for instance_uuid, record in records.items():
        if not record.snapshot_freeze_mark:
            continue
        instance = objects.Instance(uuid=instance_uuid)
        container = listing.new_handle(record.ctid, instance_uuid,
                                       record.status, record.paused)
        try:
            if record.status == 'running' and not record.paused:
                LOG.warning('CT %d was left frozen by a snapshot cut short: '
                            'thawing it', record.ctid, instance=instance)
                try:
                    container.thaw()
                except exception.HostToolError as e:
                    LOG.warning('%s', e.format_message(), instance=instance)
                    _restart(instance, container)
            _mark_frozen(container, record.description, False)
        except Exception:
            # The next start tries again; the other containers go on.
            LOG.exception('CT %d: could not undo the freeze of a snapshot '
                          'cut short', record.ctid, instance=instance)


def _delete_unless_mounted(container, guid):
    """Merge the snapshot back, unless its unmount failed.

    A snapshot still mounted keeps its mount dir: deleting the server
    unmounts it then (:meth:`Container.remove`), which needs the snapshot.
    """
    if guid in priv_images.leftover_snapshot_mounts(container.ctid):
        LOG.warning('Snapshot %s of CT %d is still mounted; it goes when '
                    'the server is deleted', guid, container.ctid)
        return
    container.delete_snapshot(guid)


def _pack_ploop(instance, container, freeze_description, filename):
    guid = str(uuid.uuid4())
    with contextlib.ExitStack() as undo:
        with _frozen(instance, container, freeze_description):
            container.snapshot(guid)
            # Entered while still frozen, so a failing thaw deletes it too.
            undo.enter_context(
                rollback.undone_by(_delete_unless_mounted, container, guid))
        ctid = container.ctid
        target = priv_images.make_snapshot_mount_dir(ctid, guid)
        with rollback.undone_by(priv_images.remove_snapshot_mount_dir,
                                ctid, guid):
            container.mount_snapshot(guid, target)
            with rollback.undone_by(container.umount_snapshot, guid):
                hosttools.pack(priv_images.pack_snapshot, ctid, guid,
                               filename,
                               what='snapshot of CT %d' % container.ctid)


def _pack_simfs(instance, container, freeze_description, filename):
    with _frozen(instance, container, freeze_description):
        container.pack_private_area(filename)


def _remove(path):
    if os.path.lexists(path):
        os.unlink(path)


def snapshot(context, instance, container, description, image_id,
             update_task_state):
    """Snapshot the instance's container into the Glance image ``image_id``.

    :param container: its :class:`~nova_openvz.container.Container`.
    :param description: its DESCRIPTION as the listing saw it.
    """
    update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
    fileutils.ensure_tree(CONF.openvz.image_staging_dir)
    filename = 'snapshot-%s.tar.gz' % image_id
    path = os.path.join(CONF.openvz.image_staging_dir, filename)
    _remove(path)   # a leftover of a crashed attempt would block O_EXCL
    with rollback.undone_by(_remove, path):
        # A paused container is frozen already, and must stay so.
        freeze_description = description if container.running and \
            not container.paused else None
        if container.layout == 'ploop':
            _pack_ploop(instance, container, freeze_description, filename)
        else:
            _pack_simfs(instance, container, freeze_description, filename)
        LOG.info('Packed CT %d into %d bytes for image %s', container.ctid,
                 os.path.getsize(path), image_id, instance=instance)
        update_task_state(task_state=task_states.IMAGE_UPLOADING,
                          expected_state=task_states.IMAGE_PENDING_UPLOAD)
        metadata = {'disk_format': 'raw', 'container_format': 'bare'}
        # ImageNotFound (deleted meanwhile) goes up: Nova's manager
        # handles it.
        with open(path, 'rb') as data:
            IMAGE_API.update(context, image_id, metadata, data,
                             purge_props=False)
    LOG.info('Snapshot uploaded as image %s', image_id, instance=instance)
