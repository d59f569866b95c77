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

"""``vzctl set`` (reference 1.7)."""

import os

from vzsim.cli.vzctl import common
from vzsim.cli.vzctl.common import E_APPLY_CONFIG
from vzsim.cli.vzctl.common import E_DEVICES
from vzsim.cli.vzctl.common import E_NAME
from vzsim.cli.vzctl.common import E_NOT_RUNNING
from vzsim.cli.vzctl.common import E_RESIZE_IMAGE
from vzsim.cli.vzctl.common import E_RUNNING
from vzsim.cli.vzctl.common import E_SYNTAX
from vzsim.cli.vzctl.common import E_UBC
from vzsim.cli.vzctl.common import E_VALUE
from vzsim.cli.vzctl.common import E_VETH
from vzsim.cli.vzctl.common import Failure
from vzsim.cli.vzctl import dists
from vzsim.cli.vzctl import lifecycle
from vzsim import conffile
from vzsim import hostfs
from vzsim.kernel import base


CAPABILITIES = frozenset((
    'chown', 'dac_override', 'dac_read_search', 'fowner', 'fsetid', 'kill',
    'setgid', 'setuid', 'setpcap', 'linux_immutable', 'net_bind_service',
    'net_broadcast', 'net_admin', 'net_raw', 'ipc_lock', 'ipc_owner',
    'sys_module', 'sys_rawio', 'sys_chroot', 'sys_ptrace', 'sys_pacct',
    'sys_admin', 'sys_boot', 'sys_nice', 'sys_resource', 'sys_time',
    'sys_tty_config', 'mknod', 'lease', 'setveid', 've_admin'))
FEATURES = frozenset(('sysfs', 'nfs', 'sit', 'ipip', 'ppp', 'ipgre',
                      'bridge', 'nfsd'))

#: option -> (config key, value parser, kind).  Kinds: ``ubc``, ``cpu``,
#: ``io``, ``disk`` and ``dev`` apply live; ``guest`` is written inside the
#: guest; ``restart`` needs a restart; ``fs`` is refused while running;
#: None is config only.
SET_SIMPLE = {
    'onboot': ('ONBOOT', common.yes_no, None),
    'bootorder': ('BOOTORDER', common.uint, None),
    'disabled': ('DISABLED', common.yes_no, None),
    'description': ('DESCRIPTION', common.raw_text, None),
    'ostemplate': ('OSTEMPLATE', common.raw_text, None),
    'stop-timeout': ('STOP_TIMEOUT', common.uint, None),
    'hostname': ('HOSTNAME', common.raw_text, 'guest'),
    'ram': ('PHYSPAGES', common.vswap_value, 'ubc'),
    'swap': ('SWAPPAGES', common.vswap_value, 'ubc'),
    'vm_overcommit': ('VM_OVERCOMMIT', common.decimal, 'ubc'),
    'cpuunits': ('CPUUNITS', common.ranged(8, 500000), 'cpu'),
    'cpulimit': ('CPULIMIT', common.cpulimit_value, 'cpu'),
    'cpus': ('CPUS', common.uint, 'cpu'),
    'cpumask': ('CPUMASK', common.cpu_list, 'cpu'),
    'nodemask': ('NODEMASK', common.cpu_list, 'cpu'),
    'ioprio': ('IOPRIO', common.ranged(0, 7), 'io'),
    'iolimit': ('IOLIMIT', common.iolimit_value, 'io'),
    'iopslimit': ('IOPSLIMIT', common.uint, 'io'),
    'diskspace': ('DISKSPACE', common.diskspace_value, 'disk'),
    'diskinodes': ('DISKINODES', common.diskinodes_value, 'disk'),
    'quotatime': ('QUOTATIME', common.uint, 'disk'),
    'quotaugidlimit': ('QUOTAUGIDLIMIT', common.uint, 'restart'),
    'diskquota': ('DISK_QUOTA', common.yes_no, 'restart'),
    'netfilter': ('NETFILTER', common.choice('disabled', 'stateless',
                                             'stateful', 'full'), 'restart'),
    'iptables': ('IPTABLES', common.raw_text, 'restart'),
    'mount_opts': ('MOUNT_OPTS', common.raw_text, 'restart'),
    'private': ('VE_PRIVATE', common.raw_text, 'fs'),
    'root': ('VE_ROOT', common.raw_text, 'fs'),
}
SET_SIMPLE.update((name.lower(), (name, common.ubc_value(name), 'ubc'))
                  for name in conffile.UBC_PARAMS)

