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

"""Diagnostics of a container from the host's own counters.

Nova shows them with ``openstack server show --diagnostics`` (the standard
:class:`nova.objects.diagnostics.Diagnostics`, microversion 2.48 and
later) and in the legacy form (a flat dict).  One sample of a container
costs one ``vzlist`` call and three small file reads:

* ``vzlist -j -o <beancounters>,diskspace,... <CTID>``: every beancounter
  of ``/proc/user_beancounters`` with its held, maxheld, barrier, limit
  and failcnt (reference 3.3, 5.1), the disk usage (ploop file system
  statistics or vzquota) and the uptime.  Memory used is physpages held,
  the limit physpages' limit (VSwap), as reference 5.3 says.
* ``/proc/vz/vestat`` (root only, read by the privileged helper): the
  container's CPU time, user + nice + system in USER_HZ ticks, as
  libvirt's OpenVZ driver reads it.
* ``/sys/class/net/<host end>/statistics``: the counters of each veth's
  host end; what the host end sends the container receives, so rx and tx
  are swapped to the container's view (as libvirt shows a tap).
* ``/sys/dev/block/<major:minor>/stat`` of the device under the
  container's root (its ploop device): reads and writes, in requests and
  bytes.  A simfs container shares the host's file system and has none.

:func:`host_cpu_stats` reads the host's ``/proc/stat`` (its own kernel:
nova-compute runs on the host) for ``get_host_cpu_stats``.
"""

import os

from nova.compute import power_state
from nova.objects import diagnostics as diagnostics_obj
from oslo_log import log as logging
from oslo_utils import units

from nova_openvz.privsep import commands

LOG = logging.getLogger(__name__)

#: Nova's API (and its Diagnostics object) names only four drivers in
#: diagnostics: ``ironic``, ``libvirt``, ``vmwareapi`` and ``xenapi``.  The
#: closest is libvirt (whose OpenVZ driver reads the same vestat); the
#: ``hypervisor`` field says ``openvz``.
API_DRIVER_NAME = 'libvirt'
#: Every beancounter, in vzlist's order.
BEANCOUNTERS = commands.VZLIST_UBC
COLUMNS = ('held', 'maxheld', 'barrier', 'limit', 'failcnt')
#: LONG_MAX (and the 32-bit INT_MAX) mean "unlimited" (reference 5.1).
UNLIMITED = (2 ** 63 - 1, 2 ** 31 - 1)
PAGE_SIZE = 4096
SECTOR = 512
#: /sys/class/net/<dev>/statistics names, as the host end counts them.
_NIC_COUNTERS = ('rx_bytes', 'rx_packets', 'rx_errors', 'rx_dropped',
                 'tx_bytes', 'tx_packets', 'tx_errors', 'tx_dropped')


def clock_ticks():
    return os.sysconf('SC_CLK_TCK')


# -- parsers ------------------------------------------------------------------

def parse_vestat_line(line):
    """``{'user', 'nice', 'system', 'uptime'}`` (ticks) of a vestat line.

    None when the line is not one container's numbers (the header).
    """
    fields = (line or '').split()
    if len(fields) < 5 or not all(f.isdigit() for f in fields[:5]):
        return None
    user, nice, system, uptime = (int(f) for f in fields[1:5])
    return {'user': user, 'nice': nice, 'system': system, 'uptime': uptime}


def cpu_time_ns(vestat, hz=None):
    """CPU time in ns from vestat's ticks (LV ``openvzGetProcessInfo``)."""
    hz = hz or clock_ticks()
    return (vestat['user'] + vestat['nice'] + vestat['system']) * \
        10 ** 9 // hz


def beancounters(record):
    """``{name: {held, maxheld, barrier, limit, failcnt}}`` of a record."""
    found = {}
    for name in BEANCOUNTERS:
        value = (record or {}).get(name)
        if isinstance(value, dict):
            found[name] = {column: int(value.get(column) or 0)
                           for column in COLUMNS}
    return found


