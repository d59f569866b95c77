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

"""The one place that runs OpenVZ host tools.

Every vzctl, vzlist, ploop and vzmigrate call goes through :func:`run`: it
hands the argv (built by :mod:`nova_openvz.vz4` from the table of
commands) to the privileged helper, logs the call with its duration,
retries a container locked by another vzctl (exit code 9) with a growing
wait, and turns any other failure into a typed exception that carries the
tool's own message and exit code.  The helper's other programs come back
the same way, as one :data:`nova_openvz.privsep.Result` that
:func:`_error_for` translates: ``tar`` packing an image (:func:`pack`) and
the console agent's ``vzctl console``, the one call that outlives its
caller (:func:`attach_console`).
"""

import collections
import time

from oslo_log import log as logging

from nova_openvz import conf as openvz_conf
from nova_openvz import exception
from nova_openvz import privsep
from nova_openvz.privsep import console as priv_console
from nova_openvz.privsep import tools as priv_tools

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF

EXIT_LOCKED = 9
#: Seconds ``vzctl console`` may take to say it attached.
CONSOLE_ATTACH_TIMEOUT = 60

#: vzctl exit codes (doc/source/reference) and the exceptions they become.
VZCTL_ERRORS = {
    5: exception.BadKernel,
    9: exception.ContainerLocked,
    14: exception.ContainerConfigMissing,
    16: exception.CheckpointFailed,
    17: exception.RestoreFailed,
    20: exception.InvalidToolArgument,
    21: exception.InvalidToolArgument,
    29: exception.TemplateNotFound,
    31: exception.ContainerNotRunning,
    32: exception.ContainerRunning,
    33: exception.ContainerStopFailed,
    43: exception.PrivateAreaMissing,
    44: exception.PrivateAreaExists,
    46: exception.TemplateUnpackFailed,
    48: exception.TemplateUnpackFailed,
    91: exception.TemplateNotFound,
}

#: ploop exit codes (reference 6.2) and the exceptions they become.
PLOOP_ERRORS = {
    11: exception.PloopImageCorrupt,
    21: exception.PloopMountFailed,
    22: exception.PloopUmountFailed,
    37: exception.PloopImageInUse,
    38: exception.InvalidToolArgument,
    39: exception.PloopDescriptorInvalid,
    40: exception.PloopNotMounted,
}

#: vzmigrate exit codes (reference 5.4) and the exceptions they become.
VZMIGRATE_ERRORS = {
    4: exception.MigrationPeerUnreachable,
    6: exception.MigrationCopyFailed,
    7: exception.MigrationStartFailed,
    8: exception.MigrationSourceFailed,
    9: exception.ContainerExistsOnPeer,
    10: exception.ContainerConfigMissing,
    12: exception.MigrationIPInUse,
    14: exception.MigrationPeerNotReady,
    16: exception.MigrationPeerNotReady,
    19: exception.MigrationPeerNotReady,
    20: exception.ContainerLocked,
}

#: The exit-code tables of the tools that have one.
TOOL_ERRORS = {'vzctl': VZCTL_ERRORS, 'ploop': PLOOP_ERRORS,
               'vzmigrate': VZMIGRATE_ERRORS}
#: Tools whose exit 9 is a container lock worth retrying (to ploop it is a
#: sysfs error, to vzmigrate "exists on the destination").
RETRY_LOCKED = ('vzctl', 'vzlist')

ToolCall = collections.namedtuple(
    'ToolCall', 'tool argv exit_code stdout stderr seconds')

_listeners = []


def add_listener(callback):
    """Call ``callback(ToolCall)`` after every tool invocation.

    The sandbox and the benchmark use it to show and count host commands.
    """
    _listeners.append(callback)


def remove_listener(callback):
    _listeners.remove(callback)


def _tool_message(stdout, stderr):
    """What the tool said about its failure: stderr, else stdout's tail."""
    text = stderr.strip() or stdout.strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return ' '.join(lines[-5:]) or '(no output)'


