"""Run vzctl, vzlist and ploop with an argv from the driver's grammar."""

import os
import re
import subprocess

from oslo_concurrency import processutils

from nova_openvz import privsep
from nova_openvz.privsep import images

CONF = privsep.CONF

#: vzctl subcommands the driver uses, with the options each may carry.
#: ``None`` means "any words follow" (the command run inside the container).
VZCTL_GRAMMAR = {
    'create': {'--ostemplate', '--layout', '--diskspace', '--diskinodes',
               '--hostname', '--name', '--description', '--config',
               '--ipadd'},
    'start': {'--wait', '--force', '--skip-fsck', '--skip-remount'},
    'stop': {'--fast', '--skip-umount'},
    'restart': {'--wait', '--fast', '--force'},
    'status': set(),
    'mount': set(),
    'umount': set(),
    'destroy': set(),
    'set': {'--save', '--force', '--setmode', '--ram', '--swap', '--cpus',
            '--cpuunits', '--cpulimit', '--cpumask', '--nodemask',
            '--diskspace', '--diskinodes', '--hostname', '--nameserver',
            '--searchdomain', '--ipadd', '--ipdel', '--netif_add',
            '--netif_del', '--ifname', '--mac', '--host_ifname',
            '--host_mac', '--bridge', '--name', '--description',
            '--ostemplate', '--onboot', '--disabled', '--stop-timeout',
            '--devices', '--devnodes', '--features', '--ioprio',
            '--iolimit', '--iopslimit', '--numproc', '--numfile',
            '--vm_overcommit', '--userpasswd'},
    'exec2': None,
    'suspend': {'--dumpfile'},
    'resume': {'--dumpfile'},
    'chkpnt': {'--suspend', '--resume', '--dump', '--kill'},
    'snapshot': {'--id', '--name', '--description', '--skip-suspend',
                 '--skip-config'},
    'snapshot-switch': {'--id', '--skip-resume', '--must-resume',
                        '--skip-config'},
    'snapshot-delete': {'--id'},
    'snapshot-list': {'-H', '-o', '--id'},
    'snapshot-mount': {'--id', '--target'},
    'snapshot-umount': {'--id'},
}

#: Options that take no value.
VZCTL_FLAGS = {'--save', '--force', '--wait', '--fast', '--skip-fsck',
               '--skip-remount', '--skip-umount', '--suspend', '--resume',
               '--dump', '--kill', '--skip-suspend', '--skip-config',
               '--skip-resume', '--must-resume', '-H'}

VZLIST_FLAGS = {'-a', '-S', '-H', '-j', '-t'}
VZLIST_FIELD_RE = re.compile(r'^[a-z_.]+(,[a-z_.]+)*\Z')


def validate_vzctl_argv(args):
    """Accept ``<subcommand> <CTID> [options]`` from VZCTL_GRAMMAR only."""
    privsep.check_words(args)
    if list(args) == ['--version']:
        return
    if len(args) < 2 or args[0] not in VZCTL_GRAMMAR:
        raise privsep.ArgumentRejected(
            'vzctl subcommand %r is not allowed' % (args[:1],))
    privsep.check_ctid(args[1])
    allowed = VZCTL_GRAMMAR[args[0]]
    if allowed is None:
        if len(args) < 3:
            raise privsep.ArgumentRejected('exec2 needs a command')
        return
    rest = list(args[2:])
    while rest:
        option = rest.pop(0)
        if option not in allowed:
            raise privsep.ArgumentRejected(
                'vzctl %s option %r is not allowed' % (args[0], option))
        if option in VZCTL_FLAGS:
            continue
        if not rest or rest[0].startswith('-'):
            raise privsep.ArgumentRejected(
                'vzctl option %s needs a value' % option)
        value = rest.pop(0)
        if '/' in value and option in ('--ostemplate', '--config'):
            raise privsep.ArgumentRejected(
                '%s takes a name, not a path' % option)
    if args[0] == 'snapshot-mount':
        images.check_snapshot_target(args[2:])


def validate_vzlist_argv(args):
    """Accept flags, ``-o <fields>`` and container IDs."""
    privsep.check_words(args)
    rest = list(args)
    while rest:
        word = rest.pop(0)
        if word in VZLIST_FLAGS:
            continue
        if word == '-o':
            if not rest or not VZLIST_FIELD_RE.match(rest[0]):
                raise privsep.ArgumentRejected('vzlist -o needs a field list')
            rest.pop(0)
            continue
        privsep.check_ctid(word)


def validate_ploop_argv(args):
    """Accept only the three calls that turn a ploop image into a template.

    ``restore-descriptor -f ploop1 W W/root.hdd``, ``mount -r -m M
    W/DiskDescriptor.xml`` and ``umount -m M``, where W is the image's
    work directory in the staging dir and M its root-owned mount point
    (:func:`.images.ploop_work_dir`, :func:`.images.ploop_mount_dir`),
    both of one image.
    """
    privsep.check_words(args)
    args = list(args)
    if len(args) == 5 and args[:3] == ['restore-descriptor', '-f', 'ploop1']:
        image = images.work_image(args[3])
        delta = os.path.join(images.ploop_work_dir(image), images.PLOOP_DELTA)
        if args[4] == delta:
            return
    elif len(args) == 5 and args[:3] == ['mount', '-r', '-m']:
        image = images.work_image(os.path.dirname(args[4]))
        if args[4] == os.path.join(images.ploop_work_dir(image),
                                   images.PLOOP_DESCRIPTOR) and \
                args[3] == images.ploop_mount_dir(image):
            return
    elif len(args) == 3 and args[:2] == ['umount', '-m']:
        name = os.path.basename(args[2])
        prefix = images.PLOOP_MOUNT_PREFIX
        if name.startswith(prefix) and \
                args[2] == images.ploop_mount_dir(name[len(prefix):]):
            return
    raise privsep.ArgumentRejected('ploop %s is not allowed' % ' '.join(args))


_VALIDATORS = {'vzctl': validate_vzctl_argv, 'vzlist': validate_vzlist_argv,
               'ploop': validate_ploop_argv}


MAX_STDIN = 1024 * 1024


def _run(tool, args, timeout, stdin=None):
    path = os.path.join(CONF.openvz.tools_dir, tool)
    started = {}
    env = {'LC_ALL': 'C', 'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'}
    try:
        stdout, stderr = processutils.execute(
            path, *args, check_exit_code=False, timeout=timeout,
            env_variables=env, process_input=stdin,
            on_execute=lambda proc: started.setdefault('proc', proc))
    except subprocess.TimeoutExpired:
        proc = started['proc']
        proc.kill()
        proc.wait()
        return None, '', ''
    return started['proc'].returncode, stdout, stderr


@privsep.vz_pctxt.entrypoint
def run_host_tool(tool, args, timeout, stdin=None):
    """Run ``tool`` (vzctl, vzlist or ploop) with a validated argv.

    ``stdin`` (text) is given to the tool on its standard input: scripts
    for ``vzctl exec2 <CT> -``, which may carry secrets that must not be
    on any command line.

    :returns: ``(exit_code, stdout, stderr)``; exit_code is None when the
        call was killed after ``timeout`` seconds.
    """
    validator = _VALIDATORS.get(tool)
    if validator is None:
        raise privsep.ArgumentRejected('tool %r is not allowed' % (tool,))
    validator(args)
    if stdin is not None and (not isinstance(stdin, str) or
                              len(stdin) > MAX_STDIN):
        raise privsep.ArgumentRejected(
            'stdin must be text of at most %d bytes' % MAX_STDIN)
    return _run(tool, list(args), int(timeout), stdin)
