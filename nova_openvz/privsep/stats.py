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

"""The kernel's per-container counters that only root may read.

An OpenVZ kernel makes ``/proc/vz/vestat`` readable by root alone (mode
0400), so the helper reads the one line of the asked container and
nothing else leaves it: the other containers' lines stay on root's side.
"""

import os

from nova_openvz import privsep

CONF = privsep.CONF

#: Most of vestat we read (a line is 252 bytes: some 16000 containers).
_MAX_READ = 4 * 1024 * 1024


def vestat_path():
    return os.path.join(CONF.openvz.host_root, 'proc', 'vz', 'vestat')


@privsep.vz_pctxt.entrypoint
def vestat_line(ctid):
    """The container's line of ``/proc/vz/vestat`` (None if not running).

    :raises FileNotFoundError: the kernel has no vestat.
    """
    privsep.check_ctid(str(int(ctid)))
    wanted = str(int(ctid))
    with open(vestat_path(), encoding='ascii', errors='replace') as f:
        for line in f.read(_MAX_READ).splitlines():
            if line.split(None, 1)[:1] == [wanted]:
                return line
    return None