def _error_for(call):
    command = ' '.join(call.argv[:1])
    kwargs = dict(tool=call.tool, command=command, exit_code=call.exit_code,
                  stdout=call.stdout, stderr=call.stderr,
                  detail=_tool_message(call.stdout, call.stderr))
    if call.exit_code is None:
        return exception.ToolTimeout(tool=call.tool, command=command,
                                     timeout=_timeout(call.tool))
    error_class = TOOL_ERRORS.get(call.tool, {}).get(
        call.exit_code, exception.HostToolError)
    return error_class(**kwargs)


def _timeout(tool):
    # A listing answers in seconds; waiting out a hung one for as long as
    # a container start may take would hold up every query behind it.
    if tool == 'vzlist':
        return CONF.openvz.query_timeout
    return CONF.openvz.tool_timeout


def _invoke(tool, argv, stdin):
    started = time.monotonic()
    return _record(tool, argv, started, priv_tools.run_host_tool(
        tool, argv, _timeout(tool), stdin))


def _record(tool, argv, started, result, listened=True):
    """Log a finished call (and tell the listeners); its :class:`ToolCall`.

    :param result: the helper's :data:`nova_openvz.privsep.Result`, as
        it crossed the boundary (a plain sequence).
    """
    result = privsep.Result(*result)
    call = ToolCall(tool, tuple(argv), result.exit_code, result.stdout,
                    result.stderr, time.monotonic() - started)
    LOG.debug('%(tool)s %(argv)s exited %(code)s in %(secs).3fs',
              {'tool': tool, 'argv': ' '.join(argv), 'code': call.exit_code,
               'secs': call.seconds})
    for listener in list(_listeners) if listened else ():
        listener(call)
    return call


def run(tool, *argv, ok_codes=(0,), stdin=None):
    """Run a host tool and return its :class:`ToolCall`.

    :param ok_codes: exit codes that count as success for this call.
    :param stdin: text for the tool's standard input (never logged).
    :raises: a :class:`nova_openvz.exception.HostToolError` subclass.
    """
    argv = [str(word) for word in argv]
    wait = CONF.openvz.lock_retry_interval
    for attempt in range(CONF.openvz.lock_retries + 1):
        call = _invoke(tool, argv, stdin)
        last = attempt == CONF.openvz.lock_retries
        if call.exit_code != EXIT_LOCKED or last or \
                tool not in RETRY_LOCKED:
            break
        LOG.info('Container locked by another vzctl (%s); retrying in '
                 '%.1fs', _tool_message(call.stdout, call.stderr), wait)
        time.sleep(wait)
        wait *= 2
    if call.exit_code in ok_codes:
        return call
    raise _error_for(call)


def pack(entrypoint, *args, what):
    """Run a privileged ``tar`` packing ``what``; raise if it failed.

    The listeners hear of vzctl, vzlist and ploop only, as before.
    """
    call = _record('tar', (what,), time.monotonic(), entrypoint(*args),
                   listened=False)
    if call.exit_code != 0:
        raise _error_for(call)
    return call


def attach_console(ctid, directory):
    """Keep ``vzctl console <ctid>`` attached, logging into ``directory``.

    The host's console agent holds the session after this call (see
    :mod:`nova_openvz.privsep.consoleagent`); nothing runs when it holds it
    already.

    :returns: the attach's :class:`ToolCall`, or None if there was none.
    :raises: a :class:`nova_openvz.exception.HostToolError` subclass with
        vzctl's message and exit code when it cannot attach.
    """
    started = time.monotonic()
    # A plain sequence once it crossed the boundary.
    result = privsep.Result(*priv_console.attach_console(
        int(ctid), directory, CONF.openvz.console_log_max_bytes,
        min(CONF.openvz.tool_timeout, CONSOLE_ATTACH_TIMEOUT)))
    if result.exit_code == 0 and result.stdout == priv_console.HELD:
        return None
    call = _record('vzctl', ('console', str(ctid)), started, result)
    if call.exit_code != 0:
        raise _error_for(call)
    return call
