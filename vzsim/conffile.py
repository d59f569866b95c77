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

"""vzctl's configuration file format, as the simulated host reads it.

The simulator's own reading of ``vz.conf``, ``<CTID>.conf`` and the
``ve-*.conf-sample`` files, written from openvz-reference.md section 4 and
kept apart from the driver's parser (:mod:`nova_openvz.privsep.vzconf`): a
misreading of the format in either shows up as a disagreement on the golden
files under ``tests/unit/vzsim/golden``.

Reading (reference 4.1): one ``NAME=value`` per line; blank lines and lines
starting with ``#`` are comments; a value that starts with ``"`` runs to the
last ``"`` on the line; backslashes are dropped; the first line of a key
counts.  Writing: a changed key replaces its line where it stands, a new key
is appended, every other line (comments, unknown keys) is kept, values are
written quoted, and the file is replaced through ``<file>.tmp``.

Units (reference 4.4): UBC values are ``barrier[:limit]``, with T/G/M/K/P/B
suffixes (1024 multiples, P pages), fractions and ``unlimited``; page
parameters are kept in pages, item parameters take no suffix; DISKSPACE and
DISKINODES are ``soft[:hard]`` with bare numbers in KB.  NETIF is
``key=value`` pairs joined by ``,``, devices joined by ``;`` (reference 4.5).

Standard library only: every simulated tool call imports this module.
"""

import math
import os

#: "unlimited" (LONG_MAX of a 64-bit host).
LONG_MAX = (1 << 63) - 1
#: x86 page size; P in a size means pages.
PAGE_SIZE = 4096

#: Beancounters counted in pages: a byte size becomes pages, rounded up.
PAGE_PARAMS = frozenset((
    'LOCKEDPAGES', 'PRIVVMPAGES', 'SHMPAGES', 'PHYSPAGES', 'VMGUARPAGES',
    'OOMGUARPAGES', 'SWAPPAGES'))
#: Beancounters counted in items: plain integers only.
ITEM_PARAMS = frozenset((
    'NUMPROC', 'NUMTCPSOCK', 'NUMFLOCK', 'NUMPTY', 'NUMSIGINFO',
    'NUMOTHERSOCK', 'NUMFILE', 'NUMIPTENT', 'AVNUMPROC'))
#: Beancounters counted in bytes.
BYTE_PARAMS = frozenset((
    'KMEMSIZE', 'TCPSNDBUF', 'TCPRCVBUF', 'OTHERSOCKBUF', 'DGRAMRCVBUF',
    'DCACHESIZE'))
UBC_PARAMS = PAGE_PARAMS | ITEM_PARAMS | BYTE_PARAMS

#: Suffix -> bytes (upper case; case does not matter on input).
MULTIPLIERS = {'B': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30,
               'T': 1 << 40, 'P': PAGE_SIZE}


class FormatError(ValueError):
    """A value vzctl would refuse."""


# -- lines ------------------------------------------------------------------

def split_line(line):
    """``(KEY, value)`` of a config line, or None for anything else."""
    text = line.strip()
    if text[:1] in ('', '#'):
        return None
    key, equals, value = text.partition('=')
    if not equals or not key or key != key.strip():
        return None
    if not (key[0].isascii() and key[0].isupper()) or not all(
            c.isascii() and (c.isupper() or c.isdigit() or c == '_')
            for c in key):
        return None
    if value[:1] == '"':
        last = value.rfind('"')
        value = value[1:last] if last > 0 else value[1:]
    return key, ''.join(value.split('\\'))


def quoted(key, value):
    """The line vzctl writes for ``key``."""
    return '%s="%s"' % (key, value)


class ConfigText:
    """The lines of one config file, read and changed the way vzctl does."""

    def __init__(self, text=''):
        self.lines = text.splitlines()

    def values(self):
        found = {}
        for line in self.lines:
            item = split_line(line)
            if item is not None:
                found.setdefault(*item)
        return found

    def change(self, changes, remove=()):
        """Set keys of ``changes`` and drop those in ``remove``."""
        done = set()
        kept = []
        for line in self.lines:
            item = split_line(line)
            key = item[0] if item else None
            if key is None:
                kept.append(line)
            elif key in remove or key in done:
                continue
            elif key in changes:
                kept.append(quoted(key, changes[key]))
                done.add(key)
            else:
                kept.append(line)
        kept.extend(quoted(key, value) for key, value in changes.items()
                    if key not in done)
        self.lines = kept

    def text(self):
        return ''.join(line + '\n' for line in self.lines)


