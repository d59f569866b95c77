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

"""What a container is given, as typed values.

:mod:`nova_openvz.resources`, :mod:`nova_openvz.network` and
:mod:`nova_openvz.volumes` turn Nova's objects into these; a container
handle (:class:`nova_openvz.container.Container`) hands them to its tool
generation's renderer (:mod:`nova_openvz.vz4`), the one place that knows
how vzctl spells them.  No option strings here.
"""

import dataclasses
import typing


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who a new container is: its instance, as vzctl NAME/DESCRIPTION."""
    instance_uuid: str
    description: str
    hostname: str = ''


@dataclasses.dataclass(frozen=True)
class Disk:
    """A new container's disk: its layout and its size (soft = hard)."""
    layout: str
    size_gb: int


@dataclasses.dataclass(frozen=True)
class DiskSize:
    """An existing container's new disk size (soft = hard), live if it runs.

    ploop grows (or shrinks) its image online; simfs changes its quota.
    """
    size_gb: int


@dataclasses.dataclass(frozen=True)
class Power:
    """Boot at host start (None: left as is) and the graceful stop window."""
    stop_timeout: int
    onboot: typing.Optional[bool] = None


@dataclasses.dataclass(frozen=True)
class Limits:
    """A flavor's limits (doc/source/admin/flavors.rst).

    ``iolimit_mbps`` (``openvz:iolimit``) and ``iolimit_bps`` (Nova's disk
    QoS specs) are one limit in two units; at most one is set.
    """
    ram_mb: int
    swap_mb: int
    cpus: int
    cpuunits: int
    cpulimit: typing.Optional[int] = None
    ioprio: typing.Optional[int] = None
    iolimit_mbps: typing.Optional[int] = None
    iolimit_bps: typing.Optional[int] = None
    iopslimit: typing.Optional[int] = None
    numproc: typing.Optional[int] = None
    numfile: typing.Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Ports:
    """A container's Neutron ports and the DNS settings that come with them.

    ``nics`` are :class:`nova_openvz.network.Nic`; in routed mode their
    fixed IPs go on venet instead of a veth pair each.
    """
    nics: tuple
    routed: bool
    nameservers: tuple = ()
    searchdomain: str = ''


@dataclasses.dataclass(frozen=True)
class AddedPort:
    """One more port (veth pair) for an existing container."""
    nic: object


@dataclasses.dataclass(frozen=True)
class RemovedPort:
    """The container interface ``ifname`` goes."""
    ifname: str


@dataclasses.dataclass(frozen=True)
class DeviceAccess:
    """A block device granted to the container (``granted`` False: taken)."""
    major: int
    minor: int
    granted: bool = True


@dataclasses.dataclass(frozen=True)
class Description:
    """The container's DESCRIPTION, replaced (plain ``key=value`` words)."""
    text: str
