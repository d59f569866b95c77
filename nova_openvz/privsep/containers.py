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

"""Files vzctl keeps next to a container, written by the helper.

vzctl runs a container's action scripts (``<CTID>.mount``, ``.umount``,
``.start``) at the right moments; the driver keeps its own lines in them for
attached volumes, the ephemeral disk and the config drive.  What runs as
root here: the helper writes those scripts (vzctl runs them later: ``mount``
and ``umount`` on the host, ``start`` inside the container), ``mkfs`` on a
new ephemeral disk image, and reads of ``/proc`` and ``/sys`` to check a
volume's device.
"""

import errno
import os
import re
import shutil
import stat

from oslo_concurrency import processutils

from nova_openvz import privsep
from nova_openvz.privsep import commands

CONF = privsep.CONF


@privsep.vz_pctxt.entrypoint
def remove_destroyed_configs(ctid):
    """Delete the ``<CTID>.*.destroyed`` files vzctl destroy leaves."""
    privsep.check_ctid(str(int(ctid)))
    for path in privsep.paths().destroyed_files(ctid):
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


#: The config drive directories of an instance directory: the server's,
#: and its rescue container's (configdrive.directory).
CONFIG_DRIVE_NAMES = ('config-drive', 'config-drive.rescue')

#: Limits of what a config drive may hold (Nova's are far smaller).
CONFIG_DRIVE_MAX_BYTES = 64 * 1024 * 1024
_CONFIG_DRIVE_MAX_DEPTH = 8


def config_drive_dir(ctid):
    """The root-owned copy of a container's config drive, next to CT roots.

    nova-compute writes the drive in its instance directory, which it could
    swap for a link to any host directory before the next start; and its
    files, owned by nova's uid, would be readable by a guest user of the
    same numeric uid.  The copy here belongs to root alone.
    """
    return os.path.join(privsep.paths().root_parent(),
                        'nova-config-drive-%d' % int(ctid))


@privsep.vz_pctxt.entrypoint
def install_config_drive(ctid, source):
    """Copy ``source`` to :func:`config_drive_dir` and bind it at start.

    ``source`` must be ``<instances_path>/<uuid>/config-drive`` (or, for a
    rescue container, ``config-drive.rescue``); it is read through
    descriptors, links refused, so a swap changes nothing read.  The
    ``<CTID>.mount``/``.umount`` scripts show the copy read-only.
    """
    check_nova_ctid(ctid)
    privsep.checked_path(source)
    name = os.path.basename(source)
    if name not in CONFIG_DRIVE_NAMES:
        raise privsep.ArgumentRejected(
            '%r is not a config drive directory' % (source,))
    instance_fd = privsep.open_instance_dir(os.path.dirname(source))
    try:
        try:
            source_fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY |
                                os.O_NOFOLLOW, dir_fd=instance_fd)
        except OSError as e:
            raise privsep.ArgumentRejected(
                '%r is not a config drive directory: %s'
                % (source, e.strerror))
    finally:
        os.close(instance_fd)
    target = config_drive_dir(ctid)
    fresh = target + '.new'
    shutil.rmtree(fresh, ignore_errors=True)
    os.mkdir(fresh, 0o700)
    try:
        fresh_fd = os.open(fresh, os.O_RDONLY | os.O_DIRECTORY |
                           os.O_NOFOLLOW)
        try:
            _copy_tree(source_fd, fresh_fd, [CONFIG_DRIVE_MAX_BYTES], 0)
        finally:
            os.close(fresh_fd)
        os.chmod(fresh, 0o500)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(fresh, target)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    finally:
        os.close(source_fd)
    mount_point = privsep.checked_path(os.path.join(
        _container_paths(ctid)[1], 'config-drive'))
    values = {'source': target, 'target': mount_point}
    for suffix, lines in (('mount', _CONFIG_DRIVE_MOUNT),
                          ('umount', _CONFIG_DRIVE_UMOUNT)):
        _write_managed(_script_path(ctid, suffix), 'config-drive',
                       [line % values for line in lines])


def _copy_tree(src_fd, dst_fd, budget, depth):
    """Copy directories and regular files only, owned by root, read-only."""
    if depth > _CONFIG_DRIVE_MAX_DEPTH:
        raise privsep.ArgumentRejected('config drive nests too deep')
    for name in os.listdir(src_fd):
        info = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            os.mkdir(name, 0o700, dir_fd=dst_fd)
            sub_src = os.open(name, os.O_RDONLY | os.O_DIRECTORY |
                              os.O_NOFOLLOW, dir_fd=src_fd)
            sub_dst = os.open(name, os.O_RDONLY | os.O_DIRECTORY |
                              os.O_NOFOLLOW, dir_fd=dst_fd)
            try:
                _copy_tree(sub_src, sub_dst, budget, depth + 1)
                os.fchmod(sub_dst, 0o500)
            finally:
                os.close(sub_src)
                os.close(sub_dst)
        elif stat.S_ISREG(info.st_mode):
            _copy_file(name, src_fd, dst_fd, budget)
        else:
            raise privsep.ArgumentRejected(
                'config drive entry %r is neither a file nor a directory'
                % name)


