"""Which containers belong to Nova, and what state they are in.

A container made by this driver carries its instance UUID twice: as its
vzctl NAME and inside its DESCRIPTION (plain ``key=value`` words, with the
instance name Nova shows as ``instance_name``).  That is how the driver
recognises its containers after any restart, without a database.

State comes from ``vzlist -a -j``: one call lists every container, and the
result answers every query of a periodic cycle until it expires or the
driver changes something.
"""

import json
import os
import re
import threading
import time

import nova.conf  # noqa: F401  ([DEFAULT] host, used in descriptions)
from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_openvz import conf as openvz_conf
from nova_openvz import exception
from nova_openvz import hosttools

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF

#: vzlist fields the driver reads; all are valid in JSON output.
LIST_FIELDS = ('ctid', 'name', 'description', 'status', 'cpus', 'physpages')

_CTID_FILE_RE = re.compile(r'^([0-9]+)(\.conf.*)?$')
_UNSAFE_RE = re.compile(r'[^A-Za-z0-9._-]')


class Container(object):
    """One container as vzlist reported it."""

    def __init__(self, record):
        self.ctid = int(record['ctid'])
        self.status = record.get('status') or 'stopped'
        self.cpus = record.get('cpus') or 0
        self.physpages = record.get('physpages') or {}
        self.instance_uuid = owner_uuid(record)
        self.instance_name = _description_words(record).get('nova-name')

    @property
    def memory_limit_kb(self):
        limit = self.physpages.get('limit') or 0
        return limit * 4 if limit < 2 ** 62 else 0


def describe(instance_uuid, instance_name=None):
    """The DESCRIPTION a Nova container carries.

    Plain ``key=value`` words, never quotes or backslashes: vzctl strips
    backslashes when it reads a config, and ``vzlist -j`` prints strings
    without escaping them, so a JSON description would break the listing.
    """
    words = ['nova-instance=%s' % instance_uuid]
    if instance_name:
        words.append('nova-name=%s' % _UNSAFE_RE.sub('-', instance_name))
    words.append('nova-host=%s' % _UNSAFE_RE.sub('-', CONF.host))
    return ' '.join(words)


def _description_words(record):
    return dict(word.partition('=')[::2]
                for word in (record.get('description') or '').split())


def owner_uuid(record):
    """Instance UUID of a vzlist record, or None if Nova did not make it."""
    name = record.get('name')
    if not name or not uuidutils.is_uuid_like(name):
        return None
    words = _description_words(record)
    return name if words.get('nova-instance') == name else None


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


def _parse_listing(stdout):
    try:
        records = json.loads(stdout or '[]')
    except ValueError as e:
        records = _records_by_layout(stdout)
        if not records:
            raise exception.HostToolError(
                tool='vzlist', command='-j', exit_code=0,
                detail='unreadable JSON output: %s' % e)
    found = []
    for record in records:
        if not isinstance(record.get('ctid'), int):
            LOG.warning('Ignoring a vzlist record without a CT ID: %r',
                        record)
            continue
        found.append(Container(record))
    return found


