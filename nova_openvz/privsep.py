"""Privileged entrypoints of the OpenVZ driver.

Only code here runs as root, inside an oslo.privsep daemon.  Each entrypoint
takes plain, typed arguments, checks them against what the driver is allowed
to ask of a host tool, and runs one fixed executable from the configured
tools directory with an argv list (never a shell).  The unprivileged side
(:mod:`nova_openvz.hosttools`) builds the argv; this side refuses anything
outside the grammar below, so a compromised nova-compute cannot use vzctl to
touch the host itself (CT 0), other paths, or arbitrary options.
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

import nova.conf  # noqa: F401 - registers instances_path in the daemon
from oslo_concurrency import processutils
from oslo_privsep import capabilities as caps
from oslo_privsep import priv_context

from nova_openvz import conf as openvz_conf

CONF = openvz_conf.CONF

#: vzctl mounts images, creates devices and veth pairs, enters containers
#: and signals their processes; it needs these and nothing more.
CAPABILITIES = (caps.CAP_SYS_ADMIN, caps.CAP_NET_ADMIN,
                caps.CAP_DAC_OVERRIDE, caps.CAP_DAC_READ_SEARCH,
                caps.CAP_CHOWN, caps.CAP_FOWNER, caps.CAP_FSETID,
                caps.CAP_MKNOD, caps.CAP_SYS_CHROOT, caps.CAP_KILL,
                caps.CAP_SETUID, caps.CAP_SETGID, caps.CAP_SYS_RESOURCE,
                caps.CAP_NET_RAW)

vz_pctxt = priv_context.PrivContext(
    'nova_openvz',
    cfg_section='nova_openvz_privsep',
    pypath=__name__ + '.vz_pctxt',
    capabilities=list(CAPABILITIES),
)

VEID_MAX = 2147483644
MAX_ARGS = 256
MAX_ARG_LEN = 4096

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

# Values may hold JSON (descriptions) and lists, but never control
# characters; paths are not accepted where the grammar has none.
_VALUE_RE = re.compile(r'^[^\x00-\x1f\x7f]*\Z')
_CTID_RE = re.compile(r'^[0-9]{1,10}\Z')


class ArgumentRejected(ValueError):
    """An argv outside the grammar the driver may use."""


def _check_ctid(text):
    if not _CTID_RE.match(text):
        raise ArgumentRejected('container ID %r is not a number' % text)
    ctid = int(text)
    if not CONF.openvz.min_ctid <= ctid <= VEID_MAX:
        raise ArgumentRejected('container ID %d is outside %d..%d'
                               % (ctid, CONF.openvz.min_ctid, VEID_MAX))


def _check_words(args):
    if not isinstance(args, (list, tuple)) or len(args) > MAX_ARGS:
        raise ArgumentRejected('argv must be a list of at most %d words'
                               % MAX_ARGS)
    for word in args:
        if not isinstance(word, str) or len(word) > MAX_ARG_LEN:
            raise ArgumentRejected('argv words must be short strings')
        if not _VALUE_RE.match(word):
            raise ArgumentRejected('control character in %r' % word)


def validate_vzctl_argv(args):
    """Accept ``<subcommand> <CTID> [options]`` from VZCTL_GRAMMAR only."""
    _check_words(args)
    if list(args) == ['--version']:
        return
    if len(args) < 2 or args[0] not in VZCTL_GRAMMAR:
        raise ArgumentRejected('vzctl subcommand %r is not allowed'
                               % (args[:1],))
    _check_ctid(args[1])
    allowed = VZCTL_GRAMMAR[args[0]]
    if allowed is None:
        if len(args) < 3:
            raise ArgumentRejected('exec2 needs a command')
        return
    rest = list(args[2:])
    while rest:
        option = rest.pop(0)
        if option not in allowed:
            raise ArgumentRejected('vzctl %s option %r is not allowed'
                                   % (args[0], option))
        if option in VZCTL_FLAGS:
            continue
        if not rest or rest[0].startswith('-'):
            raise ArgumentRejected('vzctl option %s needs a value' % option)
        value = rest.pop(0)
        if '/' in value and option in ('--ostemplate', '--config'):
            raise ArgumentRejected('%s takes a name, not a path' % option)
    if args[0] == 'snapshot-mount':
        _check_snapshot_target(args[2:])


def validate_vzlist_argv(args):
    """Accept flags, ``-o <fields>`` and container IDs."""
    _check_words(args)
    rest = list(args)
    while rest:
        word = rest.pop(0)
        if word in VZLIST_FLAGS:
            continue
        if word == '-o':
            if not rest or not VZLIST_FIELD_RE.match(rest[0]):
                raise ArgumentRejected('vzlist -o needs a field list')
            rest.pop(0)
            continue
        _check_ctid(word)


def validate_ploop_argv(args):
    """Accept only the three calls that turn a ploop image into a template.

    ``restore-descriptor -f ploop1 W W/root.hdd``, ``mount -r -m M
    W/DiskDescriptor.xml`` and ``umount -m M``, where W is the image's
    work directory in the staging dir and M its root-owned mount point
    (:func:`ploop_work_dir`, :func:`ploop_mount_dir`), both of one image.
    """
    _check_words(args)
    args = list(args)
    if len(args) == 5 and args[:3] == ['restore-descriptor', '-f', 'ploop1']:
        image = _work_image(args[3])
        if args[4] == os.path.join(ploop_work_dir(image), PLOOP_DELTA):
            return
    elif len(args) == 5 and args[:3] == ['mount', '-r', '-m']:
        image = _work_image(os.path.dirname(args[4]))
        if args[4] == os.path.join(ploop_work_dir(image),
                                   PLOOP_DESCRIPTOR) and \
                args[3] == ploop_mount_dir(image):
            return
    elif len(args) == 3 and args[:2] == ['umount', '-m']:
        name = os.path.basename(args[2])
        if name.startswith(_PLOOP_MOUNT_PREFIX) and args[2] == \
                ploop_mount_dir(name[len(_PLOOP_MOUNT_PREFIX):]):
            return
    raise ArgumentRejected('ploop %s is not allowed' % ' '.join(args))


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


@vz_pctxt.entrypoint
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
        raise ArgumentRejected('tool %r is not allowed' % (tool,))
    validator(args)
    if stdin is not None and (not isinstance(stdin, str) or
                              len(stdin) > MAX_STDIN):
        raise ArgumentRejected('stdin must be text of at most %d bytes'
                               % MAX_STDIN)
    return _run(tool, list(args), int(timeout), stdin)


_TEMPLATE_FILE_RE = re.compile(
    r'^[a-z0-9][a-z0-9._-]*\.tar(\.gz|\.bz2|\.xz)?\Z')

#: vzctl destroy renames a container's config and action scripts to these.
DESTROYED_SUFFIXES = ('conf', 'mount', 'umount', 'premount', 'postumount',
                      'start', 'stop')


def _inside(path, directory):
    real = os.path.realpath(path)
    return os.path.commonpath([real, os.path.realpath(directory)]) == \
        os.path.realpath(directory)


@vz_pctxt.entrypoint
def install_template(source, filename):
    """Move a downloaded template from the staging dir into the cache."""
    from nova_openvz import hostconfig

    if not _TEMPLATE_FILE_RE.match(filename or ''):
        raise ArgumentRejected('bad template file name %r' % (filename,))
    if not _inside(source, CONF.openvz.image_staging_dir) or \
            not os.path.isfile(source) or os.path.islink(source):
        raise ArgumentRejected('%r is not a staged image' % (source,))
    cache_dir = hostconfig.HostConfig().template_cache_dir
    target = os.path.join(cache_dir, filename)
    partial = os.path.join(cache_dir, '.%s.partial' % filename)
    shutil.copyfile(source, partial)
    os.chmod(partial, 0o644)
    os.replace(partial, target)
    os.unlink(source)


@vz_pctxt.entrypoint
def remove_destroyed_configs(ctid):
    """Delete the ``<CTID>.*.destroyed`` files vzctl destroy leaves."""
    from nova_openvz import hostconfig

    _check_ctid(str(int(ctid)))
    conf_dir = hostconfig.HostConfig().conf_dir
    for suffix in DESTROYED_SUFFIXES:
        path = os.path.join(conf_dir, '%d.%s.destroyed' % (ctid, suffix))
        if os.path.lexists(path):
            os.unlink(path)


# -- config drive ------------------------------------------------------------

#: Lines of the container's mount action scripts (vzctl runs them on the
#: host after mounting VE_ROOT, before init starts, so nothing in the guest
#: runs yet).  A guest may have made the mount point a symlink to a host
#: path: refuse that.
_CONFIG_DRIVE_MOUNT = [
    "[ -L '%(target)s' ] && { echo '%(target)s is a symlink' >&2; exit 1; }",
    "mkdir -p '%(target)s' && mount -n --bind '%(source)s' '%(target)s' && "
    "mount -n -o remount,bind,ro '%(target)s' || exit 1"]
_CONFIG_DRIVE_UMOUNT = [
    "if grep -qs ' %(target)s ' /proc/mounts; then "
    "umount -n '%(target)s' || exit 1; fi"]


def _checked_path(path):
    if not isinstance(path, str) or not _SCRIPT_PATH_RE.match(path) or \
            '..' in path.split('/') or path == '/':
        raise ArgumentRejected('unusable path %r' % (path,))
    return path


@vz_pctxt.entrypoint
def write_config_drive_scripts(ctid, source):
    """Write ``<CTID>.mount``/``.umount`` that show ``source`` read-only.

    ``source`` must be a real directory under Nova's ``instances_path``.
    """
    _check_ctid(str(int(ctid)))
    _checked_path(source)
    if not _inside(source, CONF.instances_path) or \
            os.path.islink(source) or not os.path.isdir(source):
        raise ArgumentRejected('%r is not a config drive directory'
                               % (source,))
    target = _checked_path(os.path.join(_container_paths(ctid)[1],
                                        'config-drive'))
    values = {'source': os.path.realpath(source), 'target': target}
    for suffix, lines in (('mount', _CONFIG_DRIVE_MOUNT),
                          ('umount', _CONFIG_DRIVE_UMOUNT)):
        _write_managed(_script_path(ctid, suffix), 'config-drive',
                       [line % values for line in lines])


# -- template cache upkeep and snapshots (issue 4) ---------------------------

#: Templates this driver downloaded: ``[distro[-version][-arch]-]nova-<id>``;
#: only these may be aged or removed, never an operator's own templates.
_NOVA_TEMPLATE_RE = re.compile(
    r'^(?:[a-z0-9][a-z0-9._]*-)*nova-(?P<image>[0-9a-f]{8}-[0-9a-f]{4}-'
    r'[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.tar(\.gz|\.bz2|\.xz)?\Z')
_UUID_RE = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                      r'[0-9a-f]{12}\Z')
#: What the helper may pack into the staging dir: a snapshot, or a ploop
#: image on its way to the template cache.
_PACK_FILE_RE = re.compile(
    r'^(snapshot|ploop)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
    r'[0-9a-f]{12}\.tar\.gz\Z')
#: The paths tar may run from, and how long a pack may take at most.
_TOOL_PATH = '/usr/sbin:/usr/bin:/sbin:/bin'


def nova_template_image(filename):
    """The image ID in a template file name this driver made, or None."""
    match = _NOVA_TEMPLATE_RE.match(filename or '')
    return match.group('image') if match else None


def _nova_template_path(filename):
    from nova_openvz import hostconfig

    if nova_template_image(filename) is None:
        raise ArgumentRejected('%r is not a template of this driver'
                               % (filename,))
    return os.path.join(hostconfig.HostConfig().template_cache_dir, filename)


@vz_pctxt.entrypoint
def touch_template(filename):
    """Mark a cached template as in use now (its mtime), as libvirt does."""
    path = _nova_template_path(filename)
    if os.path.isfile(path) and not os.path.islink(path):
        os.utime(path)


@vz_pctxt.entrypoint
def remove_template(filename):
    """Remove a cached template of this driver; a missing one is fine."""
    path = _nova_template_path(filename)
    if os.path.lexists(path):
        os.unlink(path)


def _snapshot_uuid(guid):
    text = str(guid).strip('{}').lower()
    if not _UUID_RE.match(text):
        raise ArgumentRejected('%r is not a snapshot UUID' % (guid,))
    return text


def _mount_parent():
    """VE_ROOT's parent: root owns it, unlike the staging dir."""
    from nova_openvz import hostconfig
    from nova_openvz import vzconf

    ve_root = hostconfig.HostConfig().values.get('VE_ROOT', '/vz/root/$VEID')
    return os.path.dirname(vzconf.expand_veid(ve_root, 0))


