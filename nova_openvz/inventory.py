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

"""Which containers belong to Nova, and what state they are in.

A container made by this driver carries its instance UUID twice: as its
vzctl NAME and inside its DESCRIPTION (plain ``key=value`` words, with the
instance name Nova shows as ``instance_name``).  That is how the driver
recognises its containers after any restart, without a database.

State comes from ``vzlist -a -j``: one call lists every container, and the
result answers every query of a periodic cycle until it expires or a
container handle (:class:`nova_openvz.container.Container`, which the
listing hands out) changes something.
"""

import itertools
import os
import re
import threading
import time

import nova.conf  # noqa: F401  ([DEFAULT] host, used in descriptions)
from nova import exception as nova_exception
from oslo_log import log as logging

from nova_openvz import conf as openvz_conf
from nova_openvz import container as container_handle
from nova_openvz import events
from nova_openvz import exception
from nova_openvz import hosttools
from nova_openvz import privsep
from nova_openvz.privsep import commands

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF
#: The tool generation's renderer and parsers (see :mod:`nova_openvz.vz4`).
_TOOLS = container_handle.Container.tools

_CTID_FILE_RE = re.compile(r'^([0-9]+)(\.conf.*|\.lck)?$')
#: The DESCRIPTION word of a container Nova paused (its processes frozen
#: with ``vzctl chkpnt --suspend``).  vzlist lists a frozen container as
#: running (reference 1.9); this word, read in the same listing, is how the
#: driver tells it apart, after any restart (see :mod:`nova_openvz.pausing`).
PAUSED_WORD = 'nova-paused=yes'
#: The DESCRIPTION word of a container the driver froze for a snapshot,
#: written before the freeze and removed after the thaw: a nova-compute
#: that died in between left it frozen, and its successor thaws it
#: (:func:`nova_openvz.snapshots.thaw_leftovers`).
SNAPSHOT_FREEZE_WORD = 'nova-frozen=snapshot'
_UNSAFE_RE = re.compile(r'[^A-Za-z0-9._-]')


class ContainerRecord(object):
    """One container as vzlist reported it."""

    def __init__(self, record):
        self.ctid = int(record['ctid'])
        self.status = record.get('status') or 'stopped'
        self.cpus = record.get('cpus') or 0
        self.physpages = record.get('physpages') or {}
        self.instance_uuid = owner_uuid(record)
        self.instance_name = _description_words(record).get('nova-name')
        self.description = record.get('description') or ''
        # Only a running container can be frozen; a stopped one keeps the
        # word until the driver next starts it.
        self.paused_mark = PAUSED_WORD in self.description.split()
        self.paused = self.paused_mark and self.status == 'running'
        self.snapshot_freeze_mark = \
            SNAPSHOT_FREEZE_WORD in self.description.split()
        #: The instance a rescue container rescues (it has no NAME).
        self.rescue_of = None if self.instance_uuid else rescued_uuid(record)

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


def with_word(description, word, present):
    """``description`` with (``present``) or without the mark ``word``."""
    words = [w for w in description.split() if w != word]
    return ' '.join(words + [word] if present else words)


def mark_paused(description, paused):
    """``description`` with (``paused``) or without the pause word."""
    return with_word(description, PAUSED_WORD, paused)


def describe_rescue(instance_uuid):
    """The DESCRIPTION of an instance's rescue container (no NAME)."""
    return 'nova-rescue=%s nova-host=%s' % (
        instance_uuid, _UNSAFE_RE.sub('-', CONF.host))


def rescued_uuid(record):
    """The instance a vzlist record rescues, or None."""
    return commands.rescued_instance(record.get('name'),
                                     record.get('description'))


def _description_words(record):
    return dict(word.partition('=')[::2]
                for word in (record.get('description') or '').split())


def owner_uuid(record):
    """Instance UUID of a vzlist record, or None if Nova did not make it."""
    return commands.nova_instance(record.get('name'),
                                  record.get('description'))


