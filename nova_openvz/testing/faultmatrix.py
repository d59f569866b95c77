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

"""The fault matrix: what each failing host-tool call of an operation does.

One definition for two readers: ``tests/functional/test_fault_matrix.py``
runs each operation once, checks that the calls it made are exactly the
positions listed here (so a driver change that adds or drops a call fails
until this table says so), then fails each in turn and checks the outcome
listed; ``tools/fault_matrix.py`` prints the same table as
``doc/source/admin/fault-matrix.rst``.
"""

import collections

#: Outcomes: what the user sees when the call fails.
ERROR = 'error'
KEPT = 'kept'
LOGGED = 'logged'
WARNED = 'warned'
STOPPED = 'stopped'
SHELVED = 'shelved'
STOPPED_SNAPSHOT_LEFT = 'stopped-snapshot-left'
QUERY = 'query'
SNAPSHOT_LEFT = 'snapshot-left'

OUTCOMES = {
    ERROR: 'server ERROR, the fault has the message and exit code; a '
           'delete removes everything',
    KEPT: 'server stays {before}, the host as before; the message and '
          'exit code are in the failed action\'s event, or (Nova keeps a '
          'server it finds running after a failed reboot) in its fault '
          'record',
    LOGGED: 'server stays {before}, the host as before; Nova answers with '
            'a message of its own ("Failed to attach/detach network '
            'adapter device"), so the tool\'s message and exit code are in '
            'nova-compute\'s log',
    QUERY: 'succeeds: only Nova\'s power-state query failed, which the '
           'driver answers "no state" until the next power sync (the '
           'message is in nova-compute\'s log)',
    WARNED: 'succeeds without that step, which the driver may skip: the '
            'tool\'s message is a warning in nova-compute\'s log',
    STOPPED: 'server stays {before} but its container is stopped: Nova '
             'powers it off first and does not start it again after a '
             'failure; the message and exit code are in the failed '
             'action\'s event; a hard reboot starts it (so does a start '
             'once Nova\'s power sync shows it SHUTOFF)',
    STOPPED_SNAPSHOT_LEFT: 'as "stopped", and the ploop snapshot stays as '
                           'in "snapshot-left"',
    SHELVED: 'server SHELVED, not offloaded: its container stays on the '
             'host, stopped; the message and exit code are in the failed '
             'action\'s event; unshelve starts it again',
    SNAPSHOT_LEFT: 'as "kept", but vzctl could not merge the ploop snapshot '
                   'back: it stays in the private area (``vzctl '
                   'snapshot-list`` shows it) until the server is deleted',
}

Operation = collections.namedtuple(
    'Operation', 'key title before after cleaned calls')
Operation.__doc__ = """One server operation of the matrix.

``key`` names it in the test; ``title`` is the API action; ``before`` and
``after`` are the server's status before and after it succeeds (None: no
server before); ``cleaned`` says what a failure leaves no trace of;
``calls`` lists ``(position, outcome)`` in the order the calls are made,
a position as :class:`nova_openvz.testing.faults.Position` prints it.
"""

#: ``vzctl console`` runs for a server's whole life (the console logger)
#: and is logged when it ends, not when it starts, so the call log cannot
#: place it within the operation that started it; a failing attach is
#: ignored by design (the server works without its log).
SKIPPED = ('vzctl console',)

_SPAWN_CLEANED = ('container, its private area and config, console logger, '
                  'config drive, staged download')

_VOLUME_CLEANED = ('the device access in the container\'s config and the '
                   'device node inside; the volume is disconnected')

_PORT_CLEANED = ('the NETIF entry in the container\'s config, the veth and '
                 'its switch port')

_RESCUE_CLEANED = ('the rescue container, its private area and config, the '
                   'server\'s root mounted for it')

_SNAPSHOT_CLEANED = ('ploop snapshot, its mount and mount directory, staged '
                     'tarball; the container is not left frozen')