def snapshot_mount_dir(guid):
    """Where a snapshot is mounted to be packed: next to the CT roots.

    Root owns that directory (VE_ROOT's parent), so nova-compute cannot
    swap the mount point for a link to somewhere else on the host.
    """
    return os.path.join(_mount_parent(),
                        'nova-snapshot-' + _snapshot_uuid(guid))


def _check_snapshot_target(options):
    """snapshot-mount may only mount on its own snapshot's mount dir."""
    values = dict(zip(options[::2], options[1::2]))
    if '--id' not in values or '--target' not in values:
        raise ArgumentRejected('snapshot-mount needs --id and --target')
    if values['--target'] != snapshot_mount_dir(values['--id']):
        raise ArgumentRejected('snapshot-mount target %r is not the '
                               'snapshot mount directory'
                               % values['--target'])


def _make_mount_dir(path):
    """Create (or reuse an empty leftover) mount dir; return its path."""
    if os.path.islink(path):
        os.unlink(path)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if os.listdir(path):
            raise ArgumentRejected('%s is in use' % path)
    return path


def _remove_mount_dir(path):
    """Remove a mount dir; refuses (EBUSY/ENOTEMPTY) while mounted."""
    if os.path.islink(path):
        os.unlink(path)
    elif os.path.isdir(path):
        os.rmdir(path)


