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

"""Simulated ``vzlist``: list containers and their parameters.

Follows vzlist of vzctl 4.x (reference section 3): running containers come
from ``DIR/proc/vz/veinfo``, all containers from ``etc/vz/conf/<CTID>.conf``,
beancounters of running containers from ``DIR/proc/user_beancounters``, the
rest from the runtime state of the simulated kernel (uptime, applied CPU
settings, mounts), the container configs and, for ploop containers, the
simulated ploop filesystem statistics.

Like the real tool, JSON strings are printed as they are, without escaping.

Each collector runs only when a requested field needs it, so that listing a
thousand containers in JSON stays fast.

Simulation limits: no root check; load averages are 0.00; running simfs
containers report no disk usage (there is no vzquota); headers and widths
of ``iolimit``, ``iopslimit``, ``vm_overcommit``, ``netfilter`` and
``capability`` follow the other fields of their kind.
"""

import os
import re
import sys
import time

from vzsim import conffile
from vzsim import hostfs
from vzsim.kernel import backends

STATUSES = ('running', 'stopped', 'mounted', 'suspended')
DEFAULT_FIELDS = 'ctid,numproc,status,ip,hostname'
DEFAULT_NAME_FIELDS = 'smart_name,numproc,status,ip,hostname'
#: vzctl's feature names, in the order it prints them.
FEATURES = ('sysfs', 'nfs', 'sit', 'ipip', 'ppp', 'ipgre', 'bridge', 'nfsd')
#: CPU units are 500000 / fairsched weight.
MAX_CPUUNITS = 500000
UNLIMITED = (conffile.LONG_MAX, hostfs.INT_MAX)
UBC_HEADERS = (
    ('kmemsize', 'KMEMSIZE'), ('lockedpages', 'LOCKEDP'),
    ('privvmpages', 'PRIVVMP'), ('shmpages', 'SHMP'), ('numproc', 'NPROC'),
    ('physpages', 'PHYSP'), ('vmguarpages', 'VMGUARP'),
    ('oomguarpages', 'OOMGUARP'), ('numtcpsock', 'NTCPSOCK'),
    ('numflock', 'NFLOCK'), ('numpty', 'NPTY'), ('numsiginfo', 'NSIGINFO'),
    ('tcpsndbuf', 'TCPSNDB'), ('tcprcvbuf', 'TCPRCVB'),
    ('othersockbuf', 'OTHSOCKB'), ('dgramrcvbuf', 'DGRAMRB'),
    ('numothersock', 'NOTHSOCK'), ('dcachesize', 'DCACHESZ'),
    ('numfile', 'NFILE'), ('numiptent', 'NIPTENT'), ('swappages', 'SWAPP'))
UBC_SUFFIXES = ('', '.m', '.b', '.l', '.f')
QUOTA_SUFFIXES = ('', '.s', '.h')

USAGE = '''\
Usage:\tvzlist [-a | -S] [-n] [-H] [-o field[,field...] | -1] [-s [-]field]
\t       [-h pattern] [-N pattern] [-d pattern] [CTID [CTID ...]]
\tvzlist -L | --list

Options:
\t-a, --all\t\tlist all containers
\t-S, --stopped\t\tlist stopped containers
\t-n, --name\t\tdisplay containers' names
\t-H, --no-header\t\tsuppress columns header
\t-t, --no-trim\t\tdo not trim long values
\t-j, --json\t\toutput in JSON format
\t-o, --output\t\toutput only specified fields
\t-1\t\t\tsynonym for -H -octid
\t-s, --sort\t\tsort by the specified field
\t\t\t\t('-field' to reverse sort order)
\t-h, --hostname\t\tfilter CTs by hostname pattern
\t-N, --name_filter\tfilter CTs by name pattern
\t-d, --description\tfilter CTs by description pattern
\t-L, --list\t\tget possible field names
'''

