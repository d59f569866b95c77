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

"""vzctl's command table and entry point.

Global flags, CT ID or name, the order of checks (reference 9.2), locking,
then the command's family module.
"""

import os
import sys

from vzsim.cli.vzctl import checkpoint
from vzsim.cli.vzctl import common
from vzsim.cli.vzctl.common import E_LIST_SNAPSHOT
from vzsim.cli.vzctl.common import E_NOCONFIG
from vzsim.cli.vzctl.common import E_NOVECONFIG
from vzsim.cli.vzctl.common import E_SYNTAX
from vzsim.cli.vzctl.common import E_VALUE
from vzsim.cli.vzctl.common import Failure
from vzsim.cli.vzctl import console
from vzsim.cli.vzctl import execute
from vzsim.cli.vzctl import lifecycle
from vzsim.cli.vzctl import settings
from vzsim.cli.vzctl import snapshots
from vzsim import hostfs
from vzsim.kernel import backends


class Command:
    """A vzctl command: handler, options, locking, option-error code."""

    def __init__(self, handler, spec=None, lock=True, parse_error=E_SYNTAX,
                 positional=False, check=None, parser=None):
        self.handler = handler
        self.spec = spec or {}
        self.lock = lock
        self.parse_error = parse_error
        self.positional = positional
        self.check = check
        self.parser = parser

    def parse(self, argv):
        if self.positional:
            return [], list(argv)
        try:
            parser = self.parser or (
                lambda args: common.getopt(args, self.spec))
            options, positional = parser(argv)
        except Failure:
            raise Failure(self.parse_error)
        if positional:
            if self.parse_error == E_VALUE:
                sys.stdout.write('non-option ARGV-elements: %s \n'
                                 % ' '.join(positional))
            else:
                sys.stderr.write('Invalid extra arguments: %s\n'
                                 % ' '.join(positional))
            raise Failure(E_SYNTAX)
        if self.check:
            self.check(options)
        return options, []


_START = lifecycle.startstop_spec(True, False)
_STOP = lifecycle.startstop_spec(False, True)
_RESTART = lifecycle.startstop_spec(True, True)
COMMANDS = {
    'create': Command(lifecycle.cmd_create, lifecycle.CREATE_SPEC,
                      parse_error=E_VALUE),
    'start': Command(lifecycle.cmd_start, _START[0], check=_START[1]),
    'stop': Command(lifecycle.cmd_stop, _STOP[0], check=_STOP[1]),
    'restart': Command(lifecycle.cmd_restart, _RESTART[0], check=_RESTART[1]),
    'status': Command(lifecycle.cmd_status, lock=False),
    'mount': Command(lifecycle.cmd_mount),
    'umount': Command(lifecycle.cmd_umount),
    'destroy': Command(lifecycle.cmd_destroy),
    'delete': Command(lifecycle.cmd_destroy),
    'compact': Command(snapshots.cmd_compact),
    'set': Command(settings.cmd_set, settings.SET_SPEC, parse_error=E_VALUE),
    'exec': Command(execute.cmd_exec, lock=False, positional=True),
    'exec2': Command(execute.cmd_exec2, lock=False, positional=True),
    'exec3': Command(execute.cmd_exec3, lock=False, positional=True),
    'runscript': Command(execute.cmd_runscript, positional=True),
    'enter': Command(execute.cmd_enter, lock=False, positional=True),
    'console': Command(console.attach, lock=False, positional=True),
    'suspend': Command(checkpoint.cmd_chkpnt, checkpoint.CHKPNT_SPEC),
    'chkpnt': Command(checkpoint.cmd_chkpnt, checkpoint.CHKPNT_SPEC),
    'resume': Command(checkpoint.cmd_restore, checkpoint.RESTORE_SPEC),
    'restore': Command(checkpoint.cmd_restore, checkpoint.RESTORE_SPEC),
    'snapshot': Command(snapshots.cmd_snapshot, snapshots.SNAPSHOT_SPEC,
                        parse_error=E_VALUE),
    'snapshot-switch': Command(snapshots.cmd_snapshot_switch,
                               snapshots.SWITCH_SPEC, parse_error=E_VALUE),
    'snapshot-delete': Command(snapshots.cmd_snapshot_delete,
                               snapshots.ID_SPEC, parse_error=E_VALUE),
    'snapshot-list': Command(snapshots.cmd_snapshot_list,
                             parser=snapshots.snapshot_list_args,
                             parse_error=E_LIST_SNAPSHOT),
    'snapshot-mount': Command(snapshots.cmd_snapshot_mount,
                              snapshots.MOUNT_SPEC, parse_error=E_VALUE),
    'snapshot-umount': Command(snapshots.cmd_snapshot_umount,
                               snapshots.ID_SPEC, parse_error=E_VALUE),
}
#: Commands that work without an existing ``<CTID>.conf``.
NO_CONFIG_NEEDED = ('create', 'status', 'set')


