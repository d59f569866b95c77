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

"""``vzctl chkpnt``/``suspend`` and ``restore``/``resume`` (reference 1.9)."""

import os

from vzsim.cli.vzctl.common import E_CHKPNT
from vzsim.cli.vzctl.common import E_NOT_RUNNING
from vzsim.cli.vzctl.common import E_RESTORE
from vzsim.cli.vzctl.common import E_RUNNING
from vzsim.cli.vzctl.common import E_SYNTAX
from vzsim.cli.vzctl.common import Failure
from vzsim.cli.vzctl import lifecycle


CHKPNT_SPEC = {'dump': False, 'suspend': False, 'resume': False,
               'kill': False, 'skip_arpdetect': False, 'flags': True,
               'context': True, 'dumpfile': True}
RESTORE_SPEC = {'undump': False, 'kill': False, 'resume': False,
                'skip_arpdetect': False, 'flags': True, 'context': True,
                'dumpfile': True}


def _cpt_subcommand(call, names):
    chosen = [name for name, _ in call.options if name in names]
    if len(chosen) > 1:
        raise Failure(E_SYNTAX, 'Invalid syntax: only one sub command may '
                                'be used')
    return chosen[0] if chosen else None


def cmd_chkpnt(call):
    sub = _cpt_subcommand(call, ('dump', 'suspend', 'resume', 'kill'))
    kernel, ctid, out = call.kernel, call.ctid, call.out
    if not call.running():
        raise Failure(E_NOT_RUNNING, 'Unable to setup checkpointing: '
                                     'container is not running')
    frozen = kernel.is_frozen(ctid)
    if sub in ('resume', 'kill', 'dump') and not frozen:
        raise Failure(E_CHKPNT, 'Container is not suspended; use '
                                'chkpnt --suspend first')
    if sub == 'resume':
        out.info('Resuming...')
        kernel.thaw(ctid)
        return 0
    if sub == 'kill':
        out.info('Killing...')
        kernel.stop(ctid, fast=True)
        return 0
    dumpfile = call.opt('dumpfile') or call.host.dump_file(ctid)
    out.info('Setting up checkpoint...')
    if sub in (None, 'suspend'):
        out.info('\tsuspend...')
        kernel.freeze(ctid)
    if sub == 'dump':
        # --dump leaves the container frozen, as a separate --kill follows
        out.info('\tdump...')
        kernel.dump(ctid, dumpfile)
    elif sub is None:
        out.info('\tdump...')
        kernel.checkpoint(ctid, dumpfile)
    if sub is None:
        out.info('\tkill...')
    out.info('Checkpointing completed successfully')
    if sub is None:
        call.umount()
    return 0


def cmd_restore(call):
    sub = _cpt_subcommand(call, ('undump', 'kill', 'resume'))
    kernel, ctid, out = call.kernel, call.ctid, call.out
    dumpfile = call.opt('dumpfile') or call.host.dump_file(ctid)
    if sub in ('resume', 'kill'):
        if not kernel.is_frozen(ctid):
            raise Failure(E_RESTORE, 'Container is not in the undumped '
                                     'state')
        if sub == 'resume':
            out.info('Resuming...')
            kernel.thaw(ctid)
        else:
            out.info('Killing...')
            kernel.stop(ctid, fast=True)
        return 0
    if call.running():
        raise Failure(E_RUNNING, 'Container is already running')
    call.require_private()
    if sub == 'undump':
        if not os.path.exists(dumpfile):
            raise Failure(E_RESTORE, 'Unable to open %s: No such file or '
                                     'directory' % dumpfile)
        out.info('Restoring container ...')
        if not call.mounted():
            call.mount()
        out.info('\tundump...')
        kernel.restore(ctid, dumpfile)
        kernel.freeze(ctid)
        return 0
    return lifecycle.do_restore(call, dumpfile)
