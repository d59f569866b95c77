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

"""Flavors to container limits, and the host's resources to placement.

Flavor mapping (see doc/source/admin/flavors.rst):

==================================  =========================================
flavor                              container
==================================  =========================================
memory_mb                           PHYSPAGES (``--ram <memory_mb>M``)
swap (MB), or the swap BDM's size    SWAPPAGES (``--swap <swap>M``)
vcpus                               CPUS (visible CPUs)
root_gb (0: [openvz]default_root_gb)  DISKSPACE soft = hard = root_gb
openvz:cpuunits, quota:cpu_shares,  CPUUNITS (weight), first one set wins
vcpus * [openvz]cpuunits_per_vcpu
openvz:cpulimit, or                 CPULIMIT in percent of one CPU
quota:cpu_quota / quota:cpu_period
(per vCPU, as libvirt applies it)
openvz:ioprio/iolimit/iopslimit     IOPRIO / IOLIMIT (MB/s) / IOPSLIMIT
quota:disk_{read,write,total}_      IOLIMIT (bytes/s), unless openvz:iolimit
bytes_sec                           is set: the smallest value set
quota:disk_{read,write,total}_      IOPSLIMIT, unless openvz:iopslimit is
iops_sec                            set: the smallest value set
openvz:numproc, openvz:numfile      NUMPROC / NUMFILE
==================================  =========================================
"""

import os

import os_resource_classes as orc

from nova_openvz import conf as openvz_conf
from nova_openvz import extra_specs
from nova_openvz import settings

CONF = openvz_conf.CONF

CPUUNITS_MIN = 8
CPUUNITS_MAX = 500000
DEFAULT_CPU_PERIOD = 100000


def root_gb(flavor):
    return flavor.root_gb or CONF.openvz.default_root_gb


def layout(flavor):
    return extra_specs.value(flavor, 'layout', CONF.openvz.layout)


def disk(flavor):
    """A new container's disk: the flavor's layout, root_gb as its size."""
    return settings.Disk(layout(flavor), root_gb(flavor))


def _cpuunits(flavor):
    units = extra_specs.value(flavor, 'cpuunits')
    if units is None and 'quota:cpu_shares' in flavor.extra_specs:
        # Nova's API accepts any share from 0; CPUUNITS is the same kind of
        # relative weight within vzctl's range, so clamp rather than fail.
        shares = extra_specs.check(
            'quota:cpu_shares', flavor.extra_specs['quota:cpu_shares'],
            {'type': int, 'min': 0})
        units = max(CPUUNITS_MIN, min(CPUUNITS_MAX, shares))
    if units is None:
        units = min(CPUUNITS_MAX,
                    flavor.vcpus * CONF.openvz.cpuunits_per_vcpu)
    return units


def _cpulimit(flavor):
    limit = extra_specs.value(flavor, 'cpulimit')
    if limit is not None:
        return limit
    quota = flavor.extra_specs.get('quota:cpu_quota')
    if quota is None:
        return None
    quota = extra_specs.check('quota:cpu_quota', quota, {'type': int})
    if quota <= 0:
        return 0
    # Nova documents a period of 0 as "no value": the kernel's default.
    period = extra_specs.check(
        'quota:cpu_period', flavor.extra_specs.get('quota:cpu_period', 0),
        {'type': int, 'min': 0, 'max': 1000000}) or DEFAULT_CPU_PERIOD
    # Whole numbers only: Nova allows quotas up to 2^64, past float range.
    # Each vCPU gets quota/period of a CPU, so more than the period each
    # is no limit beyond the vCPUs themselves.
    percent = -(-100 * quota * flavor.vcpus // period)
    return min(percent, 100 * flavor.vcpus)


#: Nova's disk QoS extra specs, by the one vzctl limit each becomes.
DISK_QOS = {
    'iolimit': ('quota:disk_read_bytes_sec', 'quota:disk_write_bytes_sec',
                'quota:disk_total_bytes_sec'),
    'iopslimit': ('quota:disk_read_iops_sec', 'quota:disk_write_iops_sec',
                  'quota:disk_total_iops_sec'),
}


def _disk_qos(flavor, name):
    """The one OpenVZ limit for Nova's read/write/total disk specs.

    OpenVZ has a single bandwidth and a single IOPS limit for all of a
    container's I/O.  The smallest value set is used, so that no limit the
    flavor sets is exceeded (reads and writes together stay below each);
    0 means "no limit", as in Nova.
    """
    values = [extra_specs.check(key, flavor.extra_specs[key],
                                {'type': int, 'min': 0})
              for key in DISK_QOS[name] if key in flavor.extra_specs]
    values = [value for value in values if value]
    return min(values) if values else None


def limits(flavor, swap_mb=None):
    """The :class:`~nova_openvz.settings.Limits` of a flavor.

    :param swap_mb: the swap size when a swap block device mapping changes
        the flavor's.
    """
    swap = flavor.swap if swap_mb is None else swap_mb
    specs = {name: extra_specs.value(flavor, name)
             for name in ('ioprio', 'iolimit', 'iopslimit', 'numproc',
                          'numfile')}
    return settings.Limits(
        ram_mb=flavor.memory_mb, swap_mb=swap or 0, cpus=flavor.vcpus,
        cpuunits=_cpuunits(flavor), cpulimit=_cpulimit(flavor),
        ioprio=specs['ioprio'], iolimit_mbps=specs['iolimit'],
        iolimit_bps=(None if specs['iolimit'] is not None
                     else _disk_qos(flavor, 'iolimit')),
        iopslimit=(specs['iopslimit'] if specs['iopslimit'] is not None
                   else _disk_qos(flavor, 'iopslimit')),
        numproc=specs['numproc'], numfile=specs['numfile'])


def disk_gb(path):
    """Total and free GB of the filesystem holding ``path``."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize // 1024 ** 3
    free = st.f_bavail * st.f_frsize // 1024 ** 3
    return total, free


def inventory(vcpus, memory_mb, local_gb, ratios, reserved_disk_gb):
    """Placement inventory of the host's VCPU, MEMORY_MB and DISK_GB."""
    return {
        orc.VCPU: {
            'total': vcpus, 'min_unit': 1, 'max_unit': vcpus,
            'step_size': 1, 'allocation_ratio': ratios[orc.VCPU],
            'reserved': CONF.reserved_host_cpus,
        },
        orc.MEMORY_MB: {
            'total': memory_mb, 'min_unit': 1, 'max_unit': memory_mb,
            'step_size': 1, 'allocation_ratio': ratios[orc.MEMORY_MB],
            'reserved': CONF.reserved_host_memory_mb,
        },
        orc.DISK_GB: {
            'total': local_gb, 'min_unit': 1, 'max_unit': local_gb,
            'step_size': 1, 'allocation_ratio': ratios[orc.DISK_GB],
            'reserved': reserved_disk_gb,
        },
    }