@vz_pctxt.entrypoint
def make_snapshot_mount_dir(guid):
    """Create (or reuse an empty leftover) mount dir; return its path."""
    return _make_mount_dir(snapshot_mount_dir(guid))


@vz_pctxt.entrypoint
def remove_snapshot_mount_dir(guid):
    """Remove the mount dir; refuses (EBUSY/ENOTEMPTY) while mounted."""
    _remove_mount_dir(snapshot_mount_dir(guid))


def _pack(source, filename):
    """tar+gzip ``source`` into the staging dir; ``(exit_code, stderr)``.

    The output is opened here without following links and only if it does
    not exist, so a planted link in the staging dir gains nothing; tar
    writes to that descriptor and reads the tree with numeric owners.
    """
    if not _PACK_FILE_RE.match(filename or ''):
        raise ArgumentRejected('bad file name %r to pack' % (filename,))
    if not os.path.isdir(source):
        raise ArgumentRejected('%s is not a directory' % source)
    tar = shutil.which('tar', path=_TOOL_PATH)
    if tar is None:
        return 127, 'tar: not found in %s' % _TOOL_PATH
    output = os.path.join(CONF.openvz.image_staging_dir, filename)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                 os.O_NOFOLLOW, 0o644)
    try:
        os.fchmod(fd, 0o644)   # nova-compute reads it to upload it
        proc = subprocess.run(
            [tar, '--create', '--gzip', '--numeric-owner', '--sparse',
             '--one-file-system', '--exclude=./.balloon-*',
             '--directory', source, '.'],
            stdout=fd, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env={'LC_ALL': 'C', 'PATH': _TOOL_PATH},
            timeout=CONF.openvz.tool_timeout, check=False)
        code, stderr = proc.returncode, proc.stderr.decode('utf-8',
                                                           'replace')
    except subprocess.TimeoutExpired:
        code, stderr = None, ''
    finally:
        os.close(fd)
    if code != 0:
        os.unlink(output)
    return code, stderr


