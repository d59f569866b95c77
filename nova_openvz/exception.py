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

"""One Nova exception class per failure of the OpenVZ driver.

Every host tool failure becomes a :class:`HostToolError` subclass carrying the
tool's own message and exit code, so a server fault tells the operator what
vzctl said.
"""

from nova import exception
from nova.i18n import _


class HostToolError(exception.NovaException):
    msg_fmt = _("%(tool)s %(command)s failed with exit code %(exit_code)s: "
                "%(detail)s")

    def __init__(self, message=None, **kwargs):
        self.tool = kwargs.get('tool')
        self.command = kwargs.get('command')
        self.exit_code = kwargs.get('exit_code')
        self.stderr = kwargs.get('stderr', '')
        self.stdout = kwargs.get('stdout', '')
        super().__init__(message, **kwargs)


class ContainerLocked(HostToolError):
    """Exit 9: another vzctl holds the container lock, even after retries."""


class ContainerConfigMissing(HostToolError):
    """Exit 14: the container's config file does not exist."""


class CheckpointFailed(HostToolError):
    """Exit 16: checkpoint (suspend, or the freeze of a pause) failed."""


class RestoreFailed(HostToolError):
    """Exit 17: restore from the dump file failed."""


class ContainerNotRunning(HostToolError):
    """Exit 31: the operation needs a running container."""


class ContainerRunning(HostToolError):
    """Exit 32: the operation needs a stopped container."""


class ContainerStopFailed(HostToolError):
    """Exit 33: the container did not stop within the timeout."""


class PrivateAreaMissing(HostToolError):
    """Exit 43: the container's private area does not exist."""


class PrivateAreaExists(HostToolError):
    """Exit 44: a private area already exists for that container ID."""


class TemplateNotFound(HostToolError):
    """Exit 29 or 91: no OS template given or found in the cache."""


class TemplateUnpackFailed(HostToolError):
    """Exit 46 or 48: the template could not be unpacked."""


class InvalidToolArgument(HostToolError):
    """Exit 20 or 21: the tool rejected an argument."""


class BadKernel(HostToolError):
    """Exit 5: not an OpenVZ kernel, or its modules are not loaded."""


class PloopImageCorrupt(HostToolError):
    """ploop exit 11: the delta's header or size is not a ploop image's."""


class PloopMountFailed(HostToolError):
    """ploop exit 21: the filesystem in the image could not be mounted."""


class PloopUmountFailed(HostToolError):
    """ploop exit 22: the image's filesystem could not be unmounted."""


class PloopImageInUse(HostToolError):
    """ploop exit 37: the image is already attached to a device."""


class PloopDescriptorInvalid(HostToolError):
    """ploop exit 39: DiskDescriptor.xml is missing, bad or unwritable."""


class PloopNotMounted(HostToolError):
    """ploop exit 40: the image is not mounted."""


class ToolTimeout(HostToolError):
    msg_fmt = _("%(tool)s %(command)s did not finish within %(timeout)s "
                "seconds and was killed")


class ContainerLeftBehind(exception.NovaException):
    """A failed spawn's container could not be removed; a delete will.

    Short: a server fault keeps 255 characters, and both errors matter.
    """
    msg_fmt = _("%(error)s; removing CT %(ctid)s failed: %(cleanup)s")


class HostNotReady(exception.NovaException):
    msg_fmt = _("OpenVZ host is not usable: %(reason)s")


class InvalidFlavorLimit(exception.Invalid):
    msg_fmt = _("Flavor setting %(key)s=%(value)s cannot be applied to an "
                "OpenVZ container: %(reason)s")


class ContainerIdExhausted(exception.NovaException):
    msg_fmt = _("No free container ID at or above %(start)s")


class BootFromVolumeNotSupported(exception.InvalidInput):
    msg_fmt = _("An OpenVZ container's root file system is its own disk "
                "image and cannot live on a Cinder volume: boot from an "
                "image, and attach volumes as data disks")


class EphemeralNotSupported(exception.InvalidInput):
    msg_fmt = _("This ephemeral disk cannot be given to an OpenVZ "
                "container: %(reason)s")


class VolumeConnectFailed(exception.NovaException):
    msg_fmt = _("Volume %(volume_id)s could not be connected on the host: "
                "%(reason)s")


class VolumeExtendFailed(exception.NovaException):
    msg_fmt = _("Volume %(volume_id)s could not be extended on the host: "
                "%(reason)s")


class VolumeNotABlockDevice(exception.NovaException):
    msg_fmt = _("The volume's host device %(path)s cannot be given to a "
                "container: %(reason)s")


class VolumeMountedInside(exception.MigrationPreCheckError):
    msg_fmt = _("A volume mounted inside the container cannot move live "
                "(vzmigrate does not take a mount of an outside device "
                "along): %(mounts)s; unmount it in the guest, or cold "
                "migrate")


class MigrationPeerUnreachable(HostToolError):
    """vzmigrate exit 4: no passwordless root ssh to the peer host."""


class ContainerExistsOnPeer(HostToolError):
    """vzmigrate exit 9: the peer has a container with the same CT ID.

    vzmigrate keeps the CT ID and cannot renumber; the move is refused.
    """


class MigrationIPInUse(HostToolError):
    """vzmigrate exit 12: the container's addresses are in use there."""


class MigrationPeerNotReady(HostToolError):
    """vzmigrate exit 14, 16, 19: OpenVZ, ploop or vz.conf missing there."""


class MigrationCopyFailed(HostToolError):
    """vzmigrate exit 6: copying the private area or config failed."""


class MigrationStartFailed(HostToolError):
    """vzmigrate exit 7: the container did not start on the peer."""


class MigrationSourceFailed(HostToolError):
    """vzmigrate exit 8: stopping or checkpointing the source failed."""


class MigratedContainerMissing(exception.NovaException):
    msg_fmt = _("No container of instance %(instance_uuid)s was moved away "
                "from this host (no <CTID>.conf.migrated names it)")