SHORT_OPTIONS = 'HtSanjN:h:d:o:s:Le1'
LONG_OPTIONS = {
    'no-header': 'H', 'no-trim': 't', 'stopped': 'S', 'all': 'a',
    'name': 'n', 'json': 'j', 'name_filter': 'N', 'hostname': 'h',
    'description': 'd', 'output': 'o', 'sort': 's', 'list': 'L',
    'help': 'e'}


class Usage(Exception):
    """Bad command line: the message (if any), then the usage, exit 1."""


class Container:
    """What vzlist knows about one container (its ``Cveinfo``)."""

    def __init__(self, ctid, running=False, ips=None):
        self.ctid = ctid
        self.status = 'running' if running else 'stopped'
        self.ips = ips            # space-separated, as vzlist keeps them
        self.config = {}
        self.private = None
        self.root = None
        self.name = None
        self.ubc = None           # name -> [held, maxheld, barrier, limit, f]
        self.quota = None         # name -> [usage, softlimit, hardlimit]
        self.cpu = None           # (limit, units)
        self.cpus = -1
        self.cpustat = None       # (loadavg triple, uptime seconds)
        self.layout = 'simfs'
        self.hidden = False

    @property
    def running(self):
        return self.status == 'running'

    def setting(self, key):
        """A config value, None when unset or empty."""
        return self.config.get(key) or None

    def number(self, key):
        try:
            return int(self.config[key])
        except (KeyError, ValueError):
            return None


# -- value helpers --------------------------------------------------------

def _json_str(value):
    # vzlist prints strings verbatim, quotes and all.
    return 'null' if value is None else '"%s"' % value


def _json_bool(value):
    return 'true' if value else 'false'


def _json_list(text):
    return '[%s]' % ', '.join('"%s"' % item for item in (text or '').split())


def _json_flags(pairs):
    """An object of name -> bool, or null (features, capabilities)."""
    if not pairs:
        return 'null'
    return '{\n%s\n    }' % ',\n'.join(
        '      "%s": %s' % (name, _json_bool(on)) for name, on in pairs)


def _cut(text, width, cut):
    """Pad ``text`` to ``width`` (left-aligned); trimmed fields stop there."""
    text = '%-*s' % (width, text)
    return text[:width] if cut else text


def _flags(text, names=None):
    """``name:on|off`` pairs from a FEATURES/CAPABILITY value."""
    pairs = {}
    for item in (text or '').split():
        name, _, state = item.partition(':')
        if state in ('on', 'off'):
            pairs[name.lower()] = state == 'on'
    if names is None:
        return list(pairs.items())
    return [(name, pairs[name]) for name in names if name in pairs]


def _number_text(value):
    if isinstance(value, float) and not value.is_integer():
        return repr(value)
    return '%d' % value


# -- fields ---------------------------------------------------------------

class Field:
    """One vzlist column.

    ``needs`` names the collectors the field relies on; ``text(ct, cut)``
    gives the cell (``cut``: a trimmed, not last, field) and ``json(ct)``
    the JSON value; ``key(ct)`` sorts (None sorts first).
    """

    def __init__(self, name, header, header_format, text, json, key,
                 needs=(), base=True):
        self.name = name
        self.header = header
        self.header_format = header_format
        self.text = text
        self.json = json
        self.key = key
        self.needs = frozenset(needs)
        self.base = base


def _string_field(name, header, width, getter, header_format=None):
    return Field(
        name, header, header_format or '%%-%ds' % width,
        lambda ct, cut: _cut(getter(ct) or '-', width, cut),
        lambda ct: _json_str(getter(ct)), getter)


def _config_getter(key):
    return lambda ct: ct.setting(key)


def _list_field(name, header, getter):
    def text(ct, cut):
        value = getter(ct) or '-'
        if cut:
            value = value.partition(' ')[0]
        return _cut(value, 15, cut)
    return Field(name, header, '%-15s', text,
                 lambda ct: _json_list(getter(ct)), getter)


def _ctid_field(name):
    return Field(name, 'CTID', '%10s', lambda ct, cut: '%10d' % ct.ctid,
                 lambda ct: '%d' % ct.ctid, lambda ct: 0)