#: Options handled by dedicated code (value taken: True).
SET_SPECIAL = {
    'save': False, 'force': False, 'reset_ub': False, 'skip_arpdetect': False,
    'setmode': True, 'applyconfig': True, 'applyconfig_map': True,
    'name': True, 'userpasswd': True, 'ipadd': True, 'ip': True,
    'ipdel': True, 'nameserver': True, 'searchdomain': True,
    'capability': True, 'features': True, 'devices': True, 'devnodes': True,
    'netif_add': True, 'netif_del': True, 'ifname': True, 'mac': True,
    'host_ifname': True, 'host_mac': True, 'bridge': True,
    'mac_filter': True,
}
SET_SPEC = dict(SET_SPECIAL)
SET_SPEC.update((name, True) for name in SET_SIMPLE)

#: Messages of vzctl's check_set_mode for keys that need a restart.
RESTART_MESSAGES = {
    'CAPABILITY': 'Unable to set capability on a running container',
    'IPTABLES': 'Unable to set iptables on a running container',
    'NETFILTER': 'Unable to set netfilter on a running container',
    'FEATURES': 'Unable to set features on a running container',
    'DISK_QUOTA': 'Unable to switch DISK_QUOTA on or off on a running '
                  'container',
    'MOUNT_OPTS': 'Unable to change mount options on a running container',
}
#: Messages for live kinds applied to a stopped container without --save.
NOT_RUNNING_MESSAGES = (
    ('ubc', 'Unable to apply UBC parameters: container is not running'),
    ('net', 'Unable to apply network parameters: container is not running'),
    ('cpu', 'Unable to apply CPU parameters: container is not running'),
    ('veth', 'Unable to create veth: container is not running'),
    ('dev', 'Unable to set devices: container is not running'),
    ('io', 'Unable to set I/O parameters: container is not running'),
)
#: Keys --applyconfig never takes from a sample.
APPLYCONFIG_SKIP = frozenset(('HOSTNAME', 'IP_ADDRESS', 'OSTEMPLATE',
                              'VE_ROOT', 'VE_PRIVATE', 'DESCRIPTION', 'NAME',
                              'ORIGIN_SAMPLE'))


class SetRequest:
    """What one ``vzctl set`` asks for, before anything is applied."""

    def __init__(self, old):
        self.old = old            # config before the call
        self.changes = {}         # key -> new value
        self.removes = set()      # keys to drop
        self.kinds = set()        # kinds of the changed keys
        self.given = set()        # option names given
        self.ip_changes = False
        self.userpw = []
        self.sample = None

    def set(self, key, value, kind=None):
        self.changes[key] = value
        self.removes.discard(key)
        if kind:
            self.kinds.add(kind)

    def current(self, key):
        if key in self.removes:
            return ''
        return self.changes.get(key, self.old.get(key, ''))

    def merged(self):
        config = {k: v for k, v in self.old.items() if k not in self.removes}
        config.update(self.changes)
        return config


def _merge_flags(request, key, option, value, known, upper):
    """--capability/--features ``name:on|off[,...]`` merged into ``key``."""
    entries = {}
    order = []
    for item in request.current(key).split():
        name, _, state = item.partition(':')
        entries[name.lower()] = state
        order.append(name.lower())
    for item in value.split(','):
        name, _, state = item.partition(':')
        if name.lower() not in known or state not in ('on', 'off'):
            raise Failure(E_VALUE, 'Bad parameter for --%s: %s'
                          % (option, value))
        if name.lower() not in entries:
            order.append(name.lower())
        entries[name.lower()] = state
    request.set(key, ' '.join('%s:%s' % (n.upper() if upper else n,
                                         entries[n]) for n in order),
                'restart')