@vz_pctxt.entrypoint
def pack_snapshot(guid, filename):
    """Pack the mounted snapshot ``guid`` as an OS template tarball."""
    return _pack(snapshot_mount_dir(guid), filename)


@vz_pctxt.entrypoint
def pack_private_area(ctid, filename):
    """Pack a simfs container's private area (the caller froze it)."""
    from nova_openvz import hostconfig

    _check_ctid(str(int(ctid)))
    private = hostconfig.HostConfig().private_dir(int(ctid))
    if os.path.isdir(os.path.join(private, 'root.hdd')):
        raise ArgumentRejected('container %d is on ploop; pack a snapshot'
                               % ctid)
    return _pack(private, filename)


# -- ploop images (disk_format=ploop) ----------------------------------------
#
# A Glance ploop image is a lone base delta.  nova-compute downloads it into
# its work directory in the staging dir; ploop rebuilds the descriptor there
# and mounts it read-only on a mount point root owns (as for snapshots: a
# mount point in nova-compute's own directory could be swapped for a link to
# a host path); the helper packs the mounted tree as a template tarball.

PLOOP_DELTA = 'root.hdd'
PLOOP_DESCRIPTOR = 'DiskDescriptor.xml'
_PLOOP_WORK_PREFIX = 'ploop-'
_PLOOP_MOUNT_PREFIX = 'nova-ploop-'