def _split(argv):
    """``(global flags, command, target, rest)`` of a vzctl command line."""
    args = list(argv)
    flags = []
    while args and args[0] in common.GLOBAL_FLAGS:
        flags.append(args.pop(0))
    command = args.pop(0) if args else None
    target = args.pop(0) if args else None
    return flags, command, target, args


def run(host, argv):
    flags, command, target, rest = _split(argv)
    if '--version' in flags:
        sys.stdout.write('vzctl version %s\n' % common.VERSION)
        return 0
    if command is None:
        sys.stderr.write(common.USAGE.format(version=common.VERSION))
        return E_SYNTAX
    if command == '--help':
        sys.stdout.write(common.USAGE.format(version=common.VERSION))
        return 0
    spec = COMMANDS.get(command)
    if spec is None:
        sys.stderr.write('Bad command: %s\n' % command)
        return E_SYNTAX
    if target is None:
        sys.stderr.write('CT ID missing\n')
        return E_VALUE
    ctid = host.resolve(target)
    if ctid is None:
        sys.stderr.write('Bad CT ID %s\n' % target)
        return E_VALUE
    quiet = '--quiet' in flags or command == 'status'
    out = hostfs.Output(host, 'vzctl', ctid, quiet)
    try:
        return _run_command(host, command, spec, ctid, target, rest, out,
                            skiplock='--skiplock' in flags)
    except hostfs.ToolError as exc:
        if exc.message:
            out.error(exc.message)
        return exc.code


def _run_command(host, command, spec, ctid, target, rest, out, skiplock):
    if not os.path.isfile(host.vz_conf_path):
        raise Failure(E_NOCONFIG, 'Unable to open %s: No such file or '
                                  'directory' % host.vz_conf_path)
    options, positional = spec.parse(rest)
    if ctid == 0 and command != 'set':
        sys.stderr.write('Only set actions are allowed for CT0\n')
        return E_VALUE
    if host.has_config(ctid):
        name = host.read_config(ctid).get('NAME')
        if target != str(ctid) and name and name != target:
            raise Failure(E_VALUE, 'Unable to find container by name %s'
                          % target)
    elif command not in NO_CONFIG_NEEDED:
        raise Failure(E_NOVECONFIG, 'Container config file does not exist')
    call = common.Call(host, ctid, out, backends.for_host(host), options,
                       positional)
    if not spec.lock or skiplock:
        return spec.handler(call)
    with hostfs.CTLock(host, ctid, command, say=out.info):
        return spec.handler(call)


def main(root, argv):
    """Entry point of the generated ``DIR/usr/sbin/vzctl`` wrapper."""
    host = hostfs.Host(root)
    _, command, target, _ = _split(argv)
    ctid = host.resolve(target) if target else None
    return hostfs.run_tool(host, 'vzctl', argv, run, command=command,
                           ctid=target if ctid is None else ctid)
