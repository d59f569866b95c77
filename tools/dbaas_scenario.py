#!/usr/bin/env python3
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

"""Run the DBaaS scenario and say where its time went.

Run from the source tree, as root, with the functional environment's
Python (``tox -e functional --notest`` makes it)::

    .tox/functional/bin/python tools/dbaas_scenario.py \\
        [--template-cache DIR] [--mirror URL]

It runs ``tests/functional/test_dbaas_scenario.py`` (a PostgreSQL server
through Nova's API on the simulated host's real kernel backend: boot with a
data volume configured from the config drive, pgbench under a live resize,
a volume extend, a live snapshot and a reboot, every committed row checked
after each, delete, the volume read back by a new server) and prints the
duration of each step.  The first run builds the PostgreSQL template
(debootstrap, a few minutes) into the template cache; later runs reuse it.
Exit status: the test's.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from nova_openvz.testing import dbaas  # noqa: E402
from tests.functional import test_dbaas_scenario as scenario  # noqa: E402

TEST = 'tests.functional.test_dbaas_scenario'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--template-cache', default=dbaas.cache_dir(),
                        help='where the PostgreSQL template is kept '
                             '(default %(default)s)')
    parser.add_argument('--mirror', help='the Debian mirror for the build')
    args = parser.parse_args(argv)
    with tempfile.NamedTemporaryFile(suffix='.json') as report:
        env = dict(os.environ, NOVA_OPENVZ_SLOW_TESTS='1',
                   **{dbaas.CACHE_ENV: args.template_cache,
                      scenario.REPORT_ENV: report.name})
        if args.mirror:
            env[dbaas.MIRROR_ENV] = args.mirror
        code = subprocess.run([sys.executable, '-m', 'testtools.run', TEST],
                              cwd=REPO, env=env).returncode
        try:
            with open(report.name) as f:
                steps = json.load(f)
        except ValueError:
            steps = None
    if steps:
        print('\n%-32s %9s' % ('step', 'seconds'))
        for name, seconds in steps['steps']:
            print('%-32s %9.1f' % (name, seconds))
        print('%-32s %9.1f' % ('whole scenario', steps['total']))
    return code


if __name__ == '__main__':
    sys.exit(main())
