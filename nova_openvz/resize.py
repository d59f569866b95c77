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

"""Resize on the same host, live: a new flavor on the running container.

vzctl changes a running container's memory, swap, CPUs, CPU weight and
limit, I/O limits and disk size without a restart (``vzctl set --save``,
reference 1.7 and 1.12), so a resize that stays on its host never stops
the guest.  Nova's flow is kept (doc/source/admin/resize.rst):

* ``migrate_disk_and_power_off`` (source): :func:`apply` checks the new
  flavor, then sets its limits and disk size live.  Anything refused or
  failed raises ``InstanceFaultRollback``, so Nova puts the server back to
  ACTIVE with the reason in its resize action; a failed set puts the old
  limits back.  Applying here rather than in ``finish_migration`` is what
  lets a failure roll back: Nova errors the server out on a failure there.
* ``finish_migration`` (destination, the same host): nothing left to do
  but start a container that was stopped when asked to.
* ``confirm_migration``: nothing to remove, the container is the server.
* revert: Nova calls ``destroy`` on the destination first (which is this
  very container: :func:`keeps_container` tells), then
  ``finish_revert_migration``, where :func:`revert` sets the old flavor's
  limits back, live too.
"""

import contextlib

from nova.compute import task_states
from nova import exception as nova_exception
from nova.i18n import _
from nova import objects
from oslo_log import log as logging

from nova_openvz import exception
from nova_openvz import resources
from nova_openvz import rollback
from nova_openvz import settings
from nova_openvz import volumes

LOG = logging.getLogger(__name__)

KB_PER_GB = 1024 ** 2


def migration_of(context, instance):
    """The migration record of the instance's move in progress, or None.

    Nova stores the claim's migration ID in the instance's migration
    context on the destination (``prep_resize``) and drops it after a
    confirm or revert.
    """
    migration_context = instance.migration_context
    if migration_context is None:
        return None
    return objects.Migration.get_by_id(context,
                                       migration_context.migration_id)


def stays_on_host(migration):
    """True for a resize whose source and destination are the same node.

    Compared on the migration record, not on the ``dest`` address Nova
    hands ``migrate_disk_and_power_off``: compute services sharing an
    address (several in one test, or behind one NAT) would look alike.
    """
    return (migration is not None and
            migration.source_compute == migration.dest_compute and
            migration.source_node == migration.dest_node)


def keeps_container(context, instance):
    """True when ``destroy`` is the first half of a same-host revert.

    Nova's revert calls ``destroy`` on the destination before
    ``finish_revert_migration`` on the source.  On the same host both are
    this one container, which must go on running: that call is known by
    the instance's task state (RESIZE_REVERTING, set by the API before
    the revert starts) and its migration staying on this host.  A delete
    during a revert is refused by Nova's API (the task state is busy), so
    no real delete is mistaken for it.
    """
    return (instance.task_state == task_states.RESIZE_REVERTING and
            stays_on_host(migration_of(context, instance)))


@contextlib.contextmanager
def kept_on_failure():
    """A tool's error as InstanceFaultRollback: Nova keeps the server.

    For steps that changed nothing, or whose change was undone.
    """
    try:
        yield
    except exception.HostToolError as e:
        raise nova_exception.InstanceFaultRollback(inner_exception=e)


def _refused(reason):
    """Nova's ResizeError, wrapped so that the server stays as it was."""
    return nova_exception.InstanceFaultRollback(
        inner_exception=nova_exception.ResizeError(reason=reason))


def check(container, instance, flavor):
    """Refuse a new flavor the running container cannot take live.

    Called before anything changes.  The disk may not shrink below what
    its files use or below the image's ``min_disk``; the layout (ploop or
    simfs) and the ephemeral disk, made at spawn, cannot change.

    :raises: InstanceFaultRollback wrapping ResizeError.
    """
    old, new = instance.flavor, flavor
    if resources.layout(old) != resources.layout(new):
        raise _refused(_('the disk layout cannot change from %(old)s to '
                         '%(new)s (openvz:layout)') % {
            'old': resources.layout(old), 'new': resources.layout(new)})
    if old.ephemeral_gb != new.ephemeral_gb:
        raise _refused(_('the ephemeral disk cannot change size '
                         '(%(old)d GB to %(new)d GB)') % {
            'old': old.ephemeral_gb, 'new': new.ephemeral_gb})
    new_gb = resources.root_gb(new)
    image = instance.image_meta
    min_disk = (image.min_disk or 0) if image.obj_attr_is_set('min_disk') \
        else 0
    if new_gb < min_disk:
        raise _refused(_('the image needs a disk of at least %(min)d GB, '
                         'the new flavor gives %(new)d GB') % {
            'min': min_disk, 'new': new_gb})
    size_kb = container.disk_size_kb
    if size_kb is not None and new_gb * KB_PER_GB < size_kb:
        used_kb = container.disk_usage_kb()
        if used_kb > new_gb * KB_PER_GB:
            raise _refused(_('the disk holds %(used).1f GB, more than the '
                             'new flavor\'s %(new)d GB') % {
                'used': used_kb / KB_PER_GB, 'new': new_gb})


def apply(container, instance, flavor, block_device_info=None):
    """Give the container ``flavor``'s limits and disk size, live.

    The limits go first, in one ``vzctl set``; the disk last, since its
    change is the one that cannot be taken back cheaply (a ploop image
    grows online, and shrinking a mounted one is not always possible).  A
    failure of either puts the old limits back and raises.

    :raises: InstanceFaultRollback wrapping ResizeError (refused) or the
        tool's error (failed), so the server stays as it was.
    """
    check(container, instance, flavor)
    old = resources.limits(instance.flavor,
                           volumes.swap_mb(instance, block_device_info))
    # Nova resizes a swap mapping to the new flavor's swap on finish.
    new = resources.limits(flavor)
    with kept_on_failure(), \
            rollback.undone_on_failure(container.configure, old):
        container.configure(new)
        set_disk(container, flavor)
    LOG.info('Container %d resized live to flavor %s', container.ctid,
             flavor.name, instance=instance)


def set_disk(container, flavor):
    """Give the container ``flavor``'s disk size, if it has another.

    Live on a running container, or on a stopped one (a container that
    arrived from another host grows there before it starts).
    """
    new_gb = resources.root_gb(flavor)
    if container.disk_size_kb != new_gb * KB_PER_GB:
        container.configure(settings.DiskSize(new_gb))


def revert(container, instance, block_device_info=None):
    """Put the (already reverted) ``instance.flavor``'s limits back, live.

    The disk is shrunk back when it grew; when the tool refuses (its files
    no longer fit, or the host cannot shrink a mounted ploop image online)
    the container keeps the larger disk, which is logged: the revert
    itself, limits and all, still succeeds rather than leave the server
    in ERROR.
    """
    flavor = instance.flavor
    container.configure(resources.limits(
        flavor, volumes.swap_mb(instance, block_device_info)))
    old_gb = resources.root_gb(flavor)
    size_kb = container.disk_size_kb
    if size_kb is not None and size_kb != old_gb * KB_PER_GB:
        try:
            container.configure(settings.DiskSize(old_gb))
        except exception.HostToolError as e:
            LOG.warning('Container %(ctid)d keeps its %(size)d GB disk after '
                        'the revert to %(old)d GB: %(error)s',
                        {'ctid': container.ctid, 'size': size_kb // KB_PER_GB,
                         'old': old_gb, 'error': e.format_message()},
                        instance=instance)
    LOG.info('Container %d back to flavor %s', container.ctid, flavor.name,
             instance=instance)
