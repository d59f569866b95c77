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

"""Clean up what a simulated host's real kernel back end still holds.

``python -m nova_openvz.testing.cleanhost ROOT`` kills, unmounts and detaches
what containers of the host ROOT left (processes, mounts, loop devices,
cgroups; for a modelled host, the mounts its action scripts made) and prints
``[found, left]`` as JSON; with ``--report`` before ROOT it cleans nothing
and prints what they hold now, as ``{'mounts': [...], ...}``.
:class:`~nova_openvz.testing.fixtures.SimulatedHostFixture` runs it in its
own process at cleanup, as Nova's test base forbids looking at ``/sys``
and ``/proc`` in a test process.

:func:`vzsim.kernel.real.leftovers` knows supervisors by name
(``vzsim:CTID``), the same for every host: tests running in parallel all have
a CT 101, so only processes in this host's cgroups or run from its tree (a
supervisor is a forked ROOT/usr/sbin/vzctl) count here.
"""

import json
import os
import subprocess
import sys
import time

from vzsim import hostfs
from vzsim.kernel import backends


def _ours(host, pid):
    """True when process ``pid`` belongs to ``host``."""
    from vzsim.kernel import real
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            if (host.root + '/').encode() in f.read():
                return True
        with open('/proc/%d/cgroup' % pid) as f:
            return '/' + real.group_prefix(host) in f.read()
    except OSError:
        return False


def _ctids(host):
    """Containers of ``host``, destroyed ones included (from the call log)."""
    ctids = set(host.ctids())
    try:
        with open(os.path.join(host.sim_dir, 'calls.log')) as f:
            for line in f:
                argv = json.loads(line)['argv']
                ctids.update(int(a) for a in argv[1:2] if a.isdigit())
    except (OSError, ValueError, KeyError):
        pass
    return sorted(ctids)


def clean_real(host):
    """``(found, left)`` of the real back end for ``host``."""
    from vzsim.kernel import real
    everyone = real.leftovers

    def leftovers(host, ctids=()):
        left = everyone(host, ctids)
        left['processes'] = [p for p in left['processes']
                             if _ours(host, p)]
        return left

    # real.clean() asks real.leftovers() what to kill: only this host's.
    real.leftovers = leftovers
    ctids = _ctids(host)
    found = real.clean(host, ctids)
    deadline = time.monotonic() + 5
    while True:   # killed processes take a moment to go
        left = real.leftovers(host, ctids)
        if not any(left.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
        if left['processes'] or left['cgroups']:
            real.clean(host, ctids)
    return found, left


def _mounts_under(under):
    with open('/proc/self/mountinfo') as f:
        return [line.split()[4] for line in f
                if line.split()[4].startswith(under)]


def clean_modelled(host):
    """``(found, left)`` for a modelled host: its action scripts' mounts.

    Host action scripts (``<CTID>.mount``: the ephemeral disk) make real
    mounts whatever the backend; a modelled container is never stopped at
    teardown, so its ``.umount`` does not run.
    """
    under = host.root + '/'
    points = _mounts_under(under)
    for point in reversed(points):
        subprocess.run(['umount', '-l', point], capture_output=True)
    return {'mounts': points}, {'mounts': _mounts_under(under)}


def report(host, name):
    """What the host's containers hold now, cleaning nothing."""
    under = host.root + '/'
    if name == 'modelled':
        return {'mounts': _mounts_under(under)}
    from vzsim.kernel import real
    held = real.leftovers(host, _ctids(host))
    held['processes'] = [p for p in held['processes'] if _ours(host, p)]
    return held


def main(argv):
    reporting = argv[:1] == ['--report']
    host = hostfs.Host(argv[-1])
    try:
        name = backends.configured(host)
    except hostfs.ToolError:   # a test wrote a bogus name: clean anyway
        name = 'unknown'
    if reporting:
        print(json.dumps(report(host, name)))
        return 0
    found, left = (clean_modelled(host) if name == 'modelled' else
                   clean_real(host))
    print(json.dumps([found, left]))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