def _copy_file(name, src_fd, dst_fd, budget):
    reader = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK,
                     dir_fd=src_fd)
    try:
        if not stat.S_ISREG(os.fstat(reader).st_mode):
            raise privsep.ArgumentRejected('%r is not a file' % name)
        writer = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                         os.O_NOFOLLOW, 0o400, dir_fd=dst_fd)
        try:
            while True:
                chunk = os.read(reader, 1 << 16)
                if not chunk:
                    break
                budget[0] -= len(chunk)
                if budget[0] < 0:
                    raise privsep.ArgumentRejected(
                        'config drive is larger than %d bytes'
                        % CONFIG_DRIVE_MAX_BYTES)
                os.write(writer, chunk)
        finally:
            os.close(writer)
    finally:
        os.close(reader)


@privsep.vz_pctxt.entrypoint
def remove_config_drive(ctid):
    """Delete the root-owned copy (the scripts go with the container)."""
    privsep.check_ctid(str(int(ctid)))
    shutil.rmtree(config_drive_dir(ctid), ignore_errors=True)


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
    privsep.check_ctid(str(int(ctid)))
    return privsep.paths().action_script(ctid, suffix)


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


def check_nova_container(ctid):
    """Refuse to act on a container Nova did not make.

    Its own config says whose it is (:func:`.commands.nova_instance`); a
    container with no config is nobody's, and vzctl says it is gone.
    """
    config = privsep.paths().container_config(ctid)
    name, description = config.get('NAME'), config.get('DESCRIPTION')
    if config and commands.nova_instance(name, description) is None and \
            commands.rescued_instance(name, description) is None:
        raise privsep.ArgumentRejected(
            'CT %d is not a container of this driver' % ctid)


def check_nova_ctid(ctid):
    """A CT ID in the driver's range, of a container Nova made; as int.

    Every entrypoint that acts on or next to one container checks this
    first: a compromised nova-compute must not reach other containers.
    """
    privsep.check_ctid(str(int(ctid)))
    check_nova_container(int(ctid))
    return int(ctid)


def granted_devices(ctid):
    """``{(major, minor)}`` of the volumes recorded for a container."""
    return set(_read_nodes(_script_path(ctid, 'start')).values())


def _write_nodes(ctid, nodes):
    _write_managed(_script_path(ctid, 'start'), 'volumes', [
        _NODE_LINE % {'name': n, 'major': nodes[n][0], 'minor': nodes[n][1]}
        for n in sorted(nodes)])


@privsep.vz_pctxt.entrypoint
def grant_volume(ctid, name, path):
    """Record the volume os-brick connected at ``path`` as ``/dev/<name>``.

    The device numbers are read here from the device itself, never taken
    from the caller, and the device must be one the host does not use
    (:func:`_check_volume_device`).  Only a device recorded here can then
    be granted to the container with ``vzctl set --devices``
    (:mod:`.tools`).

    :returns: ``((major, minor), previous)``: the device, and what the
        name had before (None if nothing).
    """
    check_nova_ctid(ctid)
    check_device_node(name, 1, 0)
    device = _check_volume_device(ctid, path)
    nodes = _read_nodes(_script_path(ctid, 'start'))
    previous = nodes.get(name)
    nodes[name] = device
    _write_nodes(ctid, nodes)
    return device, previous


@privsep.vz_pctxt.entrypoint
def revoke_volume(ctid, name):
    """Forget the volume node ``name``; its ``(major, minor)`` or None."""
    check_nova_ctid(ctid)
    check_device_node(name, 1, 0)
    nodes = _read_nodes(_script_path(ctid, 'start'))
    previous = nodes.pop(name, None)
    _write_nodes(ctid, nodes)
    return previous


# A compromised nova-compute must not hand a container a host disk.  It can
# only name a path; the helper looks at the device behind it and refuses
# one the host uses: mounted, used as swap, or held by device-mapper, md or
# LVM (``holders`` in sysfs), itself or any partition of its disk; one some
# kernel user holds exclusively (an open with O_EXCL fails: file systems,
# swap, device-mapper, md, an iSCSI target's backstore); and one recorded
# for another container.  What is left is a block device nothing on the
# host has claimed, which is what os-brick's connectors give (a new iSCSI,
# FC, RBD or NVMe disk, or the local connector's path).

_PARTITION_RE = re.compile(r'^(?P<disk>.*[0-9])p[0-9]+\Z|'
                           r'^(?P<plain>.*[a-z])[0-9]+\Z')


def _block_devices():
    """``{name: (major, minor)}`` of the host's block devices."""
    found = {}
    with open('/proc/partitions') as f:
        for line in f:
            fields = line.split()
            if len(fields) == 4 and fields[0].isdigit():
                found[fields[3]] = (int(fields[0]), int(fields[1]))
    return found


