"""Files vzctl keeps next to a container, written by the helper.

vzctl runs a container's action scripts (``<CTID>.mount``, ``.umount``,
``.start``) at the right moments; the driver keeps its own lines in them for
attached volumes, the ephemeral disk and the config drive.
"""

import os
import re

from oslo_concurrency import processutils

from nova_openvz import privsep

CONF = privsep.CONF

#: vzctl destroy renames a container's config and action scripts to these.
DESTROYED_SUFFIXES = ('conf', 'mount', 'umount', 'premount', 'postumount',
                      'start', 'stop')


@privsep.vz_pctxt.entrypoint
def remove_destroyed_configs(ctid):
    """Delete the ``<CTID>.*.destroyed`` files vzctl destroy leaves."""
    from nova_openvz import hostconfig

    privsep.check_ctid(str(int(ctid)))
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


@privsep.vz_pctxt.entrypoint
def write_config_drive_scripts(ctid, source):
    """Write ``<CTID>.mount``/``.umount`` that show ``source`` read-only.

    ``source`` must be a real directory under Nova's ``instances_path``.
    """
    privsep.check_ctid(str(int(ctid)))
    privsep.checked_path(source)
    if not privsep.is_inside(source, CONF.instances_path) or \
            os.path.islink(source) or not os.path.isdir(source):
        raise privsep.ArgumentRejected(
            '%r is not a config drive directory' % (source,))
    target = privsep.checked_path(os.path.join(_container_paths(ctid)[1],
                                               'config-drive'))
    values = {'source': os.path.realpath(source), 'target': target}
    for suffix, lines in (('mount', _CONFIG_DRIVE_MOUNT),
                          ('umount', _CONFIG_DRIVE_UMOUNT)):
        _write_managed(_script_path(ctid, suffix), 'config-drive',
                       [line % values for line in lines])


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
EPHEMERAL_IMAGE = 'ephemeral0.img'
EPHEMERAL_LABEL = 'ephemeral0'
EPHEMERAL_FORMATS = ('ext2', 'ext3', 'ext4')
#: Mount points the ephemeral disk may have inside a container.
_MOUNTPOINT_RE = re.compile(r'^/[a-z0-9][a-z0-9/_-]{0,63}\Z')


def check_device_node(name, major, minor):
    """A block device node the driver may make in a container."""
    if not isinstance(name, str) or not _DEVICE_NAME_RE.match(name):
        raise privsep.ArgumentRejected('bad device name %r' % (name,))
    for value, low, high, what in ((major, 1, BLOCK_MAJOR_MAX, 'major'),
                                   (minor, 0, MINOR_MAX, 'minor')):
        if type(value) is not int or not low <= value <= high:
            raise privsep.ArgumentRejected('bad %s number %r' % (what, value))


def _script_path(ctid, suffix):
    from nova_openvz import hostconfig

    privsep.check_ctid(str(int(ctid)))
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


@privsep.vz_pctxt.entrypoint
def volume_nodes(ctid):
    """``{name: (major, minor)}`` of the volume nodes a container gets."""
    return _read_nodes(_script_path(ctid, 'start'))


@privsep.vz_pctxt.entrypoint
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
        if not privsep.SCRIPT_PATH_RE.match(path):
            raise privsep.ArgumentRejected(
                '%s of CT %d is not a plain absolute path: %r'
                % (key, ctid, path))
        paths.append(os.path.normpath(path))
    return paths


@privsep.vz_pctxt.entrypoint
def make_ephemeral_disk(ctid, size_gb, fs_type, mountpoint):
    """Create a container's ephemeral disk and the scripts that mount it.

    The image is sparse, in the private area (so vzctl destroy removes it);
    mkfs labels it ``ephemeral0`` as Nova's libvirt driver does.
    """
    privsep.check_ctid(str(int(ctid)))
    if type(size_gb) is not int or not 1 <= size_gb <= 65536:
        raise privsep.ArgumentRejected('bad ephemeral size %r GB' % (size_gb,))
    if fs_type not in EPHEMERAL_FORMATS:
        raise privsep.ArgumentRejected(
            'ephemeral format %r is not one of %s'
            % (fs_type, ', '.join(EPHEMERAL_FORMATS)))
    if not isinstance(mountpoint, str) or \
            not _MOUNTPOINT_RE.match(mountpoint) or '..' in mountpoint:
        raise privsep.ArgumentRejected('bad mount point %r' % (mountpoint,))
    private, root = _container_paths(ctid)
    if not os.path.isdir(private):
        raise privsep.ArgumentRejected(
            'private area %s does not exist' % private)
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
