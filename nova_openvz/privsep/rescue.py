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

"""A rescued server's root inside its rescue container.

The rescue container's mount action scripts (``<CTID>.mount``, which vzctl
runs on the host after mounting the rescue container's VE_ROOT, before its
init starts; ``<CTID>.umount`` before unmounting it) bind the rescued
container's VE_ROOT, mounted by ``vzctl mount``, at :data:`MOUNT_POINT`
inside.  Only the root file system comes: not the rescued server's own
mounts under it (its ephemeral disk, config drive).
"""

from nova_openvz import privsep
from nova_openvz.privsep import containers

#: Where the rescued server's root appears inside the rescue container.
MOUNT_POINT = '/mnt/rescue'
_TAG = 'rescue'


@privsep.vz_pctxt.entrypoint
def write_rescue_scripts(rescue_ctid, rescued_ctid):
    """Bind ``rescued_ctid``'s root at MOUNT_POINT of ``rescue_ctid``.

    Both must be containers the driver may name (CT IDs in its range);
    the paths come from their configs, never from the caller.
    """
    for ctid in (rescue_ctid, rescued_ctid):
        containers.check_nova_ctid(ctid)
    if int(rescue_ctid) == int(rescued_ctid):
        raise privsep.ArgumentRejected('a container cannot rescue itself')
    root = containers._container_paths(int(rescue_ctid))[1]
    source = containers._container_paths(int(rescued_ctid))[1]
    target = privsep.checked_path(root + MOUNT_POINT)
    # The rescue image's own links must not send the mount to the host,
    # and only a mount at exactly this path is undone.
    steps = MOUNT_POINT.strip('/').split('/')
    no_links = ''.join("[ -L '%s' ] && exit 1; " % (
        root + '/' + '/'.join(steps[:i])) for i in range(1, len(steps) + 1))
    containers._write_managed(
        containers._script_path(rescue_ctid, 'mount'), _TAG, [
            # vzctl mounts a container only on an empty VE_ROOT: an empty
            # one is not mounted.
            "[ -n \"$(ls -A '%s' 2>/dev/null)\" ] || { echo 'the rescued "
            "root %s is not mounted' >&2; exit 1; }" % (source, source),
            "%smkdir -p '%s' && mount -n --bind '%s' '%s' || exit 1"
            % (no_links, target, source, target)])
    containers._write_managed(
        containers._script_path(rescue_ctid, 'umount'), _TAG, [
            "if grep -qs ' %s ' /proc/mounts; then umount -n '%s' || "
            "exit 1; fi" % (target, target)])
