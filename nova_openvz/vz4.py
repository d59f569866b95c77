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

"""Legacy OpenVZ's tools (vzctl 4.x, vzlist, ploop; tag V4): the renderer.

The one place that spells command lines: each function returns the argv
of one verb, built from the table of commands
(:mod:`nova_openvz.privsep.commands`), which checks it; the typed settings
(:mod:`nova_openvz.settings`) become vzctl options in small functions, one
per setting, rendered once in :func:`configure`.  It also reads what these
tools write: a container's config (:func:`layout`, :func:`interfaces`,
:func:`stop_timeout`) and vzlist's JSON (:func:`listing_records`).

A container handle (:class:`nova_openvz.container.Container`) and the
listing (:mod:`nova_openvz.inventory`) use only this module's functions,
so OpenVZ 7's vzctl (tag V9 in the reference) would be a second module
with the same functions behind the same handle.
"""

import json
import re

from nova_openvz import exception
from nova_openvz.privsep import commands
from nova_openvz.privsep import vzconf
from nova_openvz import settings

#: vzctl exit codes the handle treats as "already so" (reference 1).
EXIT_CONFIG_MISSING = 14
EXIT_NOT_RUNNING = 31
EXIT_RUNNING = 32
EXIT_NOT_MOUNTED = 40
EXIT_MOUNTED = 41
_VERSION_RE = re.compile(r'vzctl version (\d+)\.(\d+)(?:\.(\d+))?')

# -- settings, one small function each ---------------------------------------


def _power(power):
    options = []
    if power.onboot is not None:
        options.append(('--onboot', 'yes' if power.onboot else 'no'))
    return options + [('--stop-timeout', power.stop_timeout)]


def _limits(limits):
    options = [('--ram', '%dM' % limits.ram_mb),
               ('--swap', '%dM' % limits.swap_mb),
               ('--cpus', limits.cpus), ('--cpuunits', limits.cpuunits)]
    if limits.cpulimit is not None:
        options.append(('--cpulimit', limits.cpulimit))
    if limits.ioprio is not None:
        options.append(('--ioprio', limits.ioprio))
    # --iolimit takes MB/s unless a unit is given.
    if limits.iolimit_mbps is not None:
        options.append(('--iolimit', limits.iolimit_mbps))
    elif limits.iolimit_bps is not None:
        options.append(('--iolimit', '%dB' % limits.iolimit_bps))
    for name in ('iopslimit', 'numproc', 'numfile'):
        value = getattr(limits, name)
        if value is not None:
            options.append(('--' + name, value))
    return options


def netif_add(nic):
    """``--netif_add``'s value: ``ifname,mac,host_ifname,host_mac,bridge``.

    An empty host MAC or bridge is left to vzctl (reference 4.5).
    """
    return '%s,%s,%s,%s,%s' % (nic.ifname, nic.mac, nic.host_ifname,
                               nic.host_mac or '', nic.bridge or '')


def _ports(ports):
    options = []
    for nic in ports.nics:
        if ports.routed:
            options += [('--ipadd', address.address)
                        for address in nic.addresses]
        else:
            options.append(('--netif_add', netif_add(nic)))
    options += [('--nameserver', ns) for ns in ports.nameservers]
    if ports.searchdomain:
        options.append(('--searchdomain', ports.searchdomain))
    return options


def _added_port(added):
    return [('--netif_add', netif_add(added.nic))]


def _removed_port(removed):
    return [('--netif_del', removed.ifname)]


def _disk_size(disk):
    # vzctl wants --save with --diskspace on ploop; configure always saves.
    return [('--diskspace', '%dG:%dG' % (disk.size_gb, disk.size_gb))]


def _device(access):
    return [('--devices', 'b:%d:%d:%s' % (
        access.major, access.minor, 'rw' if access.granted else 'none'))]


def _description(description):
    return [('--description', description.text)]


_SETTINGS = {
    settings.Power: _power,
    settings.Limits: _limits,
    settings.Ports: _ports,
    settings.AddedPort: _added_port,
    settings.RemovedPort: _removed_port,
    settings.DeviceAccess: _device,
    settings.Description: _description,
    settings.DiskSize: _disk_size,
}


def set_options(items):
    """The ``vzctl set`` options of typed settings, in their order."""
    options = []
    for item in items:
        options += _SETTINGS[type(item)](item)
    return options


