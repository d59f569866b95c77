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

"""vzctl's configuration file format and value units.

The driver's and its privileged helper's reading of ``vz.conf`` and
container configs (through :mod:`.hostpaths`).  Standard library only,
importing nothing of the driver.  The simulated host reads and writes them
with its own parser (:mod:`vzsim.conffile`); both are checked against golden
files written the way vzctl writes them (``tests/unit/vzsim/golden``), so a
misreading on either side shows.

The rules follow vzctl 4.x (``parse_line()``, ``vps_save_config()``,
``parse_ub()``); see doc/source/reference/openvz-tools.rst.
"""

import math
import os
import re

#: vzctl's "unlimited" on 64-bit hosts.
LONG_MAX = 9223372036854775807
PAGE_SIZE = 4096

_KEY_RE = re.compile(r'^[A-Z][A-Z0-9_]*$')
_SIZE_RE = re.compile(r'^([0-9]+(?:\.[0-9]+)?)([TGMKPB]?)$', re.IGNORECASE)
_SUFFIX_BYTES = {'': 1, 'B': 1, 'K': 1024, 'M': 1024 ** 2, 'G': 1024 ** 3,
                 'T': 1024 ** 4, 'P': PAGE_SIZE}

#: UBC parameters counted in pages; a byte suffix is converted to pages.
PAGE_PARAMS = frozenset(('PHYSPAGES', 'SWAPPAGES', 'PRIVVMPAGES',
                         'VMGUARPAGES', 'OOMGUARPAGES', 'LOCKEDPAGES',
                         'SHMPAGES'))
#: UBC parameters counted in items; they take no suffix.
ITEM_PARAMS = frozenset(('NUMPROC', 'NUMTCPSOCK', 'NUMOTHERSOCK', 'NUMFILE',
                         'NUMFLOCK', 'NUMPTY', 'NUMSIGINFO', 'NUMIPTENT',
                         'AVNUMPROC'))
#: UBC parameters counted in bytes.
BYTE_PARAMS = frozenset(('KMEMSIZE', 'TCPSNDBUF', 'TCPRCVBUF', 'OTHERSOCKBUF',
                         'DGRAMRCVBUF', 'DCACHESIZE'))
UBC_PARAMS = PAGE_PARAMS | ITEM_PARAMS | BYTE_PARAMS


class FormatError(ValueError):
    """A value that vzctl would reject."""


def parse_line(line):
    """Return ``(key, value)`` for one config line, or None.

    A quoted value runs to the *last* double quote on the line, so JSON in
    DESCRIPTION survives; backslashes are stripped, as vzctl does.
    """
    line = line.strip()
    if not line or line.startswith('#') or '=' not in line:
        return None
    key, _, raw = line.partition('=')
    if not _KEY_RE.match(key):
        return None
    if raw.startswith('"'):
        end = raw.rfind('"')
        raw = raw[1:end] if end > 0 else raw[1:]
    return key, raw.replace('\\', '')


def parse(text):
    """Parse config text into a dict; the first occurrence of a key wins."""
    values = {}
    for line in text.splitlines():
        item = parse_line(line)
        if item and item[0] not in values:
            values[item[0]] = item[1]
    return values


def read(path):
    """Read a config file; a missing file reads as empty."""
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return parse(f.read())
    except FileNotFoundError:
        return {}


def render(text, changes, remove=()):
    """Return ``text`` with ``changes`` applied the way vzctl saves.

    Existing ``KEY=`` lines are replaced in place, new keys are appended,
    comments and unknown lines are kept, values are written quoted.  Keys in
    ``remove`` are dropped.
    """
    pending = dict(changes)
    out = []
    seen = set()
    for line in text.splitlines():
        item = parse_line(line)
        key = item[0] if item else None
        if key in remove or (key in seen and key in changes):
            continue
        if key in pending:
            out.append('%s="%s"' % (key, pending.pop(key)))
            seen.add(key)
            continue
        out.append(line)
    for key, value in pending.items():
        out.append('%s="%s"' % (key, value))
    return '\n'.join(out) + '\n'


def update(path, changes, remove=()):
    """Apply ``changes`` to the config at ``path`` atomically."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except FileNotFoundError:
        text = ''
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(render(text, changes, remove))
    os.replace(tmp, path)


def expand_veid(value, ctid):
    """Substitute ``$VEID``/``${VEID}`` in VE_ROOT or VE_PRIVATE."""
    return value.replace('${VEID}', str(ctid)).replace('$VEID', str(ctid))


def parse_size(text, unit=1):
    """Parse ``N[TGMKPB]`` (fractions allowed) into bytes.

    ``unit`` is the multiplier for a bare number (1024 for KB options).
    """
    match = _SIZE_RE.match(text.strip())
    if not match:
        raise FormatError(text)
    number, suffix = match.groups()
    factor = _SUFFIX_BYTES[suffix.upper()] if suffix else unit
    return int(math.ceil(float(number) * factor))


def _ubc_part(param, text):
    if text == 'unlimited':
        return LONG_MAX
    if param in ITEM_PARAMS:
        if not text.isdigit():
            raise FormatError(text)
        return int(text)
    match = _SIZE_RE.match(text)
    if not match:
        raise FormatError(text)
    if param in PAGE_PARAMS:
        if not match.group(2) or match.group(2).upper() == 'P':
            return int(float(match.group(1)))
        return int(math.ceil(parse_size(text) / PAGE_SIZE))
    return parse_size(text)


def parse_ubc(param, text):
    """Parse a ``barrier[:limit]`` UBC value into ``(barrier, limit)``.

    Page parameters are returned in pages, byte parameters in bytes; a
    single value sets both barrier and limit.
    """
    parts = text.split(':')
    if len(parts) > 2 or not all(parts):
        raise FormatError(text)
    barrier = _ubc_part(param, parts[0])
    limit = _ubc_part(param, parts[-1])
    return barrier, limit


def format_ubc(barrier, limit):
    """Format a UBC pair as vzctl saves it."""
    def one(v):
        return 'unlimited' if v >= LONG_MAX else str(v)
    if barrier == limit:
        return one(barrier)
    return '%s:%s' % (one(barrier), one(limit))


def parse_diskspace(text):
    """Parse ``soft[:hard]`` disk limits (bare numbers are KB) into KB."""
    parts = text.split(':')
    if len(parts) > 2 or not all(parts):
        raise FormatError(text)
    soft = parse_size(parts[0], unit=1024) // 1024
    hard = parse_size(parts[-1], unit=1024) // 1024
    return soft, hard


def format_diskspace(soft_kb, hard_kb):
    return '%d:%d' % (soft_kb, hard_kb)


def netif_devices(text):
    """NETIF value -> list of dicts (``ifname=...,mac=...;...``)."""
    devices = []
    for item in (text or '').split(';'):
        if not item.strip():
            continue
        device = {}
        for pair in item.split(','):
            key, _, value = pair.partition('=')
            device[key.strip()] = value.strip()
        if device.get('ifname'):
            devices.append(device)
    return devices