def _merge_devices(request, option, value):
    """--devices ``b|c:major:minor|all:perm|none`` into DEVICES."""
    parts = value.split(':')
    if (len(parts) != 4 or parts[0] not in ('b', 'c') or
            not parts[1].isdigit() or
            not (parts[2].isdigit() or parts[2] == 'all') or
            not (parts[3] == 'none' or
                 (parts[3] and set(parts[3]) <= set('rwq')))):
        raise Failure(E_VALUE, 'Bad parameter for --%s: %s' % (option, value))
    if parts[1] == '7':
        raise Failure(E_DEVICES, 'Setting access to loop devices (major 7) '
                                 'is not allowed')
    device = ':'.join(parts[:3])
    kept = [d for d in request.current('DEVICES').split()
            if d.rpartition(':')[0] != device]
    if parts[3] != 'none':
        kept.append(value)
    request.set('DEVICES', ' '.join(kept), 'dev')


def _merge_devnodes(request, option, value):
    name, _, perm = value.rpartition(':')
    if not name or not (perm == 'none' or (perm and set(perm) <= set('rwq'))):
        raise Failure(E_VALUE, 'Bad parameter for --%s: %s' % (option, value))
    kept = [d for d in request.current('DEVNODES').split()
            if d.rpartition(':')[0] != name]
    if perm != 'none':
        kept.append(value)
    request.set('DEVNODES', ' '.join(kept), 'dev')


def _check_mac(option, value):
    if len(value) != 17:
        raise Failure(E_VALUE, 'Invalid container MAC address length')
    return value.upper()


def _netif_add(request, ctid, value):
    devices = conffile.netif_devices(request.current('NETIF'))
    for spec in value.split():
        fields = (spec.split(',') + [''] * 5)[:5]
        ifname, mac, host_ifname, host_mac, bridge = fields
        if not ifname or len(ifname) > 15:
            raise Failure(E_VALUE, 'Bad parameter for --netif_add: %s'
                          % value)
        if not host_ifname:
            digits = ''.join(c if c.isdigit() else ' ' for c in ifname)
            number = digits.split()[0] if digits.split() else '0'
            host_ifname = 'veth%d.%s' % (ctid, number)
        host_mac = (_check_mac('netif_add', host_mac) if host_mac else
                    base.generated_mac(ctid, 'host', host_ifname))
        mac = (_check_mac('netif_add', mac) if mac else
               base.generated_mac(ctid, ifname, host_mac))
        device = {'ifname': ifname, 'bridge': bridge, 'mac': mac,
                  'host_ifname': host_ifname, 'host_mac': host_mac}
        devices = [d for d in devices if d['ifname'] != ifname] + [device]
    request.set('NETIF', lifecycle.netif_text(devices), 'veth')


def _netif_del(request, value):
    devices = conffile.netif_devices(request.current('NETIF'))
    if value == 'all':
        devices = []
    else:
        devices = [d for d in devices if d['ifname'] != value]
    request.set('NETIF', lifecycle.netif_text(devices), 'veth')


def _netif_modify(request, options):
    """--ifname X with --mac/--host_ifname/--host_mac/--bridge/..."""
    ifnames = [value for name, value in options if name == 'ifname']
    fields = [(name, value) for name, value in options
              if name in ('mac', 'host_ifname', 'host_mac', 'bridge',
                          'mac_filter')]
    if not ifnames and not fields:
        return
    if len(ifnames) != 1:
        raise Failure(E_SYNTAX, 'Error: exactly one --ifname must be given '
                                'to change a veth device')
    devices = conffile.netif_devices(request.current('NETIF'))
    matching = [d for d in devices if d['ifname'] == ifnames[0]]
    if not matching:
        raise Failure(E_VETH, 'Invalid usage: veth device %s is not '
                              'configured' % ifnames[0])
    for name, value in fields:
        if name in ('mac', 'host_mac'):
            value = _check_mac(name, value)
        elif name == 'mac_filter':
            value = lifecycle.parse_value(name, value,
                                          common.choice('on', 'off'))
        matching[0][name] = value
    request.set('NETIF', lifecycle.netif_text(devices), 'veth')