# -- vzctl -------------------------------------------------------------------


def version():
    return commands.VZCTL_VERSION.argv([])


def version_number(text):
    """``vzctl version 4.11.1`` -> 4011001, Nova's integer form."""
    match = _VERSION_RE.search(text)
    if not match:
        raise ValueError('unexpected version output %r' % text.strip())
    major, minor, micro = (int(part or 0) for part in match.groups())
    return major * 1000000 + minor * 1000 + micro


def create(ctid, template, disk, identity):
    options = [('--ostemplate', template), ('--layout', disk.layout),
               ('--diskspace', '%dG:%dG' % (disk.size_gb, disk.size_gb))]
    # A rescue container has no NAME: the instance's name stays with the
    # instance's own container.
    if identity.instance_uuid:
        options.append(('--name', identity.instance_uuid))
    options.append(('--description', identity.description))
    if identity.hostname:
        options.append(('--hostname', identity.hostname))
    return commands.VZCTL_CREATE.argv([ctid], options)


def configure(ctid, items):
    """Apply (live when running) and save the settings: one ``set``."""
    return commands.VZCTL_SET.argv(
        [ctid], [('--save', None)] + set_options(items))


def start(ctid):
    return commands.VZCTL_START.argv([ctid], [('--wait', None)])


def stop(ctid, fast):
    return commands.VZCTL_STOP.argv([ctid], [('--fast', None)] if fast
                                    else [])


def restart(ctid, fast):
    return commands.VZCTL_RESTART.argv(
        [ctid], [('--wait', None)] + ([('--fast', None)] if fast else []))


def destroy(ctid):
    return commands.VZCTL_DESTROY.argv([ctid])


def umount(ctid):
    return commands.VZCTL_UMOUNT.argv([ctid])


def mount(ctid):
    return commands.VZCTL_MOUNT.argv([ctid])


def run_script(ctid):
    """Run the script on standard input in the container's shell."""
    return commands.VZCTL_EXEC2.argv([ctid, '-'])


def freeze(ctid):
    return commands.VZCTL_CHKPNT.argv([ctid], [('--suspend', None)])


def thaw(ctid):
    return commands.VZCTL_CHKPNT.argv([ctid], [('--resume', None)])


def checkpoint(ctid):
    """Full checkpoint: dump to ``$DUMPDIR/Dump.<CTID>``, then stop."""
    return commands.VZCTL_CHKPNT.argv([ctid])


def restore(ctid):
    """Restore from the dump file (deleted by vzctl on success)."""
    return commands.VZCTL_RESTORE.argv([ctid])


def snapshot(ctid, guid):
    """A ploop snapshot of the disk alone: no memory dump, no config."""
    return commands.VZCTL_SNAPSHOT.argv([ctid], [
        ('--id', guid), ('--skip-suspend', None), ('--skip-config', None)])


def delete_snapshot(ctid, guid):
    return commands.VZCTL_SNAPSHOT_DELETE.argv([ctid], [('--id', guid)])


def mount_snapshot(ctid, guid, target):
    return commands.VZCTL_SNAPSHOT_MOUNT.argv(
        [ctid], [('--id', guid), ('--target', target)])


def umount_snapshot(ctid, guid):
    return commands.VZCTL_SNAPSHOT_UMOUNT.argv([ctid], [('--id', guid)])


# -- vzlist ------------------------------------------------------------------

LIST_FIELDS = commands.VZLIST_FIELDS


def list_all():
    return commands.VZLIST_ALL.argv([','.join(LIST_FIELDS)])


def list_some(ctids):
    return commands.VZLIST_SOME.argv([','.join(LIST_FIELDS)] +
                                     [str(ctid) for ctid in ctids])


def list_counters(ctid):
    """One container's beancounters, disk usage and uptime, as JSON."""
    return commands.VZLIST_SOME.argv(
        [','.join(commands.VZLIST_COUNTER_FIELDS), str(ctid)])


#: vzlist -j's fixed layout (reference 3.5): each container an object
#: between lines "  {" and "  }", each field on a line of its own that
#: starts with four spaces and its quoted name.
_RECORD_RE = re.compile(r'^  \{\n(.*?)\n  \}', re.MULTILINE | re.DOTALL)
_FIELD_RE = re.compile(r'^    "([a-z0-9_.]+)": ', re.MULTILINE)