def _parse_listing(stdout):
    found = []
    for record in _TOOLS.listing_records(stdout):
        if not isinstance(record.get('ctid'), int):
            LOG.warning('Ignoring a vzlist record without a CT ID: %r',
                        record)
            continue
        found.append(ContainerRecord(record))
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
        #: Instances being changed by the driver (no lifecycle events).
        self.inflight = events.InFlight()
        self._by_uuid = None
        self._rescues = {}
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
        call = hosttools.run('vzlist', *_TOOLS.list_all())
        containers = _parse_listing(call.stdout)
        self._ctids = {c.ctid for c in containers}
        self._by_uuid = {c.instance_uuid: c for c in containers
                         if c.instance_uuid}
        self._rescues = {c.rescue_of: c for c in containers if c.rescue_of}
        self._stale.clear()
        self._taken_at = time.monotonic()

    def _reread_stale_locked(self):
        ctids = sorted(set(self._stale.values()))
        call = hosttools.run('vzlist', *_TOOLS.list_some(ctids),
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

    def _current(self, fresh=False, max_age=None):
        if max_age is None:
            max_age = CONF.openvz.state_cache_seconds
        with self._lock:
            expired = time.monotonic() - self._taken_at > max_age
            if fresh or self._by_uuid is None or expired:
                self._list_all_locked()
            elif self._stale:
                self._reread_stale_locked()
            return self._by_uuid, self._ctids

    def all(self, fresh=False, max_age=None):
        """Nova's containers as ``{instance_uuid: ContainerRecord}``.

        :param max_age: list again if the view is older (seconds); default
            ``[openvz] state_cache_seconds``.
        """
        return dict(self._current(fresh, max_age)[0])

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

    def find_rescue(self, instance_uuid, fresh=False):
        """The rescue container of an instance (a record), or None.

        Rescue and unrescue :meth:`invalidate` the view, so the next query
        lists the host again.
        """
        self._current(fresh)
        with self._lock:
            return self._rescues.get(instance_uuid)

    def handle(self, instance_uuid, fresh=False):
        """The :class:`~nova_openvz.container.Container` of an instance.

        :raises: InstanceNotFound when it has none.
        """
        record = self.find(instance_uuid, fresh=fresh)
        if record is None:
            raise nova_exception.InstanceNotFound(instance_id=instance_uuid)
        return self.new_handle(record.ctid, instance_uuid, record.status,
                               record.paused)

    def new_handle(self, ctid, instance_uuid, status=None, paused=False):
        """A handle for container ``ctid`` that reports its changes here."""
        return container_handle.Container(ctid, instance_uuid, self, status,
                                          paused)


class CtidAllocator(object):
    """Hands out free container IDs without races.

    An ID is free when no container config, destroyed config, private
    area or vzctl lock file uses it and no spawn in this process holds it.
    vzctl's own per-container lock and its "private area exists" check
    (exit 44) guard against other processes; the caller retries then,
    avoiding the IDs it tried.

    With ``[openvz] first_ctid`` set, IDs are handed out in turn from it,
    each after the last one (as process IDs are), not the lowest free one:
    the ID of a container that moved to another host is free here at once,
    but the container still holds it there, and a move back of another
    container with that ID would be refused.
    """

    def __init__(self, listing):
        self._listing = listing
        self._lock = threading.Lock()
        self._reserved = set()
        self._next = None

    def _ids_on_disk(self):
        found = set()
        host = privsep.paths()
        for directory in (host.conf_dir, host.private_parent(),
                          host.lock_dir):
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

    def reserve(self, avoid=()):
        """A free CT ID, none of ``avoid``, held until :meth:`release`."""
        used = self._listing.used_ctids() | self._ids_on_disk() | set(avoid)
        lowest = CONF.openvz.min_ctid
        first = max(CONF.openvz.first_ctid or lowest, lowest)
        with self._lock:
            if CONF.openvz.first_ctid and self._next is not None:
                first = max(self._next, lowest)
            # Up from there, then the IDs below it: hosts that start far
            # apart rarely hold the same ID, which vzmigrate keeps.
            for ctid in itertools.chain(range(first, privsep.VEID_MAX + 1),
                                        range(lowest, first)):
                if ctid not in used and ctid not in self._reserved:
                    self._reserved.add(ctid)
                    self._next = ctid + 1
                    return ctid
            raise exception.ContainerIdExhausted(start=lowest)

    def release(self, ctid):
        with self._lock:
            self._reserved.discard(ctid)