def parse_set(call, old):
    """Turn the set options into a :class:`SetRequest` (checks values)."""
    request = SetRequest(old)
    ip_entries = old.get('IP_ADDRESS', '').split()
    nameservers, searchdomains = [], []
    for name, value in call.options:
        request.given.add(name)
        if name in SET_SIMPLE:
            key, parser, kind = SET_SIMPLE[name]
            request.set(key, lifecycle.parse_value(name, value, parser), kind)
        elif name in ('ipadd', 'ip'):
            entry = lifecycle.parse_value('ipadd', value, common.ip_value)
            if entry:
                ip_entries = [
                    e for e in ip_entries
                    if common.ip_address(e) != common.ip_address(entry)]
                ip_entries.append(entry)
                request.ip_changes = True
        elif name == 'ipdel':
            if value == 'all':
                ip_entries = []
            else:
                address = common.ip_address(lifecycle.parse_value(
                    name, value, common.ip_value) or value)
                ip_entries = [e for e in ip_entries
                              if common.ip_address(e) != address]
            request.ip_changes = True
        elif name == 'nameserver':
            nameservers.append(
                value if value == 'inherit' else common.ip_address(
                    lifecycle.parse_value(name, value, common.ip_value)
                    or ''))
        elif name == 'searchdomain':
            searchdomains.append(value)
        elif name == 'capability':
            _merge_flags(request, 'CAPABILITY', name, value, CAPABILITIES,
                         upper=True)
        elif name == 'features':
            _merge_flags(request, 'FEATURES', name, value, FEATURES,
                         upper=False)
        elif name == 'devices':
            _merge_devices(request, name, value)
        elif name == 'devnodes':
            _merge_devnodes(request, name, value)
        elif name == 'netif_add':
            _netif_add(request, call.ctid, value)
        elif name == 'netif_del':
            _netif_del(request, value)
        elif name == 'name':
            request.set('NAME', value)
        elif name == 'userpasswd':
            user, colon, password = value.partition(':')
            if not user or not colon:
                raise Failure(E_VALUE, 'Bad parameter for --userpasswd: %s'
                              % value)
            request.userpw.append((user, password))
        elif name == 'setmode':
            lifecycle.parse_value(name, value,
                                  common.choice('restart', 'ignore'))
        elif name == 'applyconfig':
            request.sample = value
    _netif_modify(request, call.options)
    if request.ip_changes:
        request.set('IP_ADDRESS', ' '.join(ip_entries), 'net')
    if nameservers:
        request.set('NAMESERVER', ' '.join(nameservers), 'guest')
    if searchdomains:
        request.set('SEARCHDOMAIN', ' '.join(searchdomains), 'guest')
    return request


def _apply_sample(host, request):
    path = lifecycle.sample_path(host, request.sample)
    if not os.path.isfile(path):
        raise Failure(E_APPLY_CONFIG, 'Sample config file not found: %s'
                      % path)
    sample = conffile.read(path)
    for key, value in sample.items():
        if key in APPLYCONFIG_SKIP or key in request.changes:
            continue
        request.set(key, value)
    if not sample.get('ORIGIN_SAMPLE'):
        request.set('ORIGIN_SAMPLE', request.sample)


def _check_set_syntax(call, request, save):
    """Option combinations vzctl refuses before looking at the container."""
    given = request.given
    if 'reset_ub' in given and len(given) > 1:
        raise Failure(E_SYNTAX, 'Error: --reset_ub can not be used with '
                                'other options')
    for option in ('ostemplate', 'stop-timeout', 'force'):
        if option in given and not save:
            raise Failure(E_SYNTAX, 'Error: --%s option requires --save'
                          % option)
    if call.opt('setmode') == 'restart' and not save:
        raise Failure(E_SYNTAX, "Error: --setmode restart doesn't make sense"
                                " without --save flag")
    if 'nodemask' in given and 'cpumask' not in given:
        raise Failure(E_SYNTAX, 'Error: --nodemask requires --cpumask')
    if call.opt('cpumask') == 'auto' and 'nodemask' not in given:
        raise Failure(E_SYNTAX, 'Error: --cpumask auto requires --nodemask')


