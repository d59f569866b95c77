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

"""Which kernel back end a simulated host runs.

``modelled`` (:mod:`vzsim.kernel.modelled`)
    state on disk; runs anywhere.
``real`` (:mod:`vzsim.kernel.real`)
    containers are process trees in their own namespaces and cgroups on this
    machine.  Needs root and the kernel features
    :func:`vzsim.kernel.real.probe` checks.
``auto`` (the default)
    ``real`` when the probe passes, else ``modelled``: a host runs real
    containers wherever the machine allows it.

The backend is chosen in one place, :func:`choose`: the name in
``DIR/sim/kernel`` (one word), :data:`DEFAULT_BACKEND` when that file is
absent.  The real back end is imported only when it is asked about.
"""

import os

from vzsim import hostfs
from vzsim.kernel import modelled


#: Backend names; ``auto`` is real where the machine allows it.
BACKENDS = ('modelled', 'real', 'auto')
DEFAULT_BACKEND = 'auto'


def configured(host):
    """The backend name ``DIR/sim/kernel`` asks for (or the default)."""
    try:
        with open(os.path.join(host.sim_dir, 'kernel')) as f:
            name = f.read().strip() or DEFAULT_BACKEND
    except FileNotFoundError:
        name = DEFAULT_BACKEND
    if name not in BACKENDS:
        raise hostfs.ToolError(5, 'Unknown simulated kernel backend %r in %s'
                               % (name, os.path.join(host.sim_dir, 'kernel')))
    return name


def choose(host):
    """``(backend, why)``: the backend ``host`` runs and the reason."""
    name = configured(host)
    if name == 'modelled':
        return 'modelled', 'configured'
    from vzsim.kernel import real
    ok, why = real.probe()
    if ok:
        return 'real', why
    if name == 'real':
        raise hostfs.ToolError(5, 'The real simulated kernel cannot run '
                                  'here: %s' % why)
    return 'modelled', 'auto: %s' % why


def for_host(host):
    """The kernel backend of ``host`` (see :func:`choose`)."""
    name, _ = choose(host)
    if name == 'real':
        from vzsim.kernel import real
        return real.RealKernel(host)
    return modelled.ModelledKernel(host)


def describe(host):
    """``[(label, text)]``: which backend ``host`` runs and why.

    For ``nova-openvz simulate info``.
    """
    from vzsim.kernel import real
    name = configured(host)
    source = ('DIR/sim/kernel' if os.path.exists(
        os.path.join(host.sim_dir, 'kernel')) else 'the default')
    possible, why = real.probe()
    if name == 'modelled':
        running = 'modelled'
        reason = 'modelled is asked for (%s)' % source
    elif possible:
        running = 'real'
        reason = '%s is asked for (%s) and this machine allows it: %s' % (
            name, source, why)
    else:
        running = 'modelled' if name == 'auto' else 'none (tools fail)'
        reason = '%s is asked for (%s) but this machine does not allow ' \
                 'real containers: %s' % (name, source, why)
    lines = [('kernel backend', running), ('configured', name),
             ('why', reason),
             ('real backend here', 'possible: %s' % why if possible else
              'impossible: %s' % why)]
    if running == 'real':
        lines += real.describe()
    else:
        lines.append(('checkpoint', 'dump files hold the modelled state '
                                    '(JSON); nothing runs'))
    lines.append(('migration', MIGRATION_NOTE))
    return lines


#: What the simulated vzmigrate does unlike the real one, for ``simulate
#: info`` (doc/source/admin/migration.rst says the same).
MIGRATION_NOTE = (
    'vzmigrate reaches peers through DIR/sim/hosts.json (a simulated host '
    'tree per peer name or address), not ssh; --online freezes the '
    'container, copies it and restarts it on the peer from its disk '
    '(files survive, processes do not), as no memory image can be taken '
    'here; no CPU, CPT version or vzquota checks')
