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

"""``vzctl exec``, ``exec2``, ``exec3``, ``enter`` and ``runscript``.

Reference 1.8.
"""

import sys

from vzsim.cli.vzctl.common import E_EXEC
from vzsim.cli.vzctl.common import E_NOSCRIPT
from vzsim.cli.vzctl.common import E_NOT_RUNNING
from vzsim.cli.vzctl.common import E_SYNTAX
from vzsim.cli.vzctl.common import Failure


def _exec_command(words):
    """The shell string vzctl builds: words joined by spaces."""
    if words == ['-']:
        return None
    return ' '.join(word if word else "''" for word in words)


def _cmd_exec(call, three=False):
    if not call.positional:
        sys.stderr.write('No command line given for exec\n')
        raise Failure(E_SYNTAX)
    root = call.require_root()
    if not call.running():
        raise Failure(E_NOT_RUNNING, 'Container is not running')
    if three:
        import shlex
        command = shlex.join(call.positional)
    else:
        command = _exec_command(call.positional)
    return call.kernel.exec(call.ctid, root, command)


def cmd_exec(call):
    try:
        code = _cmd_exec(call)
    except Failure as exc:
        if exc.code == E_SYNTAX:
            raise
        call.out.error(exc.message)
        return E_EXEC
    return E_EXEC if code else 0


def cmd_exec2(call):
    return _cmd_exec(call)


def cmd_exec3(call):
    return _cmd_exec(call, three=True)


def cmd_enter(call):
    words = call.positional
    if words and words[0] != '--exec':
        sys.stderr.write("Invalid option '%s'\n" % words[0])
        raise Failure(E_SYNTAX)
    if words and len(words) < 2:
        sys.stderr.write('No command line given for --exec\n')
        raise Failure(E_SYNTAX)
    root = call.require_root()
    if not call.running():
        raise Failure(E_NOT_RUNNING, 'Container is not running')
    command = _exec_command(words[1:]) if words else None
    call.out.info('entered into CT %d' % call.ctid)
    code = call.kernel.exec(call.ctid, root, command)
    call.out.info('exited from CT %d' % call.ctid)
    return code


def cmd_runscript(call):
    """runscript <CT> <host script>: run it inside with /bin/sh.

    A stopped container is mounted for it (no init, no /proc).
    """
    if len(call.positional) != 1:
        sys.stderr.write('Invalid syntax: runscript takes one script\n')
        raise Failure(E_SYNTAX)
    try:
        with open(call.positional[0], 'rb') as f:
            script = f.read()
    except OSError as exc:
        raise Failure(E_NOSCRIPT, 'Unable to open script %s: %s'
                      % (call.positional[0], exc.strerror))
    root = call.require_root()
    mount = not call.running() and not call.mounted()
    if mount:
        call.mount()
    try:
        return call.kernel.exec(call.ctid, root, None, stdin=script)
    finally:
        if mount:
            call.umount()