def parse_host_stat(text):
    """Nova's host CPU stats (ns) from the first line of ``/proc/stat``."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == 'cpu':
            ticks = [int(f) for f in fields[1:]] + [0] * 8
            ns = 10 ** 9 // clock_ticks()
            user, nice, system, idle, iowait, irq, softirq = ticks[:7]
            return {'user': (user + nice) * ns,
                    'kernel': (system + irq + softirq) * ns,
                    'idle': idle * ns, 'iowait': iowait * ns}
    raise ValueError('no cpu line in /proc/stat')


def parse_cpu_mhz(text):
    """The first ``cpu MHz`` of ``/proc/cpuinfo`` as an int, else 0."""
    for line in text.splitlines():
        key, _, value = line.partition(':')
        if key.strip() == 'cpu MHz':
            try:
                return int(float(value))
            except ValueError:
                break
    return 0


def parse_block_stat(text):
    """``(read requests, read bytes, write requests, write bytes)``.

    The fields of ``/sys/block/<dev>/stat`` (the kernel's
    Documentation/block/stat): reads completed, reads merged, sectors read,
    ..., writes completed, writes merged, sectors written, ...
    """
    fields = [int(f) for f in text.split()]
    return fields[0], fields[2] * SECTOR, fields[4], fields[6] * SECTOR


# -- one sample ---------------------------------------------------------------

def _read(path, size=65536):
    """A small kernel file's text, in one read.

    Plain ``os`` calls: sysfs and procfs attributes are read whole at once
    (and Nova's functional harness forbids ``open()`` on /sys, which the
    tests through Nova's API run under).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, size).decode('ascii', 'replace')
    finally:
        os.close(fd)


def nic_counters(host_ifname, sys_net='/sys/class/net'):
    """The host end's counters as the container sees them, or None."""
    base = os.path.join(sys_net, host_ifname, 'statistics')
    try:
        host = {name: int(_read(os.path.join(base, name)))
                for name in _NIC_COUNTERS}
    except (OSError, ValueError):
        return None
    return {'rx_octets': host['tx_bytes'], 'rx_packets': host['tx_packets'],
            'rx_errors': host['tx_errors'], 'rx_drop': host['tx_dropped'],
            'tx_octets': host['rx_bytes'], 'tx_packets': host['rx_packets'],
            'tx_errors': host['rx_errors'], 'tx_drop': host['rx_dropped']}


def disk_counters(root):
    """I/O of the block device under ``root``, or None if it has none.

    Only a device of the container's own (a ploop or loop device) counts:
    a root on the host's own file system (simfs) would report the host's.
    """
    try:
        device = os.stat(root).st_dev
        host_device = os.stat(os.path.dirname(root)).st_dev
    except OSError:
        return None
    if device == host_device or os.major(device) == 0:
        return None
    try:
        return parse_block_stat(_read('/sys/dev/block/%d:%d/stat' % (
            os.major(device), os.minor(device))))
    except (OSError, ValueError, IndexError):
        return None


class Sample(object):
    """What the host's counters say about one container, read now."""

    def __init__(self, container, root):
        self.container = container
        record = container.counters() or {}
        self.status = record.get('status') or container.status
        self.ubc = beancounters(record)
        self.disk_usage = record.get('diskspace') or {}
        self.uptime = record.get('uptime')
        line = None
        if self.status == 'running':
            try:
                line = container.vestat_line()
            except OSError as e:
                LOG.warning('Cannot read /proc/vz/vestat: %s', e)
        self.vestat = parse_vestat_line(line)
        self.nics = [(device, nic_counters(device['host_ifname']))
                     for device in container.interfaces
                     if device.get('host_ifname')]
        self.disk_io = disk_counters(root) if self.status == 'running' \
            else None

    @property
    def cpu_time_ns(self):
        return cpu_time_ns(self.vestat) if self.vestat else 0

    def _page_mb(self, name, column):
        pages = self.ubc.get(name, {}).get(column, 0)
        return None if pages in UNLIMITED else pages * PAGE_SIZE // units.Mi

    @property
    def memory_used_mb(self):
        return self._page_mb('physpages', 'held') or 0

    @property
    def memory_limit_mb(self):
        return self._page_mb('physpages', 'limit')


def instance_diagnostics(instance, sample, state, config_drive):
    """Nova's standard diagnostics object of a sample."""
    diags = diagnostics_obj.Diagnostics(
        state=power_state.STATE_MAP[state], driver=API_DRIVER_NAME,
        hypervisor='openvz', hypervisor_os='linux',
        uptime=int(sample.uptime or 0), config_drive=config_drive)
    diags.memory_details = diagnostics_obj.MemoryDiagnostics(
        maximum=sample.memory_limit_mb or instance.flavor.memory_mb,
        used=sample.memory_used_mb)
    # vestat counts the whole container, not each of its CPUs.
    diags.add_cpu(id=0, time=sample.cpu_time_ns)
    if sample.disk_io is not None:
        reads, read_bytes, writes, write_bytes = sample.disk_io
        diags.add_disk(read_bytes=read_bytes, read_requests=reads,
                       write_bytes=write_bytes, write_requests=writes,
                       errors_count=0)
    for device, counters in sample.nics:
        diags.add_nic(mac_address=(device.get('mac') or '').lower() or None,
                      **(counters or {}))
    return diags


def legacy_diagnostics(sample):
    """The legacy form: flat names to numbers.

    ``cpu0_time`` (ns), ``memory`` and ``memory-actual`` (KiB, as libvirt),
    ``<ifname>_rx``/``_tx`` (bytes) and ``_rx_packets``... per interface,
    ``disk_read_bytes``..., ``disk_used_kb``, and every beancounter's five
    columns as ``ubc_<name>_<column>`` (its failcnt shows a container
    hitting that limit).
    """
    result = {'cpu0_time': sample.cpu_time_ns,
              'memory': sample.memory_used_mb * 1024,
              'uptime': int(sample.uptime or 0)}
    if sample.memory_limit_mb is not None:
        result['memory-actual'] = sample.memory_limit_mb * 1024
    for device, counters in sample.nics:
        for key, value in (counters or {}).items():
            name = key.replace('_octets', '')
            result['%s_%s' % (device['ifname'], name)] = value
    if sample.disk_io is not None:
        (result['disk_read_requests'], result['disk_read_bytes'],
         result['disk_write_requests'], result['disk_write_bytes']) = \
            sample.disk_io
    for key in ('usage', 'softlimit', 'hardlimit'):
        if sample.disk_usage.get(key) is not None:
            result['disk_%s_kb' % key] = sample.disk_usage[key]
    for name, columns in sorted(sample.ubc.items()):
        for column, value in columns.items():
            result['ubc_%s_%s' % (name, column)] = value
    return result


def host_cpu_stats():
    """``get_host_cpu_stats``: cumulative ns since boot, and the MHz."""
    stats = parse_host_stat(_read('/proc/stat'))
    try:
        stats['frequency'] = parse_cpu_mhz(_read('/proc/cpuinfo', 1 << 20))
    except OSError:
        stats['frequency'] = 0
    return stats