def _image_uuid(image_id):
    text = str(image_id)
    if not _UUID_RE.match(text):
        raise ArgumentRejected('%r is not an image ID' % (image_id,))
    return text


def ploop_work_dir(image_id):
    """``<staging dir>/ploop-<image id>``: the image's delta and descriptor."""
    staging = os.path.abspath(CONF.openvz.image_staging_dir)
    return os.path.join(staging, _PLOOP_WORK_PREFIX + _image_uuid(image_id))


def _work_image(path):
    """The image ID of a work dir path, exactly as ploop_work_dir makes it."""
    name = os.path.basename(path)
    if not name.startswith(_PLOOP_WORK_PREFIX):
        raise ArgumentRejected('%r is not a ploop work directory' % (path,))
    image = name[len(_PLOOP_WORK_PREFIX):]
    if path != ploop_work_dir(image):
        raise ArgumentRejected('%r is not a ploop work directory' % (path,))
    return image


def ploop_mount_dir(image_id):
    """Where a ploop image is mounted to be packed: next to the CT roots."""
    return os.path.join(_mount_parent(),
                        _PLOOP_MOUNT_PREFIX + _image_uuid(image_id))


@vz_pctxt.entrypoint
def make_ploop_mount_dir(image_id):
    """Create (or reuse an empty leftover) the image's mount dir."""
    return _make_mount_dir(ploop_mount_dir(image_id))


@vz_pctxt.entrypoint
def remove_ploop_mount_dir(image_id):
    """Remove the image's mount dir; refuses while mounted."""
    _remove_mount_dir(ploop_mount_dir(image_id))


def ploop_pack_name(image_id):
    return '%s%s.tar.gz' % (_PLOOP_WORK_PREFIX, _image_uuid(image_id))


@vz_pctxt.entrypoint
def pack_ploop_image(image_id):
    """Pack the mounted ploop image into ``<staging>/ploop-<id>.tar.gz``."""
    return _pack(ploop_mount_dir(image_id), ploop_pack_name(image_id))


# -- Volumes and ephemeral disks ---------------------------------------------
#
# vzctl gives a container access to a block device (--devices) but leaves the
# node to be made by hand, and a container's /dev may be a tmpfs rebuilt at
# every start.  So the nodes of attached volumes live in the container's
# ``<CTID>.start`` action script, which vzctl runs inside the container at
# each start, after setting its devices and before init (V4 src/lib/env.c
# vps_start_custom).  The ephemeral disk is an ext image in the private area
# (removed with it by vzctl destroy), loop-mounted by the ``<CTID>.mount``
# host action script and unmounted by ``<CTID>.umount``.  Each script keeps
# the driver's lines between markers, so other lines in it survive.

