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

"""Fail each host-tool call of a move in turn, on two hosts.

Built on :mod:`nova_openvz.testing.faults` (one host): a move's calls are
read back from both hosts' ``sim/calls.log`` after a successful run
(:class:`Recorder`), each as a :class:`Step` (the host, the
:class:`~nova_openvz.testing.faults.Position` there), and each then fails in
its own run (:func:`fail`).  A call made by another tool (vzmigrate runs
vzctl on both hosts, as the real one does locally and through ssh) is
marked ``nested``: the driver sees vzmigrate's failure then, in its words.

``vzlist`` calls are left out: they only read, and background pollers make
their number vary from run to run; so are ``vzctl console`` calls, logged
only when the console ends.
"""

import collections

from nova_openvz.testing import faults

#: Tool calls a move fails in turn.
TOOLS = ('vzctl', 'ploop', 'vzmigrate')
SKIP = ('vzctl console',)

Step = collections.namedtuple('Step', 'host position argv nested')


def _span(call):
    return call['ended'] - call['seconds'], call['ended']


class Recorder(object):
    """The tool calls made on ``vzhosts`` (name -> fixture) from now on."""

    def __init__(self, vzhosts):
        self.vzhosts = vzhosts
        self.marks = {name: faults.mark(host)
                      for name, host in vzhosts.items()}

    def steps(self):
        """Each call as a :class:`Step`, host by host, oldest first."""
        calls = {name: faults.calls_since(host, self.marks[name])
                 for name, host in self.vzhosts.items()}
        outer = [_span(c) for host_calls in calls.values()
                 for c in host_calls if c['tool'] == 'vzmigrate']
        steps = []
        for name in sorted(calls):
            host_calls = calls[name]
            for call, position in zip(host_calls,
                                      faults.positions(host_calls)):
                if call['tool'] not in TOOLS or position.name in SKIP:
                    continue
                start, end = _span(call)
                nested = call['tool'] != 'vzmigrate' and any(
                    first <= start and end <= last for first, last in outer)
                steps.append(Step(name, position, tuple(call['argv']),
                                  nested))
        return steps


def fail(vzhosts, step):
    """Make ``step``'s call fail (and no other); the words it prints."""
    for vzhost in vzhosts.values():
        faults.clear(vzhost)
    return faults.fail_at(vzhosts[step.host], step.position)


def expected_words(step):
    """What the error the driver reports must say about ``step``'s failure.

    A direct call: its tool, the exit code and the injected words.  A call
    made inside vzmigrate: vzmigrate's own failure and exit code.
    """
    if step.nested:
        return ('vzmigrate', 'failed with exit code')
    return (step.position.tool, 'exit code %d' % faults.EXIT_CODE,
            faults.message(step.position))
