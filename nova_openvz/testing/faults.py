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

"""Fail (or hang) each host-tool call an operation makes, one at a time.

An operation's call positions are read from what it really did: run it
once, then :func:`positions` of the calls the simulated host logged
(``sim/calls.log``) since a :func:`mark`.  A :class:`Position` is the n-th
call of one tool and subcommand within the operation, which is exactly what
a ``sim/faults.json`` rule counts once the rules start afresh
(:func:`fail_at`, :func:`hang_at`).

Works on a :class:`~nova_openvz.testing.fixtures.SimulatedHostFixture`
(``host``); imports only the simulator and the standard library.
"""

import collections
import json
import os

from vzsim import hostfs

#: The message and exit code a failing call prints (tests look for both).
EXIT_CODE = 99
MESSAGE = 'injected failure of %s'
#: The file under ``sim/`` a hung call waits on (see :func:`hang_at`).
HOLD = 'hold'


class Position(collections.namedtuple('Position', 'tool command call')):
    """The ``call``-th invocation of ``tool command`` (command may be None).

    A ``vzlist`` has no subcommand: its positions count every vzlist call.
    """

    def __str__(self):
        return '%s%s #%d' % (self.tool, ' ' + self.command
                             if self.command else '', self.call)

    @property
    def name(self):
        """``tool command``, as the docs' table shows it."""
        return ' '.join(filter(None, (self.tool, self.command)))

    def rule(self, **extra):
        """The ``sim/faults.json`` rule firing at this position."""
        rule = dict(tool=self.tool, call=self.call, **extra)
        if self.command:
            rule['command'] = self.command
        return rule


def command_of(tool, argv):
    """The subcommand a fault rule of ``tool`` matches, as the tools do."""
    if tool == 'vzctl':
        from vzsim.cli.vzctl import main as vzctl
        return vzctl._split(argv)[1]
    if tool == 'ploop':
        return hostfs.first_word(argv)
    return None   # vzlist, vzmigrate: rules match without a command


def mark(host):
    """Where the call log ends now (give it to :func:`calls_since`)."""
    return len(host.calls())


def calls_since(host, start):
    """The calls logged after :func:`mark` returned ``start``."""
    return host.calls()[start:]


def positions(calls, skip=()):
    """The :class:`Position` of each call, in the order they were made.

    ``skip`` names ``tool command`` strings left out (e.g. a
    ``vzctl console`` that is logged only when it ends).
    """
    seen = collections.Counter()
    found = []
    for call in calls:
        command = command_of(call['tool'], call['argv'])
        seen[call['tool'], command] += 1
        position = Position(call['tool'], command,
                            seen[call['tool'], command])
        if position.name not in skip:
            found.append(position)
    return found


def record(host, action, skip=()):
    """Run ``action()``; the positions of the calls it made."""
    start = mark(host)
    action()
    return positions(calls_since(host, start), skip)


def _write_rules(host, rules):
    # Counting starts afresh, so a rule's ``call`` counts from now on.
    state = host.sim_path('faults.state')
    if os.path.exists(state):
        os.unlink(state)
    with open(host.sim_path('faults.json'), 'w') as f:
        json.dump(rules, f)


def clear(host):
    """No more injected faults."""
    _write_rules(host, [])


def message(position):
    return MESSAGE % (position,)


def fail_at(host, position, exit_code=EXIT_CODE):
    """Make the call at ``position`` print :func:`message` and exit.

    Replaces any other rule; returns the message.
    """
    text = message(position)
    _write_rules(host, [position.rule(exit_code=exit_code, stderr=text)])
    return text


def hang_at(host, position, exit_code=137, stderr='Killed'):
    """Make the call at ``position`` hang until :func:`release`.

    What a nova-compute killed just before that call leaves: everything
    before it done, nothing after.  Once released the call exits with
    ``exit_code`` (137: killed) without doing anything.
    """
    with open(host.sim_path(HOLD), 'w'):
        pass
    _write_rules(host, [position.rule(hold=HOLD, exit_code=exit_code,
                                      stderr=stderr)])


def held(host, position):
    """True once the call at ``position`` is hanging (its rule fired)."""
    try:
        with open(host.sim_path('faults.state')) as f:
            counts = json.load(f)
    except (OSError, ValueError):
        return False
    return any(count >= position.call for count in counts.values())


def release(host):
    """Let a call hung by :func:`hang_at` go (it then fails)."""
    try:
        os.unlink(host.sim_path(HOLD))
    except FileNotFoundError:
        pass