def _smart_name_text(ct, cut):
    if ct.name is None:
        return '%10d' % ct.ctid
    text = '%10s' % ct.name
    return text[:10] if cut else text


def _ubc_fields(name, header):
    def text_at(index):
        def text(ct, cut):
            values = ct.ubc and ct.ubc.get(name)
            if values is None or (not ct.running and index in (0, 1, 4)):
                return '%10s' % '-'
            return '%10d' % values[index]
        return text

    def json(ct):
        values = ct.ubc and ct.ubc.get(name)
        if values is None:
            return 'null'
        held, maxheld, barrier, limit, failcnt = values
        if not ct.running:
            held = maxheld = failcnt = 0
        return ('{\n      "held": %d,\n      "maxheld": %d,\n'
                '      "barrier": %d,\n      "limit": %d,\n'
                '      "failcnt": %d\n    }'
                % (held, maxheld, barrier, limit, failcnt))

    def key_at(index):
        def key(ct):
            values = ct.ubc and ct.ubc.get(name)
            return None if values is None else values[index]
        return key

    return [Field(name + suffix, header + suffix.upper(), '%10s',
                  text_at(index), json, key_at(index), ('ubc',),
                  base=not suffix)
            for index, suffix in enumerate(UBC_SUFFIXES)]


def _quota_fields(name, header):
    def text_at(index):
        def text(ct, cut):
            values = ct.quota and ct.quota.get(name)
            if values is None or (index == 0 and values[0] == 0):
                return '%10s' % '-'
            return '%10d' % values[index]
        return text

    def json(ct):
        values = ct.quota and ct.quota.get(name)
        if values is None:
            return 'null'
        return ('{\n      "usage": %d,\n      "softlimit": %d,\n'
                '      "hardlimit": %d\n    }' % tuple(values))

    def key_at(index):
        def key(ct):
            values = ct.quota and ct.quota.get(name)
            return None if values is None else values[index]
        return key

    return [Field(name + suffix, header + suffix.upper(), '%10s',
                  text_at(index), json, key_at(index), ('quota', 'layout'),
                  base=not suffix)
            for index, suffix in enumerate(QUOTA_SUFFIXES)]


def _laverage_text(ct, cut):
    if ct.cpustat is None:
        return '%14s' % '-'
    return '%1.2f/%1.2f/%1.2f' % ct.cpustat[0]


def _laverage_json(ct):
    if ct.cpustat is None:
        return 'null'
    return '[%1.2f, %1.2f, %1.2f]' % ct.cpustat[0]


