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

"""One OpenVZ container: its verbs and its config.

The driver asks a :class:`Container` to create, configure, start, stop,
restart, remove, freeze, thaw or snapshot itself, run a guest script
(:mod:`nova_openvz.guestscripts`) or keep a volume, an ephemeral disk or a
config drive; it never builds a command line.  The handle gets each argv
from its tool generation's renderer (:mod:`nova_openvz.vz4`), runs it
through :mod:`nova_openvz.hosttools` (files next to the container through
the privileged helper directly) and tells the listing
(:class:`nova_openvz.inventory.ContainerListing`) what it changed.  Its
config is read where vzctl keeps it (:mod:`nova_openvz.privsep.hostpaths`),
fresh at every read.

So following an instance from ``spawn`` to an argv is: driver -> settings
(:mod:`nova_openvz.settings`) -> handle -> renderer -> hosttools ->
privsep.
"""

import contextlib

from oslo_log import log as logging

from nova_openvz import conf as openvz_conf
from nova_openvz import exception
from nova_openvz import hosttools
from nova_openvz import privsep
from nova_openvz.privsep import containers as priv_containers
from nova_openvz.privsep import images as priv_images
from nova_openvz.privsep import stats as priv_stats
from nova_openvz import vz4

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF


def tools_version():
    """The host's vzctl version as Nova's integer (4.11.1 -> 4011001).

    :raises: ValueError when vzctl's answer holds no version.
    """
    tools = Container.tools
    return tools.version_number(hosttools.run('vzctl',
                                              *tools.version()).stdout)