OPERATIONS = (
    Operation('spawn', 'create server', None, 'ACTIVE', _SPAWN_CLEANED, (
        ('vzlist #1', ERROR),
        ('vzctl create #1', ERROR),
        ('vzctl set #1', ERROR),
        ('vzctl start #1', ERROR),
        ('vzlist #2', QUERY),
        ('vzlist #3', QUERY),
    )),
    Operation('reboot-soft', 'reboot (soft)', 'ACTIVE', 'ACTIVE', '', (
        ('vzlist #1', QUERY),
        ('vzlist #2', QUERY),
        ('vzlist #3', KEPT),
        ('vzctl restart #1', KEPT),
        ('vzlist #4', QUERY),
        ('vzlist #5', QUERY),
    )),
    Operation('reboot-hard', 'reboot (hard)', 'ACTIVE', 'ACTIVE', '', (
        ('vzlist #1', QUERY),
        ('vzlist #2', QUERY),
        ('vzlist #3', KEPT),
        ('vzctl restart #1', KEPT),
        ('vzlist #4', QUERY),
        ('vzlist #5', QUERY),
    )),
    Operation('stop', 'stop', 'ACTIVE', 'SHUTOFF', '', (
        ('vzlist #1', QUERY),
        ('vzlist #2', QUERY),
        ('vzlist #3', KEPT),
        ('vzctl stop #1', KEPT),
        ('vzlist #4', QUERY),
        ('vzlist #5', QUERY),
    )),
    Operation('start', 'start', 'SHUTOFF', 'ACTIVE', '', (
        ('vzlist #1', KEPT),
        ('vzctl start #1', KEPT),
        ('vzlist #2', QUERY),
        ('vzlist #3', QUERY),
    )),
    Operation('pause', 'pause', 'ACTIVE', 'PAUSED', '', (
        ('vzlist #1', KEPT),
        ('vzctl set #1', KEPT),
        ('vzctl chkpnt #1', KEPT),
        ('vzlist #2', QUERY),
        ('vzlist #3', QUERY),
    )),
    Operation('unpause', 'unpause', 'PAUSED', 'ACTIVE', '', (
        ('vzlist #1', KEPT),
        ('vzctl chkpnt #1', KEPT),
        ('vzctl set #1', KEPT),
        ('vzlist #2', QUERY),
        ('vzlist #3', QUERY),
    )),
    Operation('suspend', 'suspend', 'ACTIVE', 'SUSPENDED', '', (
        ('vzlist #1', ERROR),
        ('vzctl chkpnt #1', ERROR),
        ('vzlist #2', QUERY),
        ('vzlist #3', QUERY),
    )),
    Operation('resume', 'resume', 'SUSPENDED', 'ACTIVE', '', (
        ('vzlist #1', ERROR),
        ('vzctl restore #1', ERROR),
        ('vzlist #2', QUERY),
        ('vzlist #3', QUERY),
    )),
    Operation('snapshot', 'create image', 'ACTIVE', 'ACTIVE',
              _SNAPSHOT_CLEANED, (
                  ('vzlist #1', QUERY),
                  ('vzlist #2', QUERY),
                  ('vzlist #3', KEPT),
                  # The freeze word, written before the freeze.
                  ('vzctl set #1', KEPT),
                  ('vzctl chkpnt #1', KEPT),
                  ('vzctl snapshot #1', KEPT),
                  # The thaw: the container is restarted.
                  ('vzctl chkpnt #2', KEPT),
                  # The word's removal, after the thaw.
                  ('vzctl set #2', KEPT),
                  ('vzctl snapshot-mount #1', KEPT),
                  ('vzctl snapshot-umount #1', KEPT),
                  ('vzctl snapshot-delete #1', SNAPSHOT_LEFT),
              )),
    Operation('rebuild', 'rebuild', 'ACTIVE', 'ACTIVE', _SPAWN_CLEANED, (
        ('vzlist #1', QUERY),
        ('vzlist #2', QUERY),
        ('vzlist #3', ERROR),
        ('vzctl stop #1', ERROR),
        ('vzlist #4', ERROR),
        ('vzlist #5', ERROR),
        ('vzctl stop #2', ERROR),
        ('vzctl destroy #1', ERROR),
        ('vzlist #6', ERROR),
        ('vzctl create #1', ERROR),
        ('vzctl set #1', ERROR),
        ('vzctl start #1', ERROR),
        ('vzlist #7', QUERY),
        ('vzlist #8', QUERY),
    )),
    # On one host a resize is live; its confirm makes no host-tool call.
    Operation('resize', 'resize', 'ACTIVE', 'VERIFY_RESIZE', '', (
        ('vzlist #1', KEPT),
        ('vzctl set #1', KEPT),
        # The disk: the old limits are put back.
        ('vzctl set #2', KEPT),
        ('vzlist #2', ERROR),
    )),
    Operation('revert-resize', 'revert resize', 'VERIFY_RESIZE', 'ACTIVE',
              '', (
                  ('vzlist #1', ERROR),
                  ('vzctl set #1', ERROR),
                  # The disk shrinks back: skipped when refused.
                  ('vzctl set #2', WARNED),
                  ('vzlist #2', ERROR),
              )),
    # Nova powers off, snapshots (as create image), then offloads: stops
    # and destroys (shelved_offload_time 0, its default).
    Operation('shelve', 'shelve', 'ACTIVE', 'SHELVED_OFFLOADED',
              _SNAPSHOT_CLEANED, (
                  ('vzlist #1', KEPT),
                  ('vzctl stop #1', KEPT),
                  ('vzlist #2', STOPPED),
                  ('vzctl snapshot #1', STOPPED),
                  ('vzctl snapshot-mount #1', STOPPED),
                  ('vzctl snapshot-umount #1', STOPPED),
                  ('vzctl snapshot-delete #1', STOPPED_SNAPSHOT_LEFT),
                  ('vzlist #3', QUERY),
                  ('vzlist #4', QUERY),
                  ('vzlist #5', SHELVED),
                  ('vzctl stop #2', SHELVED),
                  ('vzlist #6', QUERY),
                  ('vzlist #7', QUERY),
                  ('vzlist #8', SHELVED),
                  ('vzlist #9', SHELVED),
                  ('vzctl stop #3', SHELVED),
                  ('vzctl destroy #1', SHELVED),
              )),
    Operation('unshelve', 'unshelve', 'SHELVED_OFFLOADED', 'ACTIVE',
              _SPAWN_CLEANED, (
                  ('vzlist #1', KEPT),
                  ('vzctl create #1', KEPT),
                  ('vzctl set #1', KEPT),
                  ('vzctl start #1', KEPT),
                  ('vzlist #2', QUERY),
                  ('vzlist #3', QUERY),
              )),
    # On the real backend: the guest's own shell makes the device node,
    # configures the interface, sets the rescue password.
    Operation('rescue', 'rescue', 'ACTIVE', 'RESCUE', _RESCUE_CLEANED, (
        ('vzlist #1', ERROR),
        ('vzctl stop #1', ERROR),
        ('vzlist #2', ERROR),
        ('vzlist #3', ERROR),
        ('vzlist #4', ERROR),
        ('vzctl create #1', ERROR),
        ('vzctl set #1', ERROR),
        ('vzctl mount #1', ERROR),
        ('vzctl start #1', ERROR),
        ('vzctl exec2 #1', ERROR),
        ('vzlist #5', QUERY),
        ('vzlist #6', QUERY),
    )),
    Operation('unrescue', 'unrescue', 'RESCUE', 'ACTIVE', _RESCUE_CLEANED, (
        ('vzlist #1', ERROR),
        ('vzlist #2', ERROR),
        ('vzctl stop #1', ERROR),
        ('vzctl destroy #1', ERROR),
        ('vzctl umount #1', ERROR),
        ('vzctl start #1', ERROR),
        ('vzlist #3', QUERY),
        ('vzlist #4', QUERY),
    )),
    Operation('attach-volume', 'attach volume', 'ACTIVE', 'ACTIVE',
              _VOLUME_CLEANED, (
                  ('vzlist #1', KEPT),
                  ('vzctl set #1', KEPT),
                  ('vzctl exec2 #1', KEPT),
              )),
    Operation('detach-volume', 'detach volume', 'ACTIVE', 'ACTIVE', '', (
        ('vzlist #1', KEPT),
        ('vzlist #2', KEPT),
        ('vzctl exec2 #1', KEPT),
        ('vzctl exec2 #2', KEPT),
        ('vzctl set #1', KEPT),
    )),
    Operation('attach-interface', 'attach interface', 'ACTIVE', 'ACTIVE',
              _PORT_CLEANED, (
                  ('vzlist #1', LOGGED),
                  ('vzctl set #1', LOGGED),
                  ('vzctl exec2 #1', LOGGED),
              )),
    Operation('detach-interface', 'detach interface', 'ACTIVE', 'ACTIVE',
              '', (
                  ('vzlist #1', LOGGED),
                  ('vzctl exec2 #1', LOGGED),
                  ('vzctl set #1', LOGGED),
              )),
)

