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

"""The template cache, snapshots and ploop images, on the root side.

Templates move from nova-compute's staging dir into vzctl's cache; the
helper runs ``tar`` to pack snapshots, private areas and mounted ploop
images into template tarballs, without following links nova-compute could
plant.
"""

import contextlib
import os
import re
import shutil
import stat
import subprocess

from nova_openvz import privsep
from nova_openvz.privsep import containers

CONF = privsep.CONF

_TEMPLATE_FILE_RE = re.compile(
    r'^[a-z0-9][a-z0-9._-]*\.tar(\.gz|\.bz2|\.xz)?\Z')


@privsep.vz_pctxt.entrypoint
def install_template(source, filename):
    """Move a downloaded template from the staging dir into the cache.

    nova-compute owns the staging dir and could swap the file for a link
    at any moment, so nothing is checked by path: the file is opened once,
    relative to the staging dir, without following links, and copied from
    that descriptor into a new file in the cache, which appears under its
    name only once complete.
    """
    if not _TEMPLATE_FILE_RE.match(filename or ''):
        raise privsep.ArgumentRejected(
            'bad template file name %r' % (filename,))
    staging_dir = os.path.normpath(CONF.openvz.image_staging_dir)
    name = os.path.basename(source or '')
    if os.path.join(staging_dir, name) != os.path.normpath(source or '') \
            or name in ('', '.', '..'):
        raise privsep.ArgumentRejected('%r is not a staged image' % (source,))
    with _dir_fd(staging_dir) as staging, \
            _dir_fd(privsep.paths().template_cache_dir) as cache:
        src = _open_staged(name, staging, source)
        try:
            _copy_into(src, cache, filename)
        finally:
            os.close(src)
        os.unlink(name, dir_fd=staging)