def _uptime_text(ct, cut):
    if ct.cpustat is None:
        return '%15s' % '-'
    uptime = ct.cpustat[1]
    days = int(uptime // 86400)
    minutes = int(uptime // 60)
    hours = minutes // 60 % 24
    minutes %= 60
    seconds = int(uptime - (60 * minutes + 3600 * hours + 86400 * days))
    return '%.3dd%.2dh:%.2dm:%.2ds' % (days, hours, minutes, seconds)


def _uptime_key(ct):
    # vzlist sorts the longest uptime first.
    return None if ct.cpustat is None else -ct.cpustat[1]


def _cpu_field(name, header, index):
    def text(ct, cut):
        return '%7s' % '-' if ct.cpu is None else '%7d' % ct.cpu[index]
    return Field(name, header, '%7s', text,
                 lambda ct: 'null' if ct.cpu is None else '%d' % ct.cpu[index],
                 lambda ct: None if ct.cpu is None else ct.cpu[index],
                 ('cpu',))


def _optional_number_field(name, header, width, getter, unset_json='0'):
    """A number shown as ``-`` when unset; JSON ``unset_json`` then.

    Limits (``unset_json`` 0) also show ``-`` when they are 0.
    """
    def text(ct, cut):
        value = getter(ct)
        unset = value is None or (value == 0 and unset_json == '0')
        return '%*s' % (width, '-' if unset else _number_text(value))

    def json(ct):
        value = getter(ct)
        return unset_json if value is None else _number_text(value)
    return Field(name, header, '%%%ds' % width, text, json, getter)


def _ioprio(ct):
    value = ct.number('IOPRIO')
    return -1 if value is None else value


def _onboot(ct):
    return {'yes': True, 'no': False}.get(ct.setting('ONBOOT'))


def _vswap(ct):
    values = ct.ubc and ct.ubc.get('physpages')
    return values is not None and values[3] not in UNLIMITED


def _vm_overcommit(ct):
    try:
        value = float(ct.config['VM_OVERCOMMIT'])
    except (KeyError, ValueError):
        return None
    return int(value) if value.is_integer() else value


def _bool_field(name, header, width, getter, needs=()):
    return Field(name, header, '%%%ds' % width,
                 lambda ct, cut: '%*s' % (width, 'yes' if getter(ct) else
                                          'no'),
                 lambda ct: _json_bool(getter(ct)), lambda ct: 0, needs)


def _flags_field(name, header, getter):
    def text(ct, cut):
        pairs = getter(ct)
        value = ','.join('%s:%s' % (n, 'on' if on else 'off')
                         for n, on in pairs) or '-'
        return _cut(value, 15, cut)
    return Field(name, header, '%-15s', text,
                 lambda ct: _json_flags(getter(ct)), lambda ct: 0)


def _build_fields():
    fields = [_ctid_field('ctid'), _ctid_field('veid'), _ctid_field('vpsid'),
              _string_field('private', 'PRIVATE', 32, lambda ct: ct.private),
              _string_field('root', 'ROOT', 32, lambda ct: ct.root),
              _string_field('mount_opts', 'MOUNT_OPTS', 16,
                            _config_getter('MOUNT_OPTS')),
              _string_field('origin_sample', 'ORIGIN_SAMPLE', 32,
                            _config_getter('ORIGIN_SAMPLE'), '%32s'),
              _string_field('hostname', 'HOSTNAME', 32,
                            _config_getter('HOSTNAME')),
              _string_field('name', 'NAME', 32, lambda ct: ct.name),
              Field('smart_name', 'SMARTNAME', '%10s', _smart_name_text,
                    lambda ct: (_json_str(ct.name) if ct.name is not None
                                else '%d' % ct.ctid),
                    lambda ct: ct.name),
              _string_field('description', 'DESCRIPTION', 32,
                            _config_getter('DESCRIPTION')),
              _string_field('ostemplate', 'OSTEMPLATE', 32,
                            _config_getter('OSTEMPLATE')),
              _list_field('ip', 'IP_ADDR', lambda ct: ct.ips),
              _list_field('nameserver', 'NAMESERVER',
                          _config_getter('NAMESERVER')),
              _list_field('searchdomain', 'SEARCHDOMAIN',
                          _config_getter('SEARCHDOMAIN')),
              Field('status', 'STATUS', '%-9s',
                    lambda ct, cut: '%-9s' % ct.status,
                    lambda ct: _json_str(ct.status),
                    lambda ct: STATUSES.index(ct.status), ('status',))]
    for name, header in UBC_HEADERS:
        fields += _ubc_fields(name, header)
    fields += _quota_fields('diskspace', 'DSPACE')
    fields += _quota_fields('diskinodes', 'DINODES')
    fields += [
        Field('laverage', 'LAVERAGE', '%14s', _laverage_text, _laverage_json,
              lambda ct: ct.cpustat and ct.cpustat[0], ('cpustat',)),
        Field('uptime', 'UPTIME', '%15s', _uptime_text,
              lambda ct: '%.3f' % (ct.cpustat[1] if ct.cpustat else 0.0),
              _uptime_key, ('cpustat',)),
        _cpu_field('cpulimit', 'CPULIM', 0),
        _cpu_field('cpuunits', 'CPUUNI', 1),
        Field('cpus', 'CPUS', '%5s',
              lambda ct, cut: '%5s' % ('-' if ct.cpus <= 0 else ct.cpus),
              lambda ct: '%d' % max(ct.cpus, 0), lambda ct: ct.cpus,
              ('cpus',)),
        Field('ioprio', 'IOP', '%3s',
              lambda ct, cut: '%3s' % ('-' if _ioprio(ct) < 0 else
                                       _ioprio(ct)),
              lambda ct: '%d' % max(_ioprio(ct), 0), _ioprio),
        _optional_number_field('iolimit', 'IOLIMIT', 10,
                               lambda ct: ct.number('IOLIMIT')),
        _optional_number_field('iopslimit', 'IOPSLIMIT', 10,
                               lambda ct: ct.number('IOPSLIMIT')),
        Field('onboot', 'ONBOOT', '%6s',
              lambda ct, cut: '%6s' % {True: 'yes', False: 'no'}.get(
                  _onboot(ct), '-'),
              lambda ct: {True: 'true', False: 'false'}.get(_onboot(ct),
                                                            'null'),
              lambda ct: 0),
        _optional_number_field('bootorder', 'BOOTORDER', 10,
                               lambda ct: ct.number('BOOTORDER'), 'null'),
        Field('layout', 'LAYOUT', '%6s', lambda ct, cut: '%-6s' % ct.layout,
              lambda ct: _json_str(ct.layout), lambda ct: ct.layout,
              ('layout',)),
        _flags_field('features', 'FEATURES',
                     lambda ct: _flags(ct.setting('FEATURES'), FEATURES)),
        _bool_field('vswap', 'VSWAP', 5, _vswap, ('ubc',)),
        _bool_field('disabled', 'DISABL', 6,
                    lambda ct: ct.setting('DISABLED') == 'yes'),
        _optional_number_field('vm_overcommit', 'VM_OVERCOMMIT', 13,
                               _vm_overcommit),
        _string_field('netfilter', 'NETFILTER', 9,
                      _config_getter('NETFILTER')),
        _flags_field('capability', 'CAPABILITY',
                     lambda ct: _flags(ct.setting('CAPABILITY'))),
    ]
    return fields


FIELDS = _build_fields()
FIELDS_BY_NAME = {field.name: field for field in FIELDS}


# -- collecting -----------------------------------------------------------

def _read(path):
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return f.read()
    except FileNotFoundError:
        return ''


def _running(host):
    """``{ctid: ips}`` of running CTs from ``proc/vz/veinfo``.

    The kernel lists addresses newest first; vzlist turns them back into
    a space-separated list in the order they were added.
    """
    running = {}
    for line in _read(os.path.join(host.proc_dir, 'vz', 'veinfo')).split(
            '\n'):
        parts = line.split()
        if len(parts) < 3 or not parts[0].isdigit() or parts[0] == '0':
            continue
        ips = parts[:2:-1]
        running[int(parts[0])] = ''.join(ip + ' ' for ip in ips) or None
    return running


_BEANCOUNTER_RE = re.compile(
    r'^ *(?:([0-9]+): )? *([a-z]+) +([0-9]+) +([0-9]+) +([0-9]+) +([0-9]+)'
    r' +([0-9]+) *$', re.MULTILINE)


def _read_beancounters(host, wanted):
    """``{ctid: {name: [held, maxheld, barrier, limit, failcnt]}}``."""
    names = frozenset(name for name, _ in UBC_HEADERS)
    found = {}
    current = None
    path = os.path.join(host.proc_dir, 'user_beancounters')
    for row in _BEANCOUNTER_RE.findall(_read(path)):
        if row[0]:
            ctid = int(row[0])
            current = found.setdefault(ctid, {}) if ctid in wanted else None
        if current is not None and row[1] in names:
            current[row[1]] = [int(value) for value in row[2:]]
    return found


def _config_ubc(config):
    """Barriers and limits a stopped CT's config sets (the rest are 0)."""
    ubc = {}
    for name, _ in UBC_HEADERS:
        barrier = limit = 0
        text = config.get(name.upper())
        if text:
            try:
                barrier, limit = conffile.parse_ubc(name.upper(), text)
            except conffile.FormatError:
                pass
        ubc[name] = [0, 0, barrier, limit, 0]
    return ubc


def _config_quota(config):
    quota = {}
    for name, key in (('diskspace', 'DISKSPACE'),
                      ('diskinodes', 'DISKINODES')):
        text = config.get(key)
        if text:
            try:
                if name == 'diskspace':
                    soft, hard = conffile.parse_diskspace(text)
                else:
                    soft, hard = (int(v) for v in text.split(':')[-2:])
            except (conffile.FormatError, ValueError):
                continue
            quota[name] = [0, soft, hard]
    return quota or None


def _ploop_quota(ct):
    """Usage and size of a ploop CT's filesystem (ploop fs statistics).

    A filesystem mounted on VE_ROOT (the real kernel backend) is asked
    directly, as ploop's statistics of a mounted image are live
    (reference 3.4); otherwise ploop's cached statistics of the image.
    """
    from vzsim.kernel import ploop
    stats = ploop.image_fs_stats(os.path.join(ct.private, 'root.hdd'))
    if stats is not None:
        used_kb = stats.used_kb
        if ct.root and os.path.ismount(ct.root):
            st = os.statvfs(ct.root)
            used_kb = (st.f_blocks - st.f_bfree) * st.f_frsize // 1024
        ct.quota = ct.quota or {}
        ct.quota['diskspace'] = [used_kb, stats.total_kb, stats.total_kb]
        ct.quota['diskinodes'] = [stats.inodes_used, stats.inodes,
                                  stats.inodes]


def _kernel_cpu(ct, state):
    """CPU limit/units and CPU count a running CT has in the kernel."""
    applied = state.get('cpu') or {}
    try:
        limit = int(applied.get('CPULIMIT') or 0)
        units = int(applied.get('CPUUNITS') or 1000)
    except ValueError:
        limit, units = 0, 1000
    # Through the fairsched weight, as /proc/fairsched reports them.
    weight = max(MAX_CPUUNITS // max(units, 1), 1)
    ct.cpu = (limit, MAX_CPUUNITS // weight)
    try:
        ct.cpus = int(applied.get('CPUS') or 0) or os.cpu_count() or 1
    except ValueError:
        ct.cpus = os.cpu_count() or 1


def _collect(host, options, needs):
    """The containers to list, or None when there is none at all."""
    backends.for_host(host).update_proc()
    running = _running(host)
    wanted = options.ctids
    if options.all or wanted or options.stopped:
        ctids = set(host.ctids()) | set(running)
    else:
        ctids = set(running)
    if wanted:
        ctids &= wanted
    if not ctids:
        return None
    containers = [Container(ctid, ctid in running, running.get(ctid))
                  for ctid in sorted(ctids)]
    beancounters = {}
    if 'ubc' in needs and not options.stopped:
        beancounters = _read_beancounters(host, ctids & set(running))
    now = time.time()
    vz_conf = host.vz_conf
    for ct in containers:
        config = ct.config = host.read_config(ct.ctid)
        ct.private = _ve_path(ct.ctid, config, vz_conf, 'VE_PRIVATE')
        ct.root = _ve_path(ct.ctid, config, vz_conf, 'VE_ROOT')
        name = config.get('NAME')
        if name and host.ctid_by_name(name) == ct.ctid:
            ct.name = name
        if not ct.ips:
            ct.ips = config.get('IP_ADDRESS') or None
        if ct.running:
            ct.ubc = beancounters.get(ct.ctid)
            if needs & {'cpustat', 'cpu', 'cpus'}:
                state = host.runtime(ct.ctid)
                ct.cpustat = ((0.0, 0.0, 0.0),
                              max(now - (state['start_time'] or now), 0.0))
                if not options.stopped:
                    _kernel_cpu(ct, state)
        elif not ct.private or not os.path.exists(ct.private):
            ct.hidden = True
            continue
        elif 'status' in needs:
            if os.path.exists(host.dump_file(ct.ctid)):
                ct.status = 'suspended'
            if host.runtime(ct.ctid)['mounted']:
                ct.status = 'mounted'
        _merge_config(ct, config)
        if needs & {'layout', 'quota'} and ct.private and os.path.isfile(
                os.path.join(ct.private, 'root.hdd', 'DiskDescriptor.xml')):
            ct.layout = 'ploop'
    if 'quota' in needs:
        for ct in containers:
            if ct.layout == 'ploop' and not ct.hidden:
                _ploop_quota(ct)
    _filter(containers, options)
    return containers


def _ve_path(ctid, config, vz_conf, key):
    value = config.get(key) or vz_conf.get(key)
    return conffile.expand_veid(value, ctid) if value else None


def _merge_config(ct, config):
    """What vzlist takes from the config when the kernel did not say."""
    if ct.ubc is None:
        ct.ubc = _config_ubc(config)
    ct.quota = _config_quota(config)
    if ct.cpu is None and (config.get('CPUUNITS') or
                           config.get('CPULIMIT')):
        ct.cpu = (ct.number('CPULIMIT') or 0, ct.number('CPUUNITS') or 0)
    if ct.cpus < 0 and ct.number('CPUS') is not None:
        ct.cpus = ct.number('CPUS')


def _pattern(text):
    """fnmatch(3) without flags as a compiled regular expression."""
    out = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == '*':
            out.append('.*')
        elif char == '?':
            out.append('.')
        elif char == '\\' and i + 1 < len(text):
            i += 1
            out.append(re.escape(text[i]))
        elif char == '[':
            end = text.find(']', i + 2 if text[i + 1:i + 2] in '!^' else i + 2)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = text[i + 1:end]
                if body[:1] in ('!', '^'):
                    body = '^' + body[1:]
                out.append('[%s]' % body.replace('\\', '\\\\'))
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile('(?s)%s\\Z' % ''.join(out))


def _filter(containers, options):
    for attribute, getter in (('hostname', lambda ct: ct.setting('HOSTNAME')),
                              ('name_filter', lambda ct: ct.name),
                              ('description',
                               lambda ct: ct.setting('DESCRIPTION'))):
        text = getattr(options, attribute)
        if text is None:
            continue
        pattern = _pattern(text)
        for ct in containers:
            value = getter(ct)
            if value is None or not pattern.match(value):
                ct.hidden = True


# -- output ---------------------------------------------------------------

def _text_lines(containers, fields, options):
    lines = []
    if options.header:
        lines.append(' '.join(field.header_format % field.header
                              for field in fields).rstrip())
    last = len(fields) - 1
    for ct in containers:
        cells = [field.text(ct, options.trim and index != last)
                 for index, field in enumerate(fields)]
        lines.append(' '.join(cells).rstrip())
    return ''.join(line + '\n' for line in lines)


def _json_text(containers, fields):
    # Each key's prefix is built once: this runs ~60 times per container.
    columns = [(',\n    "%s": ' % field.name, field.json) for field in fields]
    entries = ['\n  {%s\n  }' % ''.join(
        [prefix + value(ct) for prefix, value in columns])[1:]
        for ct in containers]
    return '[%s\n]\n' % ','.join(entries)


def _sort(containers, field, reverse):
    def key(ct):
        value = field.key(ct)
        return (value is not None, value if value is not None else 0)
    containers.sort(key=key)
    if reverse:
        containers.reverse()


# -- command line ---------------------------------------------------------

class Options:
    def __init__(self):
        self.all = self.stopped = self.json = False
        self.header = self.trim = True
        self.fields = None
        self.sort = None
        self.reverse = False
        self.hostname = self.name_filter = self.description = None
        self.ctids = set()


def _getopt(argv):
    """GNU getopt_long as vzlist uses it: ``[(letter, value)], args``."""
    import getopt
    long_options = [name + ('=' if letter in 'Ndhos' else '')
                    for name, letter in LONG_OPTIONS.items()]
    try:
        opts, args = getopt.gnu_getopt(argv, SHORT_OPTIONS, long_options)
    except getopt.GetoptError as exc:
        if exc.opt and 'requires argument' in exc.msg:
            message = "vzlist: option requires an argument -- '%s'" % exc.opt
        elif len(exc.opt) == 1:
            message = "vzlist: invalid option -- '%s'" % exc.opt
        else:
            message = "vzlist: unrecognized option '--%s'" % exc.opt
        raise Usage(message)
    return [(LONG_OPTIONS.get(opt[2:], opt[1:]), value)
            for opt, value in opts], args


def _parse(host, argv):
    """:class:`Options` of ``argv``, or an exit code to end with."""
    options = Options()
    opts, args = _getopt(argv)
    for letter, value in opts:
        if letter == 'L':
            sys.stdout.write(''.join('%-15s %-15s\n' % (f.name, f.header)
                                     for f in FIELDS))
            return 0
        if letter == 'e':
            sys.stdout.write(USAGE)
            return 0
        if letter == 's':
            options.reverse = value.startswith('-')
            options.sort = FIELDS_BY_NAME.get(value[1:] if options.reverse
                                              else value)
            if options.sort is None:
                raise hostfs.ToolError(1, 'Invalid sort field name: %s'
                                       % value)
        elif letter in ('o', '1', 'n'):
            options.fields = {'o': value, '1': 'veid',
                              'n': DEFAULT_NAME_FIELDS}[letter]
            options.header = options.header and letter != '1'
        else:
            _set_flag(options, letter, value)
    for arg in args:
        ctid = int(arg) if re.match(r'^\s*[+-]?[0-9]+$', arg) else 0
        if not ctid:
            ctid = host.ctid_by_name(arg)
            if ctid is None:
                raise hostfs.ToolError(1, 'CT ID %s is invalid.' % arg)
        options.ctids.add(ctid)
    return options


def _set_flag(options, letter, value):
    if letter in 'hNd':
        setattr(options, {'h': 'hostname', 'N': 'name_filter',
                          'd': 'description'}[letter], value)
    else:
        attribute, state = {'S': ('stopped', True), 't': ('trim', False),
                            'H': ('header', False), 'a': ('all', True),
                            'j': ('json', True)}[letter]
        setattr(options, attribute, state)


def _fields(options):
    """The fields to print; JSON without ``-o`` prints every base field."""
    if options.fields is None and options.json:
        return [field for field in FIELDS if field.base]
    text = options.fields or DEFAULT_FIELDS
    names = text.split(',')
    if len(names) > 1 and names[-1] == '':
        names.pop()
    fields = []
    for position, name in enumerate(names):
        if len(name) > 30:
            raise hostfs.ToolError(1, 'Invalid field: %s'
                                   % ','.join(names[position:]))
        field = FIELDS_BY_NAME.get(name)
        if field is None:
            raise hostfs.ToolError(1, 'Unknown field: %s' % name)
        if options.json and not field.base:
            raise hostfs.ToolError(1, "Field `%s' is not available in JSON "
                                      "output" % name)
        fields.append(field)
    return fields


def _list(host, argv):
    try:
        options = _parse(host, argv)
    except Usage as exc:
        sys.stderr.write('%s\n' % exc)
        sys.stdout.write(USAGE)
        return 1
    if not isinstance(options, Options):
        return options
    fields = _fields(options)
    needs = set()
    for field in fields + ([options.sort] if options.sort else []):
        needs |= field.needs
    containers = _collect(host, options, needs)
    if containers is None:
        if options.json:
            sys.stdout.write('[]\n')
        else:
            sys.stderr.write('Container(s) not found\n')
        return 1 if options.ctids else 0
    if options.sort is not None and options.sort.name not in (
            'ctid', 'veid', 'vpsid'):
        _sort(containers, options.sort, options.reverse)
    elif options.reverse:
        containers.reverse()
    shown = [ct for ct in containers if not ct.hidden and
             not (options.stopped and ct.running)]
    if options.json:
        sys.stdout.write(_json_text(shown, fields))
    else:
        sys.stdout.write(_text_lines(shown, fields, options))
    return 0


def main(root, argv):
    """Run ``vzlist argv`` on the simulated host in ``root``."""
    host = hostfs.Host(root)
    return hostfs.run_tool(host, 'vzlist', argv, _list)