#: Device names Nova hands out (vdb, sdc, xvdb, ...), without /dev/.
_DEVICE_NAME_RE = re.compile(r'^[a-z][a-z0-9]{0,31}\Z')
#: Block majors vzctl can grant: 7 (loop) is refused by vzctl itself, 0 is
#: the unnamed major; 4095 is the kernel's largest.
BLOCK_MAJOR_MAX = 4095
MINOR_MAX = 2 ** 20 - 1
_MANAGED = '# %s nova-openvz %s: nova-compute rewrites these lines'
_NODE_LINE = 'rm -f /dev/%(name)s; mknod -m 0660 /dev/%(name)s b %(major)d ' \
             '%(minor)d'
_NODE_LINE_RE = re.compile(r'^rm -f /dev/([a-z][a-z0-9]*); mknod -m 0660 '
                           r'/dev/\1 b ([0-9]+) ([0-9]+)\Z')
#: Characters a path in a generated script may hold (quoted anyway).
_SCRIPT_PATH_RE = re.compile(r'^/[A-Za-z0-9/._+-]*\Z')
EPHEMERAL_IMAGE = 'ephemeral0.img'
EPHEMERAL_LABEL = 'ephemeral0'
EPHEMERAL_FORMATS = ('ext2', 'ext3', 'ext4')
#: Mount points the ephemeral disk may have inside a container.
_MOUNTPOINT_RE = re.compile(r'^/[a-z0-9][a-z0-9/_-]{0,63}\Z')


def check_device_node(name, major, minor):
    """A block device node the driver may make in a container."""
    if not isinstance(name, str) or not _DEVICE_NAME_RE.match(name):
        raise ArgumentRejected('bad device name %r' % (name,))
    for value, low, high, what in ((major, 1, BLOCK_MAJOR_MAX, 'major'),
                                   (minor, 0, MINOR_MAX, 'minor')):
        if type(value) is not int or not low <= value <= high:
            raise ArgumentRejected('bad %s number %r' % (what, value))


def _script_path(ctid, suffix):
    from nova_openvz import hostconfig

    _check_ctid(str(int(ctid)))
    return os.path.join(hostconfig.HostConfig().conf_dir,
                        '%d.%s' % (ctid, suffix))


def _managed_lines(path, tag):
    """(lines before, the driver's lines, lines after) of a script."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return ['#!/bin/sh'], [], []
    begin, end = _MANAGED % ('BEGIN', tag), _MANAGED % ('END', tag)
    if begin not in lines or end not in lines:
        return lines, [], []
    first, last = lines.index(begin), lines.index(end)
    return lines[:first], lines[first + 1:last], lines[last + 1:]


def _write_managed(path, tag, managed):
    """Replace the driver's lines; drop a script that holds nothing else."""
    before, _old, after = _managed_lines(path, tag)
    if managed:
        before = before + [_MANAGED % ('BEGIN', tag)] + managed + \
            [_MANAGED % ('END', tag)]
    text = before + after
    if not [line for line in text if line.strip() and
            not line.startswith('#')]:
        if os.path.lexists(path):
            os.unlink(path)
        return
    partial = path + '.partial'
    with open(partial, 'w') as f:
        f.write('\n'.join(text) + '\n')
    os.chmod(partial, 0o755)
    os.replace(partial, path)


def _read_nodes(path):
    nodes = {}
    for line in _managed_lines(path, 'volumes')[1]:
        match = _NODE_LINE_RE.match(line)
        if match:
            nodes[match.group(1)] = (int(match.group(2)),
                                     int(match.group(3)))
    return nodes


@vz_pctxt.entrypoint
def volume_nodes(ctid):
    """``{name: (major, minor)}`` of the volume nodes a container gets."""
    return _read_nodes(_script_path(ctid, 'start'))