def cmd_set(call):
    host, ctid, out = call.host, call.ctid, call.out
    save = bool(call.opt('save'))
    old = call.config
    request = parse_set(call, old)
    _check_set_syntax(call, request, save)
    ploop = ctid != 0 and call.private and call.layout() == 'ploop'
    if 'diskspace' in request.given and ploop and not save:
        raise Failure(E_SYNTAX, "Error: can't use --diskspace without --save "
                                "for a ploop-based container")
    running = ctid != 0 and call.running()

    if 'applyconfig_map' in request.given and old.get('NAME'):
        lifecycle.check_name(host, ctid, old['NAME'])
        host.set_name_link(old['NAME'], ctid)
    if 'reset_ub' in request.given:
        if not running:
            raise Failure(E_NOT_RUNNING, 'Unable to apply UBC parameters: '
                                         'container is not running')
        call.kernel.apply_resources(ctid, old)
        return 0
    if 'NAME' in request.changes:
        if not save:
            raise Failure(E_NAME, 'Error: unable to use --name option '
                                  'without --save')
        lifecycle.check_name(host, ctid, request.changes['NAME'])
    if running:
        for key, what in (('VE_PRIVATE', 'VE_PRIVATE'),
                          ('VE_ROOT', 'VE_ROOT')):
            if key in request.changes:
                raise Failure(E_RUNNING, 'Unable to change %s on a running '
                                         'container' % what)
    if request.userpw:
        _set_userpasswd(call, request.userpw, running)
    if request.sample:
        _apply_sample(host, request)
    if 'diskspace' in request.given and ploop:
        hard_kb = conffile.parse_diskspace(request.changes['DISKSPACE'])[1]
        ploop = common.ploop_lib()
        descriptor = common.ploop_do(E_RESIZE_IMAGE, ploop.read_descriptor,
                                     host.disk_descriptor(ctid))
        common.ploop_do(E_RESIZE_IMAGE, ploop.resize, descriptor, hard_kb)
    if 'diskinodes' in request.given and ploop:
        out.info('Warning: --diskinodes is ignored for ploop-based '
                 'container')
    if ('ram' in request.given and ctid != 0 and
            not request.current('SWAPPAGES')):
        raise Failure(E_UBC, 'Error: required UB parameter (swap) not set')

    code = 0
    if running:
        code = _apply_set_running(call, request, save)
        if code < 0:
            return _finish_set(call, request, save, running, 0,
                               restart=True)
    elif not save and ctid != 0:
        code = _refuse_live_on_stopped(call, request)
    return _finish_set(call, request, save, running, code)


def _set_userpasswd(call, userpw, running):
    """Set passwords; a stopped CT is mounted just for that."""
    root = call.require_root()
    mounted = call.mounted()
    if not running and not mounted:
        call.kernel.mount(call.ctid, call.tree(), root)
    try:
        for user, password in userpw:
            dists.set_password(root, user, password, call)
    finally:
        if not running and not mounted:
            call.kernel.umount(call.ctid, root)


def _refuse_live_on_stopped(call, request):
    """A stopped container without --save: live kinds fail with 31."""
    for kind, message in NOT_RUNNING_MESSAGES:
        if kind in request.kinds:
            call.out.error(message)
            return E_NOT_RUNNING
    if 'guest' in request.kinds:
        call.out.error('Unable to configure container: not running')
    return 0


