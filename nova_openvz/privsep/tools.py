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

"""Run vzctl, vzlist, ploop and vzmigrate with an argv from the table."""

import os
import subprocess
import sys
import threading

from oslo_concurrency import processutils

from nova_openvz import privsep
from nova_openvz.privsep import commands
from nova_openvz.privsep import containers
from nova_openvz.privsep import images

CONF = privsep.CONF

MAX_STDIN = 1024 * 1024


def _ctid(shape, operands, options):
    privsep.check_ctid(operands[0])


def _nova_ctid(shape, operands, options):
    privsep.check_ctid(operands[0])
    containers.check_nova_ctid(operands[0])


def _ctids(shape, operands, options):
    for word in operands[1:]:
        privsep.check_ctid(word)


def _migrated_ctid(shape, operands, options):
    # vzmigrate names the container after the peer.
    privsep.check_ctid(operands[1])
    containers.check_nova_ctid(operands[1])


def _granted_device(shape, operands, options):
    """A device may be granted only once recorded for that container.

    :func:`.containers.grant_volume` records a volume's device after
    checking it on the host; taking access back (``none``) is always
    allowed.
    """
    ctid = int(operands[0])
    for name, value in options:
        if name != '--devices' or value.endswith(':none'):
            continue
        major, minor = (int(n) for n in value.split(':')[1:3])
        if (major, minor) not in containers.granted_devices(ctid):
            raise privsep.ArgumentRejected(
                'device %d:%d is no volume of container %d'
                % (major, minor, ctid))


def _snapshot_target(shape, operands, options):
    images.check_snapshot_target(operands[0], dict(options))


def _ploop_work(shape, operands, options):
    work, delta = operands
    image = images.work_image(work)
    if delta != os.path.join(images.ploop_work_dir(image),
                             images.PLOOP_DELTA):
        raise privsep.ArgumentRejected('%r is not the image delta' % delta)


def _ploop_mount(shape, operands, options):
    mount_dir, descriptor = operands
    image = images.work_image(os.path.dirname(descriptor))
    if descriptor != os.path.join(images.ploop_work_dir(image),
                                  images.PLOOP_DESCRIPTOR) or \
            mount_dir != images.ploop_mount_dir(image):
        raise privsep.ArgumentRejected(
            'ploop mount of %r on %r is not allowed'
            % (descriptor, mount_dir))


def _ploop_umount(shape, operands, options):
    name = os.path.basename(operands[0])
    prefix = images.PLOOP_MOUNT_PREFIX
    if not name.startswith(prefix) or \
            operands[0] != images.ploop_mount_dir(name[len(prefix):]):
        raise privsep.ArgumentRejected(
            'ploop umount of %r is not allowed' % operands[0])


#: The privileged checks the table's shapes and options name.
GUARDS = {
    'ctid': _ctid,
    'nova_ctid': _nova_ctid,
    'ctids': _ctids,
    'migrated_ctid': _migrated_ctid,
    'granted_device': _granted_device,
    'snapshot_target': _snapshot_target,
    'ploop_work': _ploop_work,
    'ploop_mount': _ploop_mount,
    'ploop_umount': _ploop_umount,
}


def validate(tool, args):
    """Accept an argv only if the table holds it and its guards pass.

    :returns: its :class:`.commands.Shape`.
    """
    privsep.check_words(args)
    try:
        shape, operands, options = commands.match(tool, list(args))
    except commands.Rejected as e:
        raise privsep.ArgumentRejected(str(e))
    guards = list(shape.guards) + sorted(
        {shape.options[name].guard for name, _ in options
         if shape.options[name].guard})
    for guard in guards:
        GUARDS[guard](shape, operands, options)
    return shape


#: The vzmigrate processes running now, by CT ID (the last operand), so
#: that an abort of a live migration can stop one (:func:`stop_vzmigrate`).
_MIGRATING = {}
_MIGRATING_LOCK = threading.Lock()


def _started(tool, args, started):
    def on_execute(proc):
        started.setdefault('proc', proc)
        if tool == 'vzmigrate':
            with _MIGRATING_LOCK:
                _MIGRATING[int(args[-1])] = proc
    return on_execute


def stop_vzmigrate(ctid):
    """SIGTERM the vzmigrate of container ``ctid``; False if none runs."""
    with _MIGRATING_LOCK:
        proc = _MIGRATING.get(int(ctid))
    if proc is None or proc.poll() is not None:
        return False
    proc.terminate()
    return True


def _timeout_errors():
    """What processutils raises when a tool outlives its timeout.

    In an eventlet-patched process it runs eventlet's green Popen, whose
    ``communicate`` raises the ``TimeoutExpired`` of eventlet's own copy of
    the subprocess module: another class, which ``except
    subprocess.TimeoutExpired`` lets through with the tool still running.
    """
    if 'eventlet' not in sys.modules:
        return (subprocess.TimeoutExpired,)
    from eventlet import patcher
    return (subprocess.TimeoutExpired,
            patcher.original('subprocess').TimeoutExpired)


def _run(tool, args, timeout, stdin=None):
    path = os.path.join(CONF.openvz.tools_dir, tool)
    started = {}
    env = {'LC_ALL': 'C', 'PATH': privsep.TOOL_PATH}
    try:
        stdout, stderr = processutils.execute(
            path, *args, check_exit_code=False, timeout=timeout,
            env_variables=env, process_input=stdin,
            on_execute=_started(tool, args, started))
    except _timeout_errors():
        proc = started['proc']
        proc.kill()
        proc.wait()
        return privsep.Result(None, '', '')
    finally:
        if tool == 'vzmigrate':
            with _MIGRATING_LOCK:
                if _MIGRATING.get(int(args[-1])) is started.get('proc'):
                    del _MIGRATING[int(args[-1])]
    return privsep.Result(started['proc'].returncode, stdout, stderr)


@privsep.vz_pctxt.entrypoint
def run_host_tool(tool, args, timeout, stdin=None):
    """Run ``tool`` (vzctl, vzlist, ploop, vzmigrate), an argv of the table.

    ``stdin`` (text) is the script of ``vzctl exec2 <CT> -``, the only
    command that reads one; it may carry secrets that must not be on any
    command line.

    :returns: a :data:`nova_openvz.privsep.Result`.
    """
    if tool not in commands.TOOLS:
        raise privsep.ArgumentRejected('tool %r is not allowed' % (tool,))
    shape = validate(tool, args)
    if (stdin is not None) != shape.stdin or stdin is not None and (
            not isinstance(stdin, str) or len(stdin) > MAX_STDIN):
        raise privsep.ArgumentRejected(
            '%s takes %s' % (shape.name, 'a script of at most %d bytes on '
                             'stdin' % MAX_STDIN if shape.stdin
                             else 'no stdin'))
    return _run(tool, list(args), int(timeout), stdin)