@vz_pctxt.entrypoint
def set_volume_node(ctid, name, major=None, minor=None):
    """Add (or with ``major`` None, remove) a volume node of a container.

    :returns: the ``(major, minor)`` the name had before, or None.
    """
    if major is None:
        check_device_node(name, 1, 0)
    else:
        check_device_node(name, major, minor)
    path = _script_path(ctid, 'start')
    nodes = _read_nodes(path)
    previous = nodes.pop(name, None)
    if major is not None:
        nodes[name] = (major, minor)
    _write_managed(path, 'volumes', [
        _NODE_LINE % {'name': n, 'major': nodes[n][0], 'minor': nodes[n][1]}
        for n in sorted(nodes)])
    return previous


def _container_paths(ctid):
    """Resolved VE_PRIVATE and VE_ROOT of a container."""
    from nova_openvz import hostconfig
    from nova_openvz import vzconf

    host = hostconfig.HostConfig()
    config = host.container_config(ctid)
    paths = []
    for key in ('VE_PRIVATE', 'VE_ROOT'):
        value = config.get(key) or host.values.get(key)
        path = vzconf.expand_veid(value or '', ctid)
        if not _SCRIPT_PATH_RE.match(path):
            raise ArgumentRejected('%s of CT %d is not a plain absolute '
                                   'path: %r' % (key, ctid, path))
        paths.append(os.path.normpath(path))
    return paths


@vz_pctxt.entrypoint
def make_ephemeral_disk(ctid, size_gb, fs_type, mountpoint):
    """Create a container's ephemeral disk and the scripts that mount it.

    The image is sparse, in the private area (so vzctl destroy removes it);
    mkfs labels it ``ephemeral0`` as Nova's libvirt driver does.
    """
    _check_ctid(str(int(ctid)))
    if type(size_gb) is not int or not 1 <= size_gb <= 65536:
        raise ArgumentRejected('bad ephemeral size %r GB' % (size_gb,))
    if fs_type not in EPHEMERAL_FORMATS:
        raise ArgumentRejected('ephemeral format %r is not one of %s'
                               % (fs_type, ', '.join(EPHEMERAL_FORMATS)))
    if not isinstance(mountpoint, str) or \
            not _MOUNTPOINT_RE.match(mountpoint) or '..' in mountpoint:
        raise ArgumentRejected('bad mount point %r' % (mountpoint,))
    private, root = _container_paths(ctid)
    if not os.path.isdir(private):
        raise ArgumentRejected('private area %s does not exist' % private)
    image = os.path.join(private, EPHEMERAL_IMAGE)
    target = root + mountpoint
    try:
        with open(image, 'xb') as f:
            f.truncate(size_gb * 1024 ** 3)
        processutils.execute('mkfs.%s' % fs_type, '-q', '-F', '-L',
                             EPHEMERAL_LABEL, image)
        # A guest-made symlink there must not send the mount to the host.
        _write_managed(_script_path(ctid, 'mount'), 'ephemeral', [
            "[ -L '%s' ] && exit 1; mkdir -p '%s' && "
            "mount -o loop,nodev,nosuid '%s' '%s' || exit 1"
            % (target, target, image, target)])
        _write_managed(_script_path(ctid, 'umount'), 'ephemeral', [
            "if mountpoint -q '%s'; then umount '%s' || exit 1; fi"
            % (target, target)])
    except BaseException:
        _remove_ephemeral_disk(ctid, image)
        raise


def _remove_ephemeral_disk(ctid, image):
    for suffix in ('mount', 'umount'):
        _write_managed(_script_path(ctid, suffix), 'ephemeral', [])
    if os.path.lexists(image):
        os.unlink(image)


# -- console log --------------------------------------------------------------
#
# A container's console is an interactive vzctl session (reference 1.8), so
# a small logger process (nova_openvz.consolelogger) holds one open per
# container and appends it to console.log in the instance's directory.  Its
# pid file lives there too; since nova-compute owns that directory, a pid is
# trusted only if /proc shows our logger for that very directory.