def _apply_set_running(call, request, save):
    """Apply a set to a running container; -1 means "restart instead"."""
    out, ctid, kernel = call.out, call.ctid, call.kernel
    setmode = call.opt('setmode')
    restart_keys = [key for key in request.changes
                    if key in RESTART_MESSAGES and
                    request.changes[key] != request.old.get(key, '')]
    ugid = request.changes.get('QUOTAUGIDLIMIT')
    ugid_switch = None
    if ugid is not None:
        before = int(request.old.get('QUOTAUGIDLIMIT') or 0)
        if bool(int(ugid)) != bool(before):
            ugid_switch = 'on' if int(ugid) else 'off'
    if restart_keys or ugid_switch:
        if setmode != 'restart':
            for key in restart_keys:
                out.error(RESTART_MESSAGES[key])
            if ugid_switch:
                out.error('Unable to turn %s second-level disk quota on a '
                          'running container' % ugid_switch)
        if setmode == 'restart':
            return -1
        if setmode == 'ignore':
            return E_RUNNING
        out.error('WARNING: Some of the parameters could not be applied to '
                  'a running container.\n\tPlease consider using --setmode '
                  'option')
    merged = request.merged()
    kinds = request.kinds
    try:
        if kinds & {'ubc', 'cpu', 'io', 'dev', 'disk'}:
            kernel.apply_resources(ctid, merged)
        if 'net' in kinds:
            old_ips = [common.ip_address(e) for e in
                       request.old.get('IP_ADDRESS', '').split()]
            new_ips = [common.ip_address(e) for e in
                       merged.get('IP_ADDRESS', '').split()]
            gone = [ip for ip in old_ips if ip not in new_ips]
            added = [ip for ip in new_ips if ip not in old_ips]
            if gone:
                out.info('Deleting IP address(es): %s' % ' '.join(gone))
                kernel.del_ips(ctid, gone)
            if added:
                out.info('Adding IP address(es): %s' % ' '.join(added))
                kernel.add_ips(ctid, added)
        if 'cpu' in kinds:
            for key, label in (('CPUUNITS', 'CPU units'),
                               ('CPULIMIT', 'CPU limit'), ('CPUS', 'CPUs')):
                if key in request.changes:
                    out.info('Setting %s: %s' % (label, merged[key]))
        if 'veth' in kinds:
            old_names = [d.get('host_ifname') for d in
                         conffile.netif_devices(request.old.get('NETIF'))]
            new_names = [d.get('host_ifname') for d in
                         conffile.netif_devices(merged.get('NETIF'))]
            kernel.del_veth(ctid, [n for n in old_names
                                   if n not in new_names])
            if new_names:
                out.info('Configure veth devices: %s' % ' '.join(new_names))
                kernel.add_veth(
                    ctid, conffile.netif_devices(merged.get('NETIF')))
        if 'guest' in kinds:
            warning = dists.dist_warning(call.host, merged)
            if warning:
                out.error(warning)
            changed = request.changes
            dists.configure_guest(
                call.host, call.root, hostname=changed.get('HOSTNAME'),
                nameservers=(changed['NAMESERVER'].split()
                             if 'NAMESERVER' in changed else None),
                searchdomains=(changed['SEARCHDOMAIN'].split()
                               if 'SEARCHDOMAIN' in changed else None))
            kernel.set_hostname(ctid, changed.get('HOSTNAME'))
    except hostfs.ToolError as exc:
        out.error(exc.message)
        return exc.code
    return 0


def _finish_set(call, request, save, running, code, restart=False):
    """Save (or warn about not saving) after a set, as run_action does."""
    out, host, ctid = call.out, call.host, call.ctid
    if not save:
        if code == 0 and not (request.userpw and len(request.given) == 1):
            out.info('WARNING: Settings were not saved to config %s(use '
                     '--save flag)' % ('and will be lost after CT restart '
                                       if running else ''))
        return code
    if code:
        out.error('Error: failed to apply some parameters, not saving '
                  'configuration file!')
        return code
    path = call.conf_path
    try:
        with open(path, encoding='utf-8') as f:
            before = f.read()
    except FileNotFoundError:
        out.error('WARNING: %s not found' % path)
        before = None
    after = conffile.render(before or '', request.changes, request.removes)
    if before is not None and after == before:
        out.info('No changes in CT configuration, not saving')
    else:
        hostfs.write_atomic(path, after)
        out.info('CT configuration saved to %s' % path)
    if 'NAME' in request.changes:
        if request.old.get('NAME') and \
                request.old['NAME'] != request.changes['NAME']:
            link = host.name_link(request.old['NAME'])
            if host.ctid_by_name(request.old['NAME']) == ctid:
                os.unlink(link)
        host.set_name_link(request.changes['NAME'], ctid)
        out.info('Name %s assigned' % request.changes['NAME'])
    if restart:
        try:
            lifecycle.do_stop(call)
            lifecycle.do_start(call)
        except hostfs.ToolError as exc:
            if before is not None:
                hostfs.write_atomic(path, before)
            out.error(exc.message)
            out.error('Error: failed to apply some parameters, not saving '
                      'configuration file!')
            return exc.code
    return 0
