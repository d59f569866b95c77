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

"""Simulated ``vzctl`` (legacy OpenVZ vzctl 4.x command-line contract).

Messages, output streams, exit codes and the order of checks follow
openvz-reference.md sections 1, 2 and 9 (vzctl 4.11 sources
where the reference is silent).  Kernel effects go through the back ends
of :mod:`vzsim.kernel`; ploop image work through :mod:`vzsim.kernel.ploop`.

One module per command family, all over :mod:`.common`:

==================  ===================================================
:mod:`.main`        the command table, the order of checks, locking
:mod:`.lifecycle`   create, start, stop, restart, status, mount, umount,
                    destroy
:mod:`.settings`    set
:mod:`.execute`     exec, exec2, exec3, enter, runscript
:mod:`.console`     console
:mod:`.checkpoint`  chkpnt/suspend, restore/resume
:mod:`.snapshots`   snapshot, snapshot-*, compact
:mod:`.dists`       distribution scripts' work on the guest's files
==================  ===================================================

Not simulated: ``convert``, ``quotaon``,
``quotaoff``, ``quotainit``, ``--netdev_add``/``--netdev_del``,
``--pci_add``/``--pci_del``, ``--meminfo``, ``--local_uid`` on set; they
answer like an unknown command or option.  The modelled halt always
completes at once, so STOP_TIMEOUT is stored but never waited for (use
latency injection for slow stops; the real kernel waits); vzquota and
``vztmpl-dl`` are not run.

Distribution scripts (hostname, DNS, passwords) are done here in Python on
the files under VE_ROOT: ``etc/hostname``, ``etc/resolv.conf``,
``etc/passwd`` and ``etc/shadow`` (a ``$sim$`` hash, not crypt(3)).  On
the real kernel the running container's hostname is set too, and the
guest's own ``chpasswd`` (or busybox ``passwd``) stores the password.
"""