def _field_value(text):
    """One field's value; a string is taken as printed, quotes and all."""
    text = text.rstrip().rstrip(',')
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return json.loads(text)


def _records_by_layout(stdout):
    """Records of a listing that is not valid JSON.

    vzlist 4.x prints strings without escaping them, so one container with
    a quote in its description (made by anyone, not only Nova) breaks the
    JSON of the whole listing.  Config values hold no newline, so the
    line layout still delimits every field.
    """
    records = []
    for body in _RECORD_RE.findall(stdout):
        starts = list(_FIELD_RE.finditer(body))
        record = {}
        for this, following in zip(starts, starts[1:] + [None]):
            end = following.start() if following else len(body)
            try:
                record[this.group(1)] = _field_value(body[this.end():end])
            except ValueError:
                record[this.group(1)] = None
        records.append(record)
    return records


def listing_records(stdout):
    """vzlist's JSON as a list of dicts of :data:`LIST_FIELDS`.

    Read by its line layout when it is no valid JSON (see
    :func:`_records_by_layout`).
    """
    try:
        return json.loads(stdout or '[]')
    except ValueError as e:
        records = _records_by_layout(stdout)
        if not records:
            raise exception.HostToolError(
                tool='vzlist', command='-j', exit_code=0,
                detail='unreadable JSON output: %s' % e)
        return records


def disk_usage(ctid):
    """One container's disk usage and limits (reference 3.3, 3.5)."""
    return commands.VZLIST_DISK.argv([ctid])


def disk_usage_kb(stdout):
    """KB in use of :func:`disk_usage`'s answer; 0 when vzlist has none.

    vzlist reports usage from ploop's statistics or a running simfs
    container's quota, and 0 for a stopped simfs one (reference 3.4).
    """
    records = listing_records(stdout)
    space = records[0].get('diskspace') if records else None
    return int((space or {}).get('usage') or 0)


# -- ploop -------------------------------------------------------------------


def restore_descriptor(work_dir, delta):
    return commands.PLOOP_RESTORE_DESCRIPTOR.argv([work_dir, delta])


def mount_image(mount_dir, descriptor):
    """Mount a ploop image read-only."""
    return commands.PLOOP_MOUNT.argv([mount_dir, descriptor])


def umount_image(mount_dir):
    return commands.PLOOP_UMOUNT.argv([mount_dir])


# -- vzmigrate ---------------------------------------------------------------

#: vzmigrate's "already exists on the destination" (reference 5.4).
EXIT_MIGRATE_EXISTS = 9


def migrate(ctid, peer, online=False, keep_source=False, check_only=False):
    """``vzmigrate`` of container ``ctid`` to host ``peer``.

    ``check_only``: the preliminary checks alone (``--check-only``, with
    ``--online`` when ``online``).  Otherwise a live move (``online``) or
    an offline one that keeps the source's area for a way back
    (``keep_source``: ``-r no``).
    """
    if check_only:
        shape = (commands.VZMIGRATE_CHECK_ONLINE if online
                 else commands.VZMIGRATE_CHECK)
    elif online:
        shape = commands.VZMIGRATE_ONLINE
    elif keep_source:
        shape = commands.VZMIGRATE_KEEP_SOURCE
    else:
        raise ValueError('an offline move always keeps the source area')
    return shape.argv([peer, ctid])


# -- a container's config ----------------------------------------------------


def layout(config, default):
    """``ploop`` or ``simfs``: VE_LAYOUT, else the host's default."""
    return (config.get('VE_LAYOUT') or default).partition(':')[0]


def interfaces(config):
    """The veth devices of NETIF, as dicts (``ifname``, ``host_ifname``)."""
    return vzconf.netif_devices(config.get('NETIF'))


def disk_size_kb(config):
    """DISKSPACE's hard limit in KB, or None when unset or unreadable."""
    hard = config.get('DISKSPACE', '').rpartition(':')[2]
    return int(hard) if hard.isdigit() else None


def stop_timeout(config):
    """STOP_TIMEOUT in seconds, or None when unset or unreadable."""
    try:
        return int(config.get('STOP_TIMEOUT', ''))
    except ValueError:
        return None