class ContainerListing(object):
    """A short-lived view of every container on the host.

    A full ``vzlist -a -j`` is taken when the view is older than
    ``[openvz] state_cache_seconds``.  Containers the driver itself changed
    are marked stale and re-read together in one ``vzlist -j <CTID>...``
    call at the next query, so an operation never costs a listing of the
    whole host.  Thread-safe; one vzlist call at a time.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._by_uuid = None
        self._ctids = set()
        self._stale = {}
        self._taken_at = 0.0

    def invalidate(self):
        """Drop the whole view; the next query lists every container."""
        with self._lock:
            self._by_uuid = None
            self._stale.clear()

    def changed(self, instance_uuid, ctid):
        """Note that the driver changed (or created) this container."""
        with self._lock:
            self._stale[instance_uuid] = ctid

    def forget(self, instance_uuid):
        """Note that the driver removed this container."""
        with self._lock:
            self._stale.pop(instance_uuid, None)
            if self._by_uuid is not None:
                gone = self._by_uuid.pop(instance_uuid, None)
                if gone is not None:
                    self._ctids.discard(gone.ctid)

    def _list_all_locked(self):
        call = hosttools.vzlist('-a', '-j', '-o', ','.join(LIST_FIELDS))
        containers = _parse_listing(call.stdout)
        self._ctids = {c.ctid for c in containers}
        self._by_uuid = {c.instance_uuid: c for c in containers
                         if c.instance_uuid}
        self._stale.clear()
        self._taken_at = time.monotonic()

    def _reread_stale_locked(self):
        ctids = sorted(set(self._stale.values()))
        call = hosttools.vzlist('-j', '-o', ','.join(LIST_FIELDS),
                                *[str(ctid) for ctid in ctids],
                                ok_codes=(0, 1))
        found = {c.instance_uuid: c for c in _parse_listing(call.stdout)
                 if c.instance_uuid}
        for instance_uuid in self._stale:
            old = self._by_uuid.pop(instance_uuid, None)
            if old is not None:
                self._ctids.discard(old.ctid)
        for instance_uuid, container in found.items():
            self._by_uuid[instance_uuid] = container
            self._ctids.add(container.ctid)
        self._stale.clear()

    def _current(self, fresh=False):
        with self._lock:
            expired = (time.monotonic() - self._taken_at >
                       CONF.openvz.state_cache_seconds)
            if fresh or self._by_uuid is None or expired:
                self._list_all_locked()
            elif self._stale:
                self._reread_stale_locked()
            return self._by_uuid, self._ctids

    def all(self, fresh=False):
        """Nova's containers as ``{instance_uuid: Container}``."""
        return dict(self._current(fresh)[0])

    def used_ctids(self):
        return set(self._current(fresh=True)[1])

    def find(self, instance_uuid, fresh=False):
        """The container of an instance, or None.

        With ``fresh``, a container whose CTID is known is re-read alone,
        so one instance's query stays one short call; only an instance
        the view has never seen needs a full listing.
        """
        if fresh:
            with self._lock:
                cached = (self._by_uuid or {}).get(instance_uuid)
                if cached is not None:
                    self._stale[instance_uuid] = cached.ctid
                unknown = instance_uuid not in self._stale
            if unknown:
                return self._current(fresh=True)[0].get(instance_uuid)
        return self._current()[0].get(instance_uuid)


class CtidAllocator(object):
    """Hands out free container IDs without races.

    An ID is free when no container config, destroyed config or private
    area uses it and no spawn in this process holds it.  vzctl's own
    per-container lock and its "private area exists" check (exit 44) guard
    against other processes; the caller retries with a new ID then.
    """

    def __init__(self, listing, host_config):
        self._listing = listing
        self._host_config = host_config
        self._lock = threading.Lock()
        self._reserved = set()

    def _ids_on_disk(self):
        found = set()
        for directory in (self._host_config.conf_dir,
                          self._host_config.private_parent()):
            try:
                names = os.listdir(directory)
            except OSError as e:
                LOG.debug('Cannot list %s for CT IDs: %s', directory, e)
                continue
            for name in names:
                match = _CTID_FILE_RE.match(name)
                if match:
                    found.add(int(match.group(1)))
        return found

    def reserve(self):
        used = self._listing.used_ctids() | self._ids_on_disk()
        with self._lock:
            ctid = CONF.openvz.min_ctid
            while ctid in used or ctid in self._reserved:
                ctid += 1
            if ctid > 2147483644:
                raise exception.ContainerIdExhausted(
                    start=CONF.openvz.min_ctid)
            self._reserved.add(ctid)
            return ctid

    def release(self, ctid):
        with self._lock:
            self._reserved.discard(ctid)
