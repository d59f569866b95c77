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

"""Lifecycle events: what happened to a container outside Nova, told to Nova.

A guest that halts itself, a container killed or started by an operator
with vzctl: Nova hears of it through ``emit_event`` lifecycle events within
``[openvz] lifecycle_event_interval`` seconds, instead of at its next
power-state sync (``sync_power_state_interval``, ten minutes by default).

One :class:`LifecyclePoller` thread per nova-compute compares, at every
poll, the power state of every Nova container in ONE listing of the whole
host (:meth:`nova_openvz.inventory.ContainerListing.all`, which a poll
shares with Nova's periodic tasks) with what it saw before.  It is a plain
``threading.Thread``: a native thread when nova-compute runs with native
threads (Nova's default), a green thread when eventlet patched
``threading``; either way it only waits, runs vzlist and calls Nova's
event callback.

No event is sent for a change the driver itself is making:
:class:`InFlight` counts the operations under way on each instance (every
vzctl call of a container handle that changes it, and the driver's own
power operations around several calls).  A container changed since the
poller last looked is recorded silently, never reported.
"""

import collections
import contextlib
import threading

from nova.compute import power_state
from nova.virt import event as virtevent
from oslo_log import log as logging

from nova_openvz import power

LOG = logging.getLogger(__name__)

_RUNNING_AGAIN = (power_state.PAUSED, power_state.SUSPENDED)


class InFlight(object):
    """The instances the driver is changing, and a change count of each."""

    def __init__(self):
        self._lock = threading.Lock()
        self._busy = collections.Counter()
        self._changes = collections.Counter()

    @contextlib.contextmanager
    def changing(self, instance_uuid):
        """The driver changes this instance during the block."""
        with self._lock:
            self._busy[instance_uuid] += 1
            self._changes[instance_uuid] += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy[instance_uuid] -= 1
                if not self._busy[instance_uuid]:
                    del self._busy[instance_uuid]
                self._changes[instance_uuid] += 1

    def state(self):
        """``(busy uuids, {uuid: change count})``, taken together."""
        with self._lock:
            return set(self._busy), dict(self._changes)

    def forget(self, keep):
        """Drop the counts of idle instances not in ``keep``."""
        with self._lock:
            for instance_uuid in list(self._changes):
                if instance_uuid not in keep and \
                        instance_uuid not in self._busy:
                    del self._changes[instance_uuid]


def transition(before, after):
    """The LifecycleEvent transition from one power state to another.

    None when there is nothing to tell (same state, or no state known).
    """
    if before == after or power_state.NOSTATE in (before, after):
        return None
    if after == power_state.RUNNING:
        return (virtevent.EVENT_LIFECYCLE_RESUMED if before in _RUNNING_AGAIN
                else virtevent.EVENT_LIFECYCLE_STARTED)
    return {power_state.SHUTDOWN: virtevent.EVENT_LIFECYCLE_STOPPED,
            power_state.CRASHED: virtevent.EVENT_LIFECYCLE_STOPPED,
            power_state.PAUSED: virtevent.EVENT_LIFECYCLE_PAUSED,
            power_state.SUSPENDED: virtevent.EVENT_LIFECYCLE_SUSPENDED,
            }.get(after)


class LifecyclePoller(object):
    """Turns what one host listing shows into Nova's lifecycle events.

    :param listing: the driver's
        :class:`~nova_openvz.inventory.ContainerListing`.
    :param inflight: the driver's :class:`InFlight`.
    :param emit: called with each
        :class:`nova.virt.event.LifecycleEvent` (the driver's
        ``emit_event``).
    :param interval: seconds between polls.
    """

    def __init__(self, listing, inflight, emit, interval):
        self._listing = listing
        self._inflight = inflight
        self._emit = emit
        self._interval = interval
        self._known = {}    # uuid: (power state, change count then)
        #: Polls done so far.
        self.polls = 0
        self._polling = threading.Lock()
        self._stopping = threading.Event()
        self._thread = None

    def start(self):
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run,
                                        name='openvz-lifecycle-events',
                                        daemon=True)
        self._thread.start()
        LOG.info('Polling containers for lifecycle events every %s s',
                 self._interval)

    def stop(self, timeout=None):
        """Stop polling; wait for a poll under way (at most ``timeout``)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def seen(self, instance_uuid):
        """The power state last seen for an instance, or None.

        A change is told only against a state seen before: a container
        stopped before its first look is left to Nova's power-state sync.
        """
        return self._known.get(instance_uuid, (None, None))[0]

    def _run(self):
        while not self._stopping.wait(self._interval):
            try:
                self.poll()
            except Exception:
                # The next poll tries again; the host may be busy.
                LOG.exception('Polling containers for lifecycle events '
                              'failed')

    def poll(self):
        """One look at every container; returns the events sent."""
        with self._polling:
            events = self._compare()
            self.polls += 1
        for event in events:
            LOG.info('Container of instance %s: %s outside Nova',
                     event.get_instance_uuid(), event.get_name())
            self._emit(event)
        return events

    def _compare(self):
        busy, changes = self._inflight.state()
        records = self._listing.all(max_age=self._interval)
        busy_after, changes_after = self._inflight.state()
        events = []
        for instance_uuid, record in records.items():
            count = changes_after.get(instance_uuid, 0)
            if (instance_uuid in busy or instance_uuid in busy_after or
                    count != changes.get(instance_uuid, 0)):
                # The driver is changing it: look again next time.
                self._known.pop(instance_uuid, None)
                continue
            state = power.of(record)
            before, seen_at = self._known.get(instance_uuid, (None, None))
            self._known[instance_uuid] = (state, count)
            if before is None or seen_at != count:
                continue   # first look, or changed by the driver since
            kind = transition(before, state)
            if kind is not None:
                events.append(virtevent.LifecycleEvent(instance_uuid, kind))
        for gone in set(self._known) - set(records):
            del self._known[gone]
        self._inflight.forget(set(records))
        return events