def parse(text):
    """Config text -> dict of its keys."""
    return ConfigText(text).values()


def read(path):
    """The keys of the config file at ``path`` ({} when it is absent)."""
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return parse(f.read())
    except FileNotFoundError:
        return {}


def render(text, changes, remove=()):
    """``text`` after vzctl saved ``changes`` (and dropped ``remove``)."""
    config = ConfigText(text)
    config.change(changes, remove)
    return config.text()


def update(path, changes, remove=()):
    """Save ``changes`` into the file at ``path`` through ``<path>.tmp``."""
    try:
        with open(path, encoding='utf-8') as f:
            before = f.read()
    except FileNotFoundError:
        before = ''
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
        f.write(render(before, changes, remove))
    os.rename(path + '.tmp', path)


def expand_veid(value, ctid):
    """VE_ROOT/VE_PRIVATE with ``$VEID`` and ``${VEID}`` made the CT ID."""
    for form in ('${VEID}', '$VEID'):
        value = value.replace(form, '%d' % int(ctid))
    return value


# -- units ------------------------------------------------------------------

def _number(text):
    """``(number, suffix)`` of ``N[.N][suffix]``; FormatError otherwise."""
    text = text.strip()
    suffix = text[-1:].upper() if text[-1:].isalpha() else ''
    digits = text[:-1] if suffix else text
    whole, dot, fraction = digits.partition('.')
    if (not whole.isdigit() or not whole.isascii() or
            (dot and not (fraction.isdigit() and fraction.isascii())) or
            (suffix and suffix not in MULTIPLIERS)):
        raise FormatError(text)
    return float(digits), suffix


def parse_size(text, unit=1):
    """Bytes in ``N[TGMKPB]``; a bare number counts ``unit`` bytes each."""
    number, suffix = _number(text)
    return int(math.ceil(number * (MULTIPLIERS[suffix] if suffix else unit)))


def _ubc_number(param, text):
    if text == 'unlimited':
        return LONG_MAX
    if param in ITEM_PARAMS:
        if not (text.isdigit() and text.isascii()):
            raise FormatError(text)
        return int(text)
    number, suffix = _number(text)
    if param not in PAGE_PARAMS:
        return parse_size(text)
    if suffix in ('', 'P'):
        return int(number)
    return -(-parse_size(text) // PAGE_SIZE)


def _pair(text, one):
    """``(one(a), one(b))`` of ``a[:b]``; ``a`` alone counts twice."""
    parts = text.split(':')
    if len(parts) > 2 or '' in parts:
        raise FormatError(text)
    return one(parts[0]), one(parts[-1])


def parse_ubc(param, text):
    """``(barrier, limit)`` of a UBC value (pages, items or bytes)."""
    return _pair(text, lambda part: _ubc_number(param, part))


def format_ubc(barrier, limit):
    """A UBC pair as vzctl saves it: one number when both are equal."""
    words = ['unlimited' if value >= LONG_MAX else '%d' % value
             for value in (barrier, limit)]
    return words[0] if barrier == limit else ':'.join(words)


def parse_diskspace(text):
    """``(soft, hard)`` in KB of ``soft[:hard]`` (bare numbers are KB)."""
    return _pair(text, lambda part: parse_size(part, unit=1024) // 1024)


def format_diskspace(soft_kb, hard_kb):
    """DISKSPACE as vzctl saves it: ``KB:KB``."""
    return '%d:%d' % (soft_kb, hard_kb)


# -- NETIF ------------------------------------------------------------------

def netif_devices(text):
    """The veth devices of a NETIF value, as dicts; ``ifname`` required."""
    devices = ({key.strip(): value.strip() for key, _, value in
                (field.partition('=') for field in entry.split(',')
                 if field.strip())}
               for entry in (text or '').split(';'))
    return [device for device in devices if device.get('ifname')]