CONSOLE_LOGGER = 'nova_openvz.consolelogger'
CONSOLE_FILES = ('console.log', 'console.log.0')
CONSOLE_PID = 'console.pid'
#: A logger detaches within its own 5 seconds, or is killed.
CONSOLE_STOP_SECONDS = 10


def _instance_dir(directory):
    """``directory`` if it is ``<instances_path>/<instance uuid>``."""
    _checked_path(directory)
    if not _UUID_RE.match(os.path.basename(directory)) or \
            os.path.realpath(os.path.dirname(directory)) != \
            os.path.realpath(CONF.instances_path) or \
            os.path.islink(directory) or not os.path.isdir(directory):
        raise ArgumentRejected('%r is not an instance directory'
                               % (directory,))
    return directory


def _process_alive(pid):
    """True for a live process (a zombie nobody reaped is dead)."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            state = f.read().rpartition(b')')[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b'Z', b'X')


def _console_logger_pid(directory, ctid=None):
    """Pid of the live logger of ``directory`` (and ``ctid``), or None."""
    try:
        fd = os.open(os.path.join(directory, CONSOLE_PID),
                     os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, 'rb') as f:
            pid = int(f.read(32).strip())
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            argv = f.read().split(b'\0')
    except (OSError, ValueError):
        return None
    wanted = [(b'-m', CONSOLE_LOGGER), (b'--dir', directory)]
    if ctid is not None:
        wanted.append((b'--ctid', str(ctid)))
    for flag, value in wanted:
        pairs = zip(argv, argv[1:])
        if (flag, value.encode()) not in pairs:
            return None
    return pid if _process_alive(pid) else None


@vz_pctxt.entrypoint
def start_console_logger(ctid, directory, max_bytes, timeout):
    """Attach a logger to container ``ctid``'s console, unless one is.

    :returns: None when a logger was attached already, else
        ``(exit_code, stdout, stderr)`` of the attach: vzctl console's
        own exit code and message when it failed.
    """
    _check_ctid(str(int(ctid)))
    directory = _instance_dir(directory)
    if _console_logger_pid(directory, ctid) is not None:
        return None
    timeout = int(timeout)
    argv = [sys.executable, '-I', '-m', CONSOLE_LOGGER,
            '--vzctl', os.path.join(CONF.openvz.tools_dir, 'vzctl'),
            '--ctid', str(int(ctid)), '--dir', directory,
            '--max-bytes', str(int(max_bytes)), '--timeout', str(timeout)]
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True,
            env={'LC_ALL': 'C', 'PATH': _TOOL_PATH}, timeout=timeout + 10,
            check=False)
    except subprocess.TimeoutExpired:
        return None, '', ''
    return (proc.returncode, proc.stdout.decode('utf-8', 'replace'),
            proc.stderr.decode('utf-8', 'replace'))


@vz_pctxt.entrypoint
def stop_console_logger(directory):
    """Detach the console logger of ``directory``; True if one ran."""
    directory = _instance_dir(directory)
    pid = _console_logger_pid(directory)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + CONSOLE_STOP_SECONDS
    while _process_alive(pid):
        if time.monotonic() > deadline:
            # The logger leads its own process group, with its vzctl.
            os.killpg(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    return True


@vz_pctxt.entrypoint
def console_log_tail(directory, max_bytes):
    """The last ``max_bytes`` of the console log, or None if there is none.

    The log may have been rotated once: its older part is read too.
    """
    directory = _instance_dir(directory)
    chunks, remaining, found = [], int(max_bytes), False
    for name in CONSOLE_FILES:
        if remaining <= 0:
            break
        try:
            fd = os.open(os.path.join(directory, name),
                         os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise ArgumentRejected('%s is not a console log' % name)
            found = True
            start = max(0, info.st_size - remaining)
            data = os.pread(fd, info.st_size - start, start)
        finally:
            os.close(fd)
        chunks.insert(0, data)
        remaining -= len(data)
    return b''.join(chunks) if found else None
