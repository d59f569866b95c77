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

"""The ``modelled`` kernel back end: container state on disk, nothing runs.

Keeps the container state as JSON in ``DIR/var/lib/vzsim`` (see
:data:`vzsim.hostfs.RUNTIME_DEFAULTS`) and regenerates ``DIR/proc`` from it.
No process runs for a container.  "Mounting" replaces the empty VE_ROOT
directory with a symlink to the directory holding the container's files,
so files written under VE_ROOT while mounted land in the private area,
as with a real bind or ploop mount.  ``exec`` runs the joined command
with ``/bin/sh -c`` (real vzctl uses bash; a minimal guest may only have
sh) chrooted into VE_ROOT; that needs root and a ``bin/sh`` in the
guest, and fails with a clear message otherwise.
"""

import json
import os
import sys
import time

from vzsim import hostfs
from vzsim.kernel import base
from vzsim.kernel.base import KernelError


class ModelledKernel(base.Kernel):
    """The state-on-disk backend; see the module docstring."""

    def _state(self, ctid):
        return self.host.runtime(ctid)

    def _save(self, ctid, state, refresh=True):
        self.host.save_runtime(ctid, state)
        if refresh:
            self.host.refresh_proc()

    def is_running(self, ctid):
        return self._state(ctid)['running']

    def is_frozen(self, ctid):
        state = self._state(ctid)
        return state['running'] and state['frozen']

    def is_mounted(self, ctid):
        return self._state(ctid)['mounted']

    def mount(self, ctid, source, target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(target):
            os.unlink(target)
        elif os.path.isdir(target):
            if os.listdir(target):
                raise KernelError(50, 'Unable to mount %s: mount point is '
                                  'not empty' % target)
            os.rmdir(target)
        os.symlink(source, target)
        state = self._state(ctid)
        state['mounted'] = True
        self._save(ctid, state, refresh=False)

    def umount(self, ctid, target):
        # What a mount script put under VE_ROOT went into the tree the
        # link points at; it must not outlive the "mount" there either.
        base.unmount_below(os.path.realpath(target))
        if os.path.islink(target):
            os.unlink(target)
        os.makedirs(target, 0o755, exist_ok=True)
        state = self._state(ctid)
        state['mounted'] = False
        self._save(ctid, state, refresh=False)

    @staticmethod
    def _initial_processes(root):
        """init plus one process per service script of the guest."""
        try:
            return 1 + len(os.listdir(os.path.join(root, 'etc', 'init.d')))
        except OSError:
            return 1

    def start(self, ctid, config):
        state = self._state(ctid)
        root = self.host.ve_root(ctid, config) or ''
        state.update(running=True, frozen=False, start_time=time.time(),
                     numproc=self._initial_processes(root), ips=[],
                     veth=[])
        base.record_resources(state, config)
        self._save(ctid, state)

    def stop(self, ctid, fast=False):
        state = self._state(ctid)
        state.update(running=False, frozen=False, start_time=None,
                     numproc=0, ips=[], veth=[], ubc={}, cpu={})
        self._save(ctid, state)

    def freeze(self, ctid):
        state = self._state(ctid)
        state['frozen'] = True
        self._save(ctid, state, refresh=False)

    def thaw(self, ctid):
        state = self._state(ctid)
        state['frozen'] = False
        self._save(ctid, state, refresh=False)

    def dump(self, ctid, dumpfile):
        state = self._state(ctid)
        os.makedirs(os.path.dirname(dumpfile), exist_ok=True)
        hostfs.write_atomic(dumpfile, json.dumps(
            {'vzsim-dump': 1, 'ctid': ctid, 'state': state}))

    def restore(self, ctid, dumpfile):
        saved = base.read_dump(ctid, dumpfile)
        self._check_ips_free(ctid, saved.get('ips', []))
        state = self._state(ctid)
        state.update(saved, running=True, frozen=False,
                     mounted=state['mounted'])
        self._save(ctid, state)

    def apply_resources(self, ctid, config):
        state = self._state(ctid)
        base.record_resources(state, config)
        self._save(ctid, state)

    def _check_ips_free(self, ctid, ips):
        for other, state in self.host.running_states():
            if other == ctid:
                continue
            taken = set(state['ips']) & set(ips)
            if taken:
                raise KernelError(78, 'Unable to add IP %s: Address already '
                                  'in use' % sorted(taken)[0])

    def add_ips(self, ctid, ips):
        self._check_ips_free(ctid, ips)
        state = self._state(ctid)
        state['ips'] += [ip for ip in ips if ip not in state['ips']]
        self._save(ctid, state)

    def del_ips(self, ctid, ips=None):
        state = self._state(ctid)
        state['ips'] = ([] if ips is None else
                        [ip for ip in state['ips'] if ip not in ips])
        self._save(ctid, state)

    def ips(self, ctid):
        return list(self._state(ctid)['ips'])

    def add_veth(self, ctid, devices):
        state = self._state(ctid)
        state['veth'] += [d['host_ifname'] for d in devices
                          if d['host_ifname'] not in state['veth']]
        self._save(ctid, state, refresh=False)

    def del_veth(self, ctid, host_ifnames):
        state = self._state(ctid)
        state['veth'] = [n for n in state['veth'] if n not in host_ifnames]
        self._save(ctid, state, refresh=False)

    def exec(self, ctid, root, command, stdin=None):
        if os.geteuid() != 0:
            raise KernelError(3, 'Unable to run a command in CT %s: the '
                              'modelled kernel needs root to chroot' % ctid)
        if not os.path.lexists(os.path.join(root, 'bin', 'sh')):
            raise KernelError(3, 'Unable to run a command in CT %s: %s/bin/sh '
                              'does not exist' % (ctid, root))

        def enter():
            os.chroot(root)
            os.chdir('/')

        import subprocess
        argv = ['/bin/sh'] if command is None else ['/bin/sh', '-c', command]
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            proc = subprocess.run(argv, env=base.EXEC_ENV, preexec_fn=enter,
                                  input=stdin, check=False)
        except OSError as exc:
            raise KernelError(3, 'Unable to run a command in CT %s: %s'
                              % (ctid, exc))
        code = proc.returncode
        return 128 - code if code < 0 else code