class Container(object):
    """Container ``ctid``, made for instance ``instance_uuid``.

    :param listing: told of every change (None: nothing to tell).
    :param status: the listing's last word on its state, if known.
    :param paused: the listing saw it running with Nova's pause mark
        (:mod:`nova_openvz.pausing`): its processes are frozen.
    """

    #: The tool generation: its renderer and parsers.
    tools = vz4

    def __init__(self, ctid, instance_uuid=None, listing=None, status=None,
                 paused=False):
        self.ctid = int(ctid)
        self.instance_uuid = instance_uuid
        self.status = status
        self.paused = paused
        self._listing = listing

    def __repr__(self):
        return '<Container %d of %s>' % (self.ctid, self.instance_uuid)

    @property
    def running(self):
        return self.status == 'running'

    def changing(self):
        """Context: the driver changes it (so no lifecycle event)."""
        if self._listing is None or not self.instance_uuid:
            return contextlib.nullcontext()
        return self._listing.inflight.changing(self.instance_uuid)

    def _vzctl(self, argv, ok_codes=(0,), stdin=None, changes=True):
        try:
            with self.changing() if changes else contextlib.nullcontext():
                return hosttools.run('vzctl', *argv, ok_codes=ok_codes,
                                     stdin=stdin)
        finally:
            if changes and self._listing is not None and \
                    self.instance_uuid:
                self._listing.changed(self.instance_uuid, self.ctid)

    # -- lifecycle ---------------------------------------------------------

    def create(self, template, disk, identity):
        """Create the container from OS template ``template``.

        :param disk: :class:`nova_openvz.settings.Disk`.
        :param identity: :class:`nova_openvz.settings.Identity`.
        """
        self._vzctl(self.tools.create(self.ctid, template, disk, identity))

    def configure(self, *items):
        """Give the container these settings (live if it runs), saved."""
        self._vzctl(self.tools.configure(self.ctid, items))

    def start(self):
        """Start and wait for init; a running container is no error."""
        self._vzctl(self.tools.start(self.ctid),
                    ok_codes=(0, self.tools.EXIT_RUNNING))

    def stop(self, fast=False):
        """Halt inside, killed after STOP_TIMEOUT; ``fast``: kill at once."""
        self._vzctl(self.tools.stop(self.ctid, fast))

    def restart(self, fast=False):
        """Stop (as :meth:`stop`) if running, then start and wait."""
        self._vzctl(self.tools.restart(self.ctid, fast))

    def remove(self):
        """Kill and destroy the container and vzctl's leftover files.

        A container already gone is no error, nor one left mounted (by an
        operator's ``vzctl mount``, or a start cut short): stop leaves a
        container that is not running mounted, and destroy refuses it.
        """
        gone = (0, self.tools.EXIT_CONFIG_MISSING)
        removed = False
        try:
            with self.changing():
                self._vzctl(self.tools.stop(self.ctid, fast=True),
                            ok_codes=gone, changes=False)
                self._umount_leftover_snapshots()
                call = self._vzctl(
                    self.tools.destroy(self.ctid),
                    ok_codes=gone + (self.tools.EXIT_MOUNTED,), changes=False)
                if call.exit_code == self.tools.EXIT_MOUNTED:
                    self._vzctl(self.tools.umount(self.ctid), ok_codes=(
                        0, self.tools.EXIT_NOT_MOUNTED), changes=False)
                    self._vzctl(self.tools.destroy(self.ctid), ok_codes=gone,
                                changes=False)
                removed = True
                priv_containers.remove_destroyed_configs(self.ctid)
                priv_containers.remove_config_drive(self.ctid)
        finally:
            if self._listing is not None and self.instance_uuid:
                if removed:
                    self._listing.forget(self.instance_uuid)
                else:
                    # Still there, in some state: the next query reads it
                    # again (Nova's reaper must find it).
                    self._listing.changed(self.instance_uuid, self.ctid)

    def _umount_leftover_snapshots(self):
        """Unmount what a snapshot whose clean-up failed left mounted.

        Its mount dir, named after the CT, says so; nothing else does once
        the container's disk is gone.
        """
        for guid in priv_images.leftover_snapshot_mounts(self.ctid):
            try:
                priv_images.remove_snapshot_mount_dir(self.ctid, guid)
            except OSError:   # still mounted
                self.umount_snapshot(guid)
                priv_images.remove_snapshot_mount_dir(self.ctid, guid)

    def mount(self):
        """Mount its disk at VE_ROOT while stopped (mounted is no error)."""
        self._vzctl(self.tools.mount(self.ctid))

    def umount(self):
        """Unmount a stopped container.

        Not mounted is no error, nor running (its disk is in use, not
        mounted apart).
        """
        self._vzctl(self.tools.umount(self.ctid), ok_codes=(
            0, self.tools.EXIT_NOT_MOUNTED, self.tools.EXIT_RUNNING))

    def run_script(self, script, stopped_ok=False):
        """Run a shell script inside the container as root.

        The script travels on standard input, never on a command line.

        :param stopped_ok: a stopped container runs nothing, and that is
            no error.
        :returns: the :class:`nova_openvz.hosttools.ToolCall`.
        """
        ok_codes = (0, self.tools.EXIT_NOT_RUNNING) if stopped_ok else (0,)
        return self._vzctl(self.tools.run_script(self.ctid),
                           ok_codes=ok_codes, stdin=script, changes=False)

    # -- snapshots ---------------------------------------------------------

    def freeze(self):
        """Freeze the container's processes (it still lists as running)."""
        self._vzctl(self.tools.freeze(self.ctid), changes=False)

    def thaw(self):
        self._vzctl(self.tools.thaw(self.ctid), changes=False)

    def snapshot(self, guid):
        """Take a ploop snapshot ``guid`` of the disk (the caller froze)."""
        self._vzctl(self.tools.snapshot(self.ctid, guid), changes=False)

    def delete_snapshot(self, guid):
        """Merge snapshot ``guid`` back into the disk."""
        self._vzctl(self.tools.delete_snapshot(self.ctid, guid),
                    changes=False)

    def mount_snapshot(self, guid, target):
        self._vzctl(self.tools.mount_snapshot(self.ctid, guid, target),
                    changes=False)

    def umount_snapshot(self, guid):
        self._vzctl(self.tools.umount_snapshot(self.ctid, guid),
                    changes=False)

    # -- counters (diagnostics) -------------------------------------------

    def counters(self):
        """vzlist's record of its beancounters, disk usage and uptime.

        On a simulated host this call also brings the host's /proc files
        up to date, so read :meth:`vestat_line` after it.
        """
        call = hosttools.run('vzlist', *self.tools.list_counters(self.ctid),
                             ok_codes=(0, 1))
        records = self.tools.listing_records(call.stdout)
        return records[0] if records else None

    def vestat_line(self):
        """Its line of ``/proc/vz/vestat`` (root only), or None."""
        return priv_stats.vestat_line(self.ctid)

    def pack_private_area(self, filename):
        """tar the (simfs) private area into the staging dir."""
        hosttools.pack(priv_images.pack_private_area, self.ctid, filename,
                       what='private area of CT %d' % self.ctid)

    # -- checkpoints (reference 1.9) ---------------------------------------

    def suspend(self):
        """Checkpoint to ``$DUMPDIR/Dump.<CTID>`` and stop (``suspended``)."""
        self._vzctl(self.tools.checkpoint(self.ctid))

    def resume(self):
        """Restore from the dump file, which vzctl then deletes."""
        self._vzctl(self.tools.restore(self.ctid))

    # -- its config --------------------------------------------------------

    def config(self):
        """The container's config as vzctl saved it, read now."""
        return privsep.paths().container_config(self.ctid)

    @property
    def layout(self):
        """``ploop`` or ``simfs``."""
        return self.tools.layout(self.config(),
                                 privsep.paths().default_layout)

    @property
    def interfaces(self):
        """Its veth devices, as dicts (``ifname``, ``host_ifname``...)."""
        return self.tools.interfaces(self.config())

    @property
    def disk_size_kb(self):
        """Its disk size (DISKSPACE's hard limit) in KB, None when unset."""
        return self.tools.disk_size_kb(self.config())

    def disk_usage_kb(self):
        """KB its files use now, as vzlist reports it."""
        call = hosttools.run('vzlist', *self.tools.disk_usage(self.ctid))
        return self.tools.disk_usage_kb(call.stdout)

    @property
    def stop_timeout(self):
        """Its graceful stop window in seconds, or None when unset."""
        return self.tools.stop_timeout(self.config())

    # -- files next to it (action scripts) ---------------------------------

    def volume_nodes(self):
        """``{name: (major, minor)}`` of the volumes it gets at start."""
        return {name: tuple(numbers) for name, numbers in
                priv_containers.volume_nodes(self.ctid).items()}

    def keep_volume(self, name, path):
        """Record the volume at host device ``path`` as ``/dev/<name>``.

        :returns: ``((major, minor), previous)``; ``previous`` is what the
            name had before, or None.
        """
        try:
            device, previous = priv_containers.grant_volume(self.ctid, name,
                                                            path)
        except privsep.ArgumentRejected as e:
            raise exception.VolumeNotABlockDevice(path=path, reason=e)
        return tuple(device), tuple(previous) if previous else None

    def forget_volume(self, name):
        """Forget volume node ``name``; its ``(major, minor)`` or None."""
        previous = priv_containers.revoke_volume(self.ctid, name)
        return tuple(previous) if previous else None

    def make_ephemeral_disk(self, size_gb, fs_type, mountpoint):
        """An ext image in the private area, mounted at ``mountpoint``."""
        priv_containers.make_ephemeral_disk(self.ctid, size_gb, fs_type,
                                            mountpoint)

    def show_config_drive(self, source):
        """Show a root-owned copy of ``source`` at ``/config-drive``."""
        priv_containers.install_config_drive(self.ctid, source)

    def attach_console(self, directory):
        """Keep a console logger attached, logging into ``directory``."""
        return hosttools.attach_console(self.ctid, directory)