BY_KEY = {op.key: op for op in OPERATIONS}


def outcome_text(operation, outcome):
    return OUTCOMES[outcome].format(before=operation.before)


_HEAD = """\
.. This file is generated by tools/fault_matrix.py from
   nova_openvz/testing/faultmatrix.py; do not edit it by hand.

============
Fault matrix
============

What a user sees, and what the host keeps, when one host-tool call of a
server operation fails.  The functional test
``tests/functional/test_fault_matrix.py`` runs each operation once through
Nova's API on a simulated host, reads the calls it made from the host's
call log, and fails each one in turn (exit code 99 and a message of its
own); it fails when this table no longer lists exactly those calls or
outcomes.  After every case it checks that the server is where Nova says
and that the host holds nothing the failed operation made: no container,
config, private area, ploop snapshot, mount, loop device, cgroup, dump,
lock, staged file or console logger.  A server in ERROR is then deleted,
which must leave nothing of it at all, not even a process.

``vzlist #2`` is the second vzlist call of the operation; each query of
the driver or of Nova's compute manager is one call (no listing cache).
``vzctl console`` is left out: the console logger runs for the server's
whole life, and a failure to attach it is logged and ignored by design.

A second test, ``tests/functional/test_crash_at_every_step.py``, kills
nova-compute after each of these steps of a boot, a delete, a stop, a
start, a hard reboot and a create image, and starts it again: the
restarted compute puts the unfinished boot in ERROR, finishes the delete,
the stop, the start and the reboot, and gives up the image (and removes
its half-packed tarball); the server is where Nova says, and once it is
gone the host holds nothing of it.

A failed thaw of create image (``vzctl chkpnt #2``) is "kept" because the
driver kills and starts the container again rather than leave it frozen:
the guest restarts, and runs as Nova shows it.

Volumes and interfaces are attached and detached on the simulated host's
real backend, whose guest has a shell: there the test also checks that the
container's config is as before (no device access or NETIF entry left or
lost), the port's veth and switch port are as before, and so is what the
guest sees (device nodes, interfaces and their addresses).  A detach whose
last host step fails gives the guest back its node or interface, since
Nova still shows the volume or port attached.  An interface attach or
detach that fails is answered by Nova with a message of its own; the
driver's reaches nova-compute's log.

Rescue and unrescue run there too (the rescue container sets root's
password with its own shell).  Nova puts a server whose rescue or
unrescue failed in ERROR whichever step failed; the delete that follows
must leave nothing of the server or of its rescue container.

A resize on one host is live (the new limits and disk on the running
container) and its confirm makes no host-tool call, so only the resize and
its revert are listed.  A revert whose disk cannot shrink back keeps the
larger disk rather than leave the server in ERROR.

Moves between hosts (cold migration and resize, their confirm and revert,
live migration, evacuation) have a matrix of their own across two hosts
(``tests/functional/test_migration_faults.py``).

A shelve is Nova's power off, create image, then offload (stop and
destroy).  Nova does not start a server again whose shelve failed after the
power off, so its container stays stopped while Nova shows it ACTIVE; a
failed offload leaves it SHELVED with its stopped container, which an
unshelve starts.  A failed unshelve leaves the server SHELVED_OFFLOADED
and the host as before, but for the server's snapshot in the template
cache, which the driver's image cache manager removes once unused.

"""


def render():
    """The reStructuredText of ``doc/source/admin/fault-matrix.rst``."""
    lines = [_HEAD]
    for op in OPERATIONS:
        title = op.title + (' (from %s)' % op.before if op.before else '')
        lines += [title, '-' * len(title), '']
        if op.cleaned:
            lines += ['On failure nothing stays of: %s.' % op.cleaned, '']
        lines += ['.. list-table::', '   :header-rows: 1',
                  '   :widths: 25 75', '',
                  '   * - Failing call', '     - What the user sees']
        for position, outcome in op.calls:
            lines += ['   * - ``%s``' % position,
                      '     - %s' % outcome_text(op, outcome)]
        lines.append('')
    return '\n'.join(lines)