@contextlib.contextmanager
def _dir_fd(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def _open_staged(name, staging, source):
    """A descriptor of the regular, singly linked file ``name``."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK,
                     dir_fd=staging)
    except OSError as exc:
        raise privsep.ArgumentRejected('%r is not a staged image: %s'
                                       % (source, exc.strerror))
    info = os.fstat(fd)
    # A hard link could name a file nova-compute may not read.
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise privsep.ArgumentRejected('%r is not a staged image' % (source,))
    return fd


def _copy_into(src, cache, filename):
    partial = '.%s.partial' % filename
    try:
        os.unlink(partial, dir_fd=cache)   # a crashed attempt's
    except FileNotFoundError:
        pass
    dst = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                  os.O_NOFOLLOW, 0o644, dir_fd=cache)
    try:
        os.fchmod(dst, 0o644)
        with open(src, 'rb', closefd=False) as reader, \
                open(dst, 'wb', closefd=False) as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
        os.replace(partial, filename, src_dir_fd=cache, dst_dir_fd=cache)
    except BaseException:
        os.unlink(partial, dir_fd=cache)   # a full disk leaves nothing
        raise
    finally:
        os.close(dst)


# -- template cache upkeep and snapshots ------------------------------------

#: Templates this driver downloaded: ``[distro[-version][-arch]-]nova-<id>``;
#: only these may be aged or removed, never an operator's own templates.
_NOVA_TEMPLATE_RE = re.compile(
    r'^(?:[a-z0-9][a-z0-9._]*-)*nova-(?P<image>[0-9a-f]{8}-[0-9a-f]{4}-'
    r'[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.tar(\.gz|\.bz2|\.xz)?\Z')
#: What the helper may pack into the staging dir: a snapshot, or a ploop
#: image on its way to the template cache.
_PACK_FILE_RE = re.compile(
    r'^(snapshot|ploop)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
    r'[0-9a-f]{12}\.tar\.gz\Z')


def nova_template_image(filename):
    """The image ID in a template file name this driver made, or None."""
    match = _NOVA_TEMPLATE_RE.match(filename or '')
    return match.group('image') if match else None


def _nova_template_path(filename):
    if nova_template_image(filename) is None:
        raise privsep.ArgumentRejected(
            '%r is not a template of this driver' % (filename,))
    return os.path.join(privsep.paths().template_cache_dir, filename)


@privsep.vz_pctxt.entrypoint
def touch_template(filename):
    """Mark a cached template as in use now (its mtime), as libvirt does."""
    path = _nova_template_path(filename)
    if os.path.isfile(path) and not os.path.islink(path):
        os.utime(path)


@privsep.vz_pctxt.entrypoint
def remove_template(filename):
    """Remove a cached template of this driver; a missing one is fine."""
    path = _nova_template_path(filename)
    if os.path.lexists(path):
        os.unlink(path)


def _snapshot_uuid(guid):
    text = str(guid).strip('{}').lower()
    if not privsep.UUID_RE.match(text):
        raise privsep.ArgumentRejected('%r is not a snapshot UUID' % (guid,))
    return text


_SNAPSHOT_DIR_PREFIX = 'nova-snapshot-'


def snapshot_mount_dir(ctid, guid):
    """Where a snapshot is mounted to be packed: next to the CT roots.

    Root owns that directory (VE_ROOT's parent), so nova-compute cannot
    swap the mount point for a link to somewhere else on the host.  The
    name carries the CT ID, so deleting the container finds the mounts a
    failed snapshot left (:func:`leftover_snapshot_mounts`).
    """
    return os.path.join(privsep.paths().root_parent(), '%s%d-%s' % (
        _SNAPSHOT_DIR_PREFIX, int(ctid), _snapshot_uuid(guid)))


def check_snapshot_target(ctid, values):
    """snapshot-mount may only mount on its own snapshot's mount dir.

    :param values: ``{option: value}`` of the snapshot-mount argv.
    """
    if '--id' not in values or '--target' not in values:
        raise privsep.ArgumentRejected(
            'snapshot-mount needs --id and --target')
    if values['--target'] != snapshot_mount_dir(ctid, values['--id']):
        raise privsep.ArgumentRejected(
            'snapshot-mount target %r is not the snapshot mount directory'
            % values['--target'])


def _make_mount_dir(path):
    """Create (or reuse an empty leftover) mount dir; return its path."""
    if os.path.islink(path):
        os.unlink(path)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if os.listdir(path):
            raise privsep.ArgumentRejected('%s is in use' % path)
    return path


def _remove_mount_dir(path):
    """Remove a mount dir; refuses (EBUSY/ENOTEMPTY) while mounted."""
    if os.path.islink(path):
        os.unlink(path)
    elif os.path.isdir(path):
        os.rmdir(path)


@privsep.vz_pctxt.entrypoint
def make_snapshot_mount_dir(ctid, guid):
    """Create (or reuse an empty leftover) mount dir; return its path."""
    return _make_mount_dir(snapshot_mount_dir(ctid, guid))


@privsep.vz_pctxt.entrypoint
def remove_snapshot_mount_dir(ctid, guid):
    """Remove the mount dir; refuses (EBUSY/ENOTEMPTY) while mounted."""
    _remove_mount_dir(snapshot_mount_dir(ctid, guid))


@privsep.vz_pctxt.entrypoint
def leftover_snapshot_mounts(ctid):
    """The snapshot UUIDs whose mount dirs CT ``ctid`` still has."""
    prefix = '%s%d-' % (_SNAPSHOT_DIR_PREFIX, int(ctid))
    found = []
    for name in os.listdir(privsep.paths().root_parent()):
        guid = name[len(prefix):]
        if name.startswith(prefix) and privsep.UUID_RE.match(guid):
            found.append(guid)
    return sorted(found)


def _pack(source, filename):
    """tar+gzip ``source`` into the staging dir; tar's :data:`Result`.

    The output is opened here without following links and only if it does
    not exist, so a planted link in the staging dir gains nothing; tar
    writes to that descriptor and reads the tree with numeric owners.
    """
    if not _PACK_FILE_RE.match(filename or ''):
        raise privsep.ArgumentRejected(
            'bad file name %r to pack' % (filename,))
    if not os.path.isdir(source):
        raise privsep.ArgumentRejected('%s is not a directory' % source)
    tar = shutil.which('tar', path=privsep.TOOL_PATH)
    if tar is None:
        return privsep.Result(127, '', 'tar: not found in %s'
                              % privsep.TOOL_PATH)
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
            env={'LC_ALL': 'C', 'PATH': privsep.TOOL_PATH},
            timeout=CONF.openvz.tool_timeout, check=False)
        code, stderr = proc.returncode, proc.stderr.decode('utf-8',
                                                           'replace')
    except subprocess.TimeoutExpired:
        code, stderr = None, ''
    finally:
        os.close(fd)
    if code != 0:
        os.unlink(output)
    return privsep.Result(code, '', stderr)


@privsep.vz_pctxt.entrypoint
def pack_snapshot(ctid, guid, filename):
    """Pack the mounted snapshot ``guid`` as an OS template tarball."""
    return _pack(snapshot_mount_dir(ctid, guid), filename)


@privsep.vz_pctxt.entrypoint
def pack_private_area(ctid, filename):
    """Pack a simfs container's private area (the caller froze it)."""
    containers.check_nova_ctid(ctid)
    private = privsep.paths().private_dir(int(ctid))
    if os.path.isdir(os.path.join(private, 'root.hdd')):
        raise privsep.ArgumentRejected(
            'container %d is on ploop; pack a snapshot' % ctid)
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
PLOOP_MOUNT_PREFIX = 'nova-ploop-'


def _image_uuid(image_id):
    text = str(image_id)
    if not privsep.UUID_RE.match(text):
        raise privsep.ArgumentRejected('%r is not an image ID' % (image_id,))
    return text


def ploop_work_dir(image_id):
    """``<staging dir>/ploop-<image id>``: the image's delta and descriptor."""
    staging = os.path.abspath(CONF.openvz.image_staging_dir)
    return os.path.join(staging, _PLOOP_WORK_PREFIX + _image_uuid(image_id))


def work_image(path):
    """The image ID of a work dir path, exactly as ploop_work_dir makes it."""
    name = os.path.basename(path)
    if not name.startswith(_PLOOP_WORK_PREFIX):
        raise privsep.ArgumentRejected(
            '%r is not a ploop work directory' % (path,))
    image = name[len(_PLOOP_WORK_PREFIX):]
    if path != ploop_work_dir(image):
        raise privsep.ArgumentRejected(
            '%r is not a ploop work directory' % (path,))
    return image


def ploop_mount_dir(image_id):
    """Where a ploop image is mounted to be packed: next to the CT roots."""
    return os.path.join(privsep.paths().root_parent(),
                        PLOOP_MOUNT_PREFIX + _image_uuid(image_id))


@privsep.vz_pctxt.entrypoint
def make_ploop_mount_dir(image_id):
    """Create (or reuse an empty leftover) the image's mount dir."""
    return _make_mount_dir(ploop_mount_dir(image_id))


@privsep.vz_pctxt.entrypoint
def remove_ploop_mount_dir(image_id):
    """Remove the image's mount dir; refuses while mounted."""
    _remove_mount_dir(ploop_mount_dir(image_id))


def ploop_pack_name(image_id):
    return '%s%s.tar.gz' % (_PLOOP_WORK_PREFIX, _image_uuid(image_id))


@privsep.vz_pctxt.entrypoint
def pack_ploop_image(image_id):
    """Pack the mounted ploop image into ``<staging>/ploop-<id>.tar.gz``."""
    return _pack(ploop_mount_dir(image_id), ploop_pack_name(image_id))