def _disk_family(device, devices):
    """The device's whole disk and every partition of that disk."""
    names = {number: name for name, number in devices.items()}
    name = names.get(device)
    if name is None:
        return {device}
    match = _PARTITION_RE.match(name)
    disk = name
    if match:
        parent = match.group('disk') or match.group('plain')
        if parent in devices:
            disk = parent
    family = {devices[disk]} if disk in devices else {device}
    for other, number in devices.items():
        match = _PARTITION_RE.match(other)
        if match and (match.group('disk') or match.group('plain')) == disk:
            family.add(number)
    return family


def _devices_in_use():
    """``{(major, minor)}`` the host mounts or swaps on."""
    used = set()
    with open('/proc/self/mountinfo') as f:
        for line in f:
            major, _, minor = line.split()[2].partition(':')
            used.add((int(major), int(minor)))
    with open('/proc/swaps') as f:
        for line in f.readlines()[1:]:
            try:
                info = os.stat(line.split()[0])
            except (OSError, IndexError):
                continue
            if stat.S_ISBLK(info.st_mode):
                used.add((os.major(info.st_rdev), os.minor(info.st_rdev)))
    return used


def _held(device):
    """Whether device-mapper, md or LVM holds the device."""
    try:
        with os.scandir('/sys/dev/block/%d:%d/holders' % device) as it:
            return any(True for _ in it)
    except FileNotFoundError:
        return False


def _claimed(path):
    """Whether a kernel user holds the block device exclusively."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_EXCL)
    except OSError as e:
        if e.errno == errno.EBUSY:
            return True
        raise
    os.close(fd)
    return False


def _check_volume_device(ctid, path):
    """``(major, minor)`` of the volume at ``path``, if the host spares it."""
    if not isinstance(path, str) or not path.startswith('/dev/'):
        raise privsep.ArgumentRejected('%r is not a device path' % (path,))
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except OSError as e:
        raise privsep.ArgumentRejected('%s: %s' % (path, e.strerror))
    if not real.startswith('/dev/') or not stat.S_ISBLK(info.st_mode):
        raise privsep.ArgumentRejected('%s is not a block device' % path)
    device = (os.major(info.st_rdev), os.minor(info.st_rdev))
    check_device_node('volume', *device)
    family = _disk_family(device, _block_devices())
    if family & _devices_in_use() or any(_held(d) for d in family) or \
            _claimed(real):
        raise privsep.ArgumentRejected(
            '%s (%d:%d) is in use on the host' % ((path,) + device))
    conf_dir = privsep.paths().conf_dir
    for name in os.listdir(conf_dir):
        other, _, suffix = name.partition('.')
        if suffix == 'start' and other.isdigit() and int(other) != ctid \
                and device in set(_read_nodes(os.path.join(
                    conf_dir, name)).values()):
            raise privsep.ArgumentRejected(
                '%s (%d:%d) is a volume of container %s'
                % ((path,) + device + (other,)))
    return device


def _container_paths(ctid):
    """VE_PRIVATE and VE_ROOT of a container, fit for a script."""
    host = privsep.paths()
    config = host.container_config(ctid)
    paths = []
    for key, path in (('VE_PRIVATE', host.private_dir(ctid, config)),
                      ('VE_ROOT', host.root_dir(ctid, config))):
        if not privsep.SCRIPT_PATH_RE.match(path) or path == '/':
            raise privsep.ArgumentRejected(
                '%s of CT %d is not a plain absolute path: %r'
                % (key, ctid, path))
        paths.append(path)
    return paths


@privsep.vz_pctxt.entrypoint
def make_ephemeral_disk(ctid, size_gb, fs_type, mountpoint):
    """Create a container's ephemeral disk and the scripts that mount it.

    The image is sparse, in the private area (so vzctl destroy removes it);
    mkfs labels it ``ephemeral0`` as Nova's libvirt driver does.
    """
    check_nova_ctid(ctid)
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
        # The scripts run while nothing of the guest runs (before init,
        # after stop), but the guest may have left links behind: a link
        # on the way must not send the mount to the host, and only a mount
        # the kernel lists at exactly this path is unmounted (a guest link
        # there made "mountpoint" and "umount" act on a host mount).
        steps = mountpoint.strip('/').split('/')
        no_links = ''.join(
            "[ -L '%s' ] && exit 1; " % (root + '/' + '/'.join(steps[:i]))
            for i in range(1, len(steps) + 1))
        _write_managed(_script_path(ctid, 'mount'), 'ephemeral', [
            "%smkdir -p '%s' && mount -o loop,nodev,nosuid '%s' '%s' || "
            "exit 1" % (no_links, target, image, target)])
        _write_managed(_script_path(ctid, 'umount'), 'ephemeral', [
            "if grep -qs ' %s ' /proc/mounts; then umount -n '%s' || exit 1; "
            "fi" % (target, target)])
    except BaseException:
        _remove_ephemeral_disk(ctid, image)
        raise


def _remove_ephemeral_disk(ctid, image):
    for suffix in ('mount', 'umount'):
        _write_managed(_script_path(ctid, suffix), 'ephemeral', [])
    if os.path.lexists(image):
        os.unlink(image)
