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

"""ploop images of the simulated host: descriptors, deltas, snapshots, devices.

The back end of ``ploop`` (:mod:`vzsim.cli.ploop`) and of vzctl's ploop
work, as libploop and the ploop kernel driver are for the real tools.

hostfs has no registry of ploop devices, so this module keeps one in
``DIR/var/lib/vzsim/ploop.json`` (see :func:`attach`).

The on-disk layout is ploop's own (reference 4.8, 6.3)::

  root.hdd/DiskDescriptor.xml     the descriptor, written as ploop writes it
  root.hdd/root.hdd               base delta: a sparse file of the disk size
  root.hdd/root.hdd.{uuid}        deltas added by snapshots
  root.hdd/DiskDescriptor.xml.lck lock file of descriptor updates
  root.hdd/.statfs                cached filesystem usage (JSON here)

With the modelled kernel there are no block devices, so the *contents*
of the filesystem inside an image are modelled by plain directories next to
it:
``root.hdd/.vzsim/fs`` is the live filesystem (what a mount shows; see
:func:`content_dir`) and ``root.hdd/.vzsim/{guid}`` is the frozen copy taken
by the snapshot of that GUID.  Filesystem statistics are measured on the
live directory (``ploop info``) or read from ``.statfs`` (vzlist
``diskspace``; see :func:`image_fs_stats`).

With the real kernel (``create_image(..., filesystem=True)``) every delta
file is a real ext4 filesystem image, told apart by its superblock (see
:func:`is_filesystem_image`).  There is no ploop driver on a stock kernel,
so deltas are not differences but complete point-in-time images: the top
delta is the live disk, loop-mounted on VE_ROOT; a snapshot is a sparse
copy of it taken while the filesystem is frozen (fsfreeze) and stored as
the snapshot's delta ``root.hdd.{uuid}``.  Switching copies a snapshot's
image over the top delta; deleting or merging a snapshot drops its file.
Resizing grows or shrinks the ext4 filesystem with resize2fs, online (on
the loop device) when growing a mounted image.

Library API (vzctl uses these; every failure raises :class:`PloopError`,
a :class:`hostfs.ToolError` carrying ploop's exit code and message; ``log``
arguments take a callable that receives ploop's informational lines):

* ``create_image(directory, size_kb, fmt='expanded', ...)`` -- a new image
  and descriptor in ``directory``; returns a :class:`Descriptor`.
* ``read_descriptor(path)`` -- parse ``DiskDescriptor.xml`` (or the
  directory holding it) into a :class:`Descriptor`.
* ``snapshot(descriptor, uuid=None)`` -- take a snapshot; returns its UUID.
* ``switch(descriptor, uuid, mounted=False)`` -- revert to a snapshot.
* ``delete(descriptor, uuid, mounted=False)`` -- delete a snapshot (merging
  it into its child when it has one).
* ``merge(descriptor, uuid=None, merge_all=False)`` -- merge a delta into
  its parent.
* ``list_snapshots(descriptor)`` -- the snapshot tree as
  :class:`SnapshotInfo` records.
* ``resize(descriptor, size_kb)`` -- grow or shrink the disk.
* ``content_dir(descriptor)`` / ``fs_stats(descriptor)`` /
  ``image_fs_stats(image_dir)`` -- the modelled filesystem and its usage.
* ``normalize_guid(text)`` -- ``{uuid}`` form of a UUID, or None.
* ``attach(host, path, target)`` / ``detach(host, path)`` /
  ``device_of(host, path)`` / ``devices(host)`` -- the simulated ploop
  devices (vzctl mount/umount of a ploop CT use them).
* ``owner_ctid(host, path)`` -- the container a descriptor belongs to.
* ``restore_descriptor(directory, delta, fmt='ploop1')`` -- write a new
  ``DiskDescriptor.xml`` for a lone base delta (``ploop
  restore-descriptor``).  A real delta carries its ext4 filesystem; a
  modelled delta carries no files (they live next to it, above), so one
  restored away from its directory shows an empty filesystem.
"""


import collections
import errno
import fcntl
import json
import os
import re
import shutil
import uuid as uuid_module
import xml.etree.ElementTree as ElementTree

from vzsim import hostfs

TOPDELTA_UUID = '{5fbaabe3-6958-40ff-92a7-860e329aab41}'
NONE_UUID = '{00000000-0000-0000-0000-000000000000}'
DESCRIPTOR_NAME = 'DiskDescriptor.xml'
BASE_IMAGE_NAME = 'root.hdd'
SECTOR_SIZE = 512
#: Default cluster size in sectors (1 MiB).
DEFAULT_BLOCKSIZE = 2048
#: 128 images per device, minus the base and one reserved.
MAX_SNAPSHOTS = 126
FORMATS = ('raw', 'ploop1', 'expanded', 'preallocated')
#: Where the modelled filesystem contents live, inside the image directory.
CONTENT_DIR = '.vzsim'
LIVE_TREE = 'fs'
#: ext4 as mkfs makes it for ploop: one inode per 16 KiB.
BYTES_PER_INODE = 16384

# Exit codes (reference 6.2).
SYSEXIT_OPEN = 4
SYSEXIT_PLOOPFMT = 11
SYSEXIT_MOUNT = 21
SYSEXIT_RESIZE_FS = 26
SYSEXIT_DEV_INUSE = 37
SYSEXIT_PARAM = 38
SYSEXIT_DISKDESCR = 39
SYSEXIT_DEV_NOT_MOUNTED = 40
SYSEXIT_NOSNAP = 43

_GUID_RE = re.compile(r'^\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-'
                      r'[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}$')


class PloopError(hostfs.ToolError):
    """A ploop failure: ``code`` is ploop's exit code."""


Image = collections.namedtuple('Image', 'guid file')
Shot = collections.namedtuple('Shot', 'guid parent')
SnapshotInfo = collections.namedtuple(
    'SnapshotInfo', 'guid parent_guid file current')
FsStats = collections.namedtuple(
    'FsStats', 'total_kb used_kb inodes inodes_used')


def _quiet(message):
    pass


def normalize_guid(text):
    """``{uuid}`` form of ``text`` (braces added if missing), else None."""
    if text and len(text) == 36 and not text.startswith('{'):
        text = '{%s}' % text
    return text if text and _GUID_RE.match(text) else None


def new_guid():
    return '{%s}' % uuid_module.uuid4()


def _chs(size):
    """Cylinders, heads of a disk of ``size`` sectors, as ploop computes.

    Disks between 504 MB and 8 GB get the classic 16 heads x 63 sectors;
    others the largest sectors/heads that divide the size, else pure LBA.
    """
    if 1032192 < size < 16777216:
        return size // (63 * 16), 16
    sectors = next((n for n in (63, 32, 16, 8) if size % n == 0), None)
    if sectors is None:
        return size, 1
    rest = size // sectors
    heads = next((n for n in (16, 8, 4, 2) if rest % n == 0), None)
    if heads is None:
        return size, 1
    return rest // heads, heads


class Descriptor:
    """A parsed ``DiskDescriptor.xml``.

    ``size`` and ``blocksize`` are in 512-byte sectors; ``images`` holds
    :class:`Image` (GUID, file name relative to the descriptor's directory)
    and ``shots`` holds :class:`Shot` (GUID, parent GUID), both in file
    order; ``top_guid`` is the writable delta's GUID (always TOPDELTA).
    """

    def __init__(self, path, size, blocksize=DEFAULT_BLOCKSIZE,
                 mode='expanded', images=(), shots=(),
                 top_guid=TOPDELTA_UUID):
        self.path = os.path.abspath(path)
        self.size = size
        self.blocksize = blocksize
        self.mode = mode
        self.images = list(images)
        self.shots = list(shots)
        self.top_guid = top_guid

    @property
    def directory(self):
        return os.path.dirname(self.path)

    @property
    def size_kb(self):
        return self.size * SECTOR_SIZE // 1024

    def image_path(self, guid):
        """Absolute path of the delta of ``guid`` (None when unknown)."""
        for image in self.images:
            if image.guid == guid:
                return os.path.join(self.directory, image.file)
        return None

    def shot(self, guid):
        return next((s for s in self.shots if s.guid == guid), None)

    def children(self, guid):
        return [s for s in self.shots if s.parent == guid]

    def chain(self, guid):
        """GUIDs from ``guid`` down to the base, ``guid`` first."""
        found = []
        while guid != NONE_UUID:
            shot = self.shot(guid)
            if shot is None or guid in found:
                raise PloopError(SYSEXIT_DISKDESCR,
                                 'Inconsistency detected, base image not '
                                 'found')
            found.append(guid)
            guid = shot.parent
        return found

    def rename_guid(self, old, new):
        """Give the image and snapshot of ``old`` the GUID ``new``."""
        self.images = [i._replace(guid=new) if i.guid == old else i
                       for i in self.images]
        self.shots = [s._replace(guid=new) if s.guid == old else
                      s._replace(parent=new) if s.parent == old else s
                      for s in self.shots]

    def remove(self, guid):
        """Drop the image and snapshot of ``guid``; return the file path."""
        path = self.image_path(guid)
        self.images = [i for i in self.images if i.guid != guid]
        self.shots = [s for s in self.shots if s.guid != guid]
        return path

    def to_xml(self):
        """The descriptor text, laid out as libxml2 formats ploop's."""
        cylinders, heads = _chs(self.size)
        sectors = self.size // (cylinders * heads)
        lines = ['<?xml version="1.0"?>', '<Parallels_disk_image>',
                 '  <Disk_Parameters>',
                 '    <Disk_size>%d</Disk_size>' % self.size,
                 '    <Cylinders>%d</Cylinders>' % cylinders,
                 '    <Heads>%d</Heads>' % heads,
                 '    <Sectors>%d</Sectors>' % sectors,
                 '    <Padding>0</Padding>',
                 '  </Disk_Parameters>',
                 '  <StorageData>',
                 '    <Storage>',
                 '      <Start>0</Start>',
                 '      <End>%d</End>' % self.size,
                 '      <Blocksize>%d</Blocksize>' % self.blocksize]
        if self.mode == 'preallocated':
            lines.append('      <Preallocated>1</Preallocated>')
        image_type = 'Plain' if self.mode == 'raw' else 'Compressed'
        for image in self.images:
            lines += ['      <Image>',
                      '        <GUID>%s</GUID>' % image.guid,
                      '        <Type>%s</Type>' % image_type,
                      '        <File>%s</File>' % image.file,
                      '      </Image>']
        lines += ['    </Storage>', '  </StorageData>', '  <Snapshots>',
                  '    <TopGUID>%s</TopGUID>' % self.top_guid]
        for shot in self.shots:
            lines += ['    <Shot>',
                      '      <GUID>%s</GUID>' % shot.guid,
                      '      <ParentGUID>%s</ParentGUID>' % shot.parent,
                      '    </Shot>']
        lines += ['  </Snapshots>', '</Parallels_disk_image>']
        return '\n'.join(lines) + '\n'

    def save(self, log=_quiet):
        """Write the descriptor atomically (``Storing ...``, as ploop)."""
        log('Storing %s' % self.path)
        hostfs.write_atomic(self.path, self.to_xml())


def _descriptor_path(path):
    if os.path.isdir(path):
        return os.path.join(path, DESCRIPTOR_NAME)
    return path


def _text(element, tag, default=None):
    node = element.find(tag)
    if node is None or node.text is None:
        return default
    return node.text.strip()


def read_descriptor(path):
    """Parse ``path`` (a DiskDescriptor.xml or its directory).

    :raises PloopError: 39 when it is missing, unreadable or inconsistent.
    """
    path = _descriptor_path(path)
    try:
        root = ElementTree.parse(path).getroot()
        size = int(_text(root, 'Disk_Parameters/Disk_size'))
        storage = root.find('StorageData/Storage')
        blocksize = int(_text(storage, 'Blocksize', DEFAULT_BLOCKSIZE))
        images = [Image(_text(node, 'GUID'), _text(node, 'File'))
                  for node in storage.findall('Image')]
        shots = [Shot(_text(node, 'GUID'), _text(node, 'ParentGUID'))
                 for node in root.findall('Snapshots/Shot')]
        top_guid = _text(root, 'Snapshots/TopGUID')
        plain = any(_text(node, 'Type') == 'Plain'
                    for node in storage.findall('Image'))
        preallocated = _text(storage, 'Preallocated') == '1'
    except (OSError, ElementTree.ParseError, AttributeError, TypeError,
            ValueError) as exc:
        raise PloopError(SYSEXIT_DISKDESCR,
                         "Can't parse %s: %s" % (path, exc))
    mode = 'raw' if plain else 'preallocated' if preallocated else 'expanded'
    descriptor = Descriptor(path, size, blocksize, mode, images, shots,
                            top_guid)
    if (not images or len(images) != len(shots) or
            top_guid is None or descriptor.shot(top_guid) is None or
            any(descriptor.image_path(s.guid) is None for s in shots)):
        raise PloopError(SYSEXIT_DISKDESCR,
                         'Invalid disk descriptor %s: images and snapshots '
                         'do not match' % path)
    return descriptor


def _allocate(path, size_bytes):
    """Create a delta file: sparse, of the virtual disk's size."""
    with open(path, 'xb') as f:
        f.truncate(size_bytes)


def _round_size(sectors, blocksize):
    """``sectors`` rounded up to whole clusters, as ploop sizes a disk."""
    return -(-int(sectors) // blocksize) * blocksize


def create_image(directory, size_kb, fmt='expanded', image=BASE_IMAGE_NAME,
                 blocksize=DEFAULT_BLOCKSIZE, log=_quiet, filesystem=False):
    """Create ``directory/image`` and ``directory/DiskDescriptor.xml``.

    ``size_kb`` is the virtual disk size in KiB (rounded up to whole
    clusters of ``blocksize`` sectors); ``fmt`` is ``expanded`` (alias
    ``ploop1``), ``preallocated`` or ``raw``.  ``directory`` is created
    (mode 0700) when missing.  With ``filesystem`` the image holds a real
    ext4 filesystem (mkfs.ext4); otherwise the empty modelled filesystem
    (:func:`content_dir`) is created.  Returns the new :class:`Descriptor`.

    :raises PloopError: 38 for a bad size or format, or when the image or
        the descriptor already exists.
    """
    return create_image_sectors(directory, int(size_kb) * 2, fmt, image,
                                blocksize, log, filesystem=filesystem)


def create_image_sectors(directory, sectors, fmt, image, blocksize, log,
                         version=2, filesystem=False):
    if fmt == 'ploop1':
        fmt = 'expanded'
    if fmt not in FORMATS:
        raise PloopError(SYSEXIT_PARAM, 'Bad -f argument: %s' % fmt)
    size = _round_size(sectors, blocksize)
    if size == 0:
        raise PloopError(SYSEXIT_PARAM, 'Incorrect block device size '
                                        'specified: 0 sectors')
    os.makedirs(directory, 0o700, exist_ok=True)
    descriptor = Descriptor(os.path.join(directory, DESCRIPTOR_NAME), size,
                            blocksize, fmt, [Image(TOPDELTA_UUID, image)],
                            [Shot(TOPDELTA_UUID, NONE_UUID)])
    image_path = os.path.join(directory, image)
    for existing in (image_path, descriptor.path):
        if os.path.exists(existing):
            raise PloopError(SYSEXIT_PARAM, "Can't create %s: File exists"
                             % existing)
    log('Creating delta %s bs=%d size=%d sectors v%d'
        % (image_path, blocksize, size, version))
    _allocate(image_path, size * SECTOR_SIZE)
    if filesystem:
        try:
            _tool(SYSEXIT_MKFS, 'mkfs.ext4', '-q', '-F', image_path)
        except PloopError:
            os.unlink(image_path)
            raise
    else:
        os.makedirs(content_dir(descriptor), 0o755, exist_ok=True)
    descriptor.save(log)
    return descriptor


#: How much of a modelled delta must be zeros: its header cluster.  A
#: delta made by :func:`create_image` is sparse, so that part reads zero.
_MODELLED_HEADER = 64 * 1024


def _check_delta(path, raw, blocksize):
    """Size in sectors of the lone delta ``path``, if it is one.

    A real delta holds ext4 from its first byte; a modelled one is sparse
    and starts with zeros.  A ploop1 delta is whole clusters long.

    :raises PloopError: 4 when it cannot be opened, 11 when it is not a
        delta of this host (the header or size is wrong).
    """
    try:
        with open(path, 'rb') as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_MODELLED_HEADER)
    except OSError as exc:
        raise PloopError(SYSEXIT_OPEN, "Can't open %s: %s"
                         % (path, exc.strerror))
    if raw:
        if size == 0 or size % SECTOR_SIZE:
            raise PloopError(SYSEXIT_PLOOPFMT, 'Invalid raw image %s: its '
                             'size %d is not whole sectors' % (path, size))
        return size // SECTOR_SIZE
    if not (is_filesystem_image(path) or head.count(0) == len(head)):
        raise PloopError(SYSEXIT_PLOOPFMT, 'Invalid image header in %s: '
                         'not a ploop1 delta' % path)
    cluster = blocksize * SECTOR_SIZE
    if size == 0 or size % cluster:
        raise PloopError(SYSEXIT_PLOOPFMT, 'Invalid ploop1 delta %s: its '
                         'size %d is not whole %d-byte clusters'
                         % (path, size, cluster))
    return size // SECTOR_SIZE


def restore_descriptor(directory, delta, fmt='ploop1',
                       blocksize=DEFAULT_BLOCKSIZE, log=_quiet):
    """Write ``directory/DiskDescriptor.xml`` for the base delta ``delta``.

    The new descriptor has the one image (TOPDELTA, no parent) and the
    disk size the delta has; its ``File`` is relative when the delta is in
    ``directory``.  Returns the :class:`Descriptor`.

    :raises PloopError: 38 for a bad format or an existing descriptor; 4
        or 11 for an unusable delta (:func:`_check_delta`); 39 when the
        descriptor cannot be written.
    """
    if fmt not in FORMATS:
        raise PloopError(SYSEXIT_PARAM, 'Bad -f argument: %s' % fmt)
    raw = fmt == 'raw'
    directory = os.path.abspath(directory)
    path = os.path.join(directory, DESCRIPTOR_NAME)
    if os.path.lexists(path):
        raise PloopError(SYSEXIT_PARAM, 'Unable to restore %s: the file '
                         'exists' % path)
    delta = os.path.abspath(delta)
    size = _check_delta(delta, raw, blocksize)
    name = (os.path.basename(delta) if os.path.dirname(delta) == directory
            else delta)
    descriptor = Descriptor(path, size, blocksize,
                            'raw' if raw else 'expanded',
                            [Image(TOPDELTA_UUID, name)],
                            [Shot(TOPDELTA_UUID, NONE_UUID)])
    try:
        if not os.path.isdir(directory):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        if not is_filesystem_image(delta):
            # The modelled filesystem of a delta away from its own
            # directory: empty, as the delta carries no files.
            os.makedirs(content_dir(descriptor), 0o755, exist_ok=True)
        descriptor.save(log)
    except OSError as exc:
        raise PloopError(SYSEXIT_DISKDESCR, "Can't write %s: %s"
                         % (path, exc.strerror))
    return descriptor


# -- real filesystem images -----------------------------------------------

#: Where ext2/3/4 keep their magic number 0xEF53 (little-endian).
_EXT_MAGIC_OFFSET = 1024 + 56
SYSEXIT_MKFS = 24
SYSEXIT_FSCK = 29


def is_filesystem_image(path):
    """True when ``path`` holds an ext2/3/4 filesystem (a real image)."""
    try:
        with open(path, 'rb') as f:
            f.seek(_EXT_MAGIC_OFFSET)
            return f.read(2) == b'\x53\xef'
    except OSError:
        return False


def _is_real(descriptor):
    return is_filesystem_image(descriptor.image_path(descriptor.top_guid))


def _tool(code, *argv):
    """Run a filesystem tool; a failure raises PloopError(code)."""
    import subprocess
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise PloopError(code, '%s: %s' % (' '.join(argv), (
            proc.stderr or proc.stdout).strip() or
            'exit code %d' % proc.returncode))
    return proc.stdout


def _copy_image(source, destination):
    """Sparse (or reflinked) copy of an image, replacing ``destination``."""
    tmp = destination + '.tmp'
    _tool(SYSEXIT_PARAM, 'cp', '--sparse=always', '--reflink=auto', source,
          tmp)
    os.replace(tmp, destination)


def loop_of(image):
    """The loop device backing ``image`` and its mount point, or Nones."""
    real = os.path.realpath(image)
    for name in os.listdir('/sys/block'):
        try:
            with open('/sys/block/%s/loop/backing_file' % name) as f:
                if f.read().strip() != real:
                    continue
        except OSError:
            continue
        device = '/dev/' + name
        with open('/proc/self/mountinfo') as f:
            for line in f:
                fields = line.split()
                if fields[fields.index('-') + 2] == device:
                    return device, fields[4]
        return device, None
    return None, None


def _frozen_fs(image):
    """Context: the filesystem of a mounted ``image`` frozen (fsfreeze)."""
    import contextlib

    @contextlib.contextmanager
    def frozen():
        mount_point = loop_of(image)[1]
        if mount_point:
            _tool(SYSEXIT_PARAM, 'fsfreeze', '--freeze', mount_point)
        try:
            yield
        finally:
            if mount_point:
                _tool(SYSEXIT_PARAM, 'fsfreeze', '--unfreeze', mount_point)
    return frozen()


def _real_usage(image):
    """``(used KiB, inodes used)`` of a real image, mounted or not."""
    mount_point = loop_of(image)[1]
    if mount_point:
        st = os.statvfs(mount_point)
        return ((st.f_blocks - st.f_bfree) * st.f_frsize // 1024,
                st.f_files - st.f_ffree)
    fields = {}
    for line in _tool(SYSEXIT_PARAM, 'dumpe2fs', '-h', image).splitlines():
        key, _, value = line.partition(':')
        fields[key.strip()] = value.strip()
    block = int(fields['Block size'])
    used = int(fields['Block count']) - int(fields['Free blocks'])
    return (used * block // 1024,
            int(fields['Inode count']) - int(fields['Free inodes']))


#: The capability online ext4 growth (EXT4_IOC_RESIZE_FS) needs.
CAP_SYS_RESOURCE = 24


def can_resize_online():
    """True when this process may grow a mounted ext4 filesystem."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('CapEff:'):
                return bool(int(line.split()[1], 16) >>
                            CAP_SYS_RESOURCE & 1)
    return False


def _real_resize(descriptor, size):
    """Grow (online when mounted) or shrink (offline) a real image."""
    image = descriptor.image_path(descriptor.top_guid)
    device, mount_point = loop_of(image)
    if device and size < descriptor.size:
        raise PloopError(SYSEXIT_RESIZE_FS, 'Unable to shrink %s online: '
                                            'unmount it first' % image)
    if device:
        if not can_resize_online():
            raise PloopError(SYSEXIT_RESIZE_FS, (
                'Unable to grow %s online: resize2fs needs CAP_SYS_RESOURCE,'
                ' which this host lacks; stop the container first' % image))
        with open(image, 'r+b') as f:
            f.truncate(size * SECTOR_SIZE)
        _tool(SYSEXIT_RESIZE_FS, 'losetup', '--set-capacity', device)
        _tool(SYSEXIT_RESIZE_FS, 'resize2fs', device)
        return
    _tool(SYSEXIT_FSCK, 'e2fsck', '-f', '-p', image)
    if size > descriptor.size:
        with open(image, 'r+b') as f:
            f.truncate(size * SECTOR_SIZE)
    _tool(SYSEXIT_RESIZE_FS, 'resize2fs', image,
          '%dK' % (size * SECTOR_SIZE // 1024))
    with open(image, 'r+b') as f:
        f.truncate(size * SECTOR_SIZE)


# -- the modelled filesystem ----------------------------------------------

def _trees_dir(descriptor):
    return os.path.join(descriptor.directory, CONTENT_DIR)


def content_dir(descriptor):
    """Directory holding the files of the image's live filesystem.

    This is what mounting the image shows: vzctl unpacks a template into
    it and mounts it on VE_ROOT.  ``descriptor`` may be a
    :class:`Descriptor` or the path of the image directory.
    """
    directory = getattr(descriptor, 'directory', descriptor)
    return os.path.join(directory, CONTENT_DIR, LIVE_TREE)


def _frozen_dir(descriptor, guid):
    return os.path.join(_trees_dir(descriptor), guid)


def mount_source(descriptor, guid=None):
    """What mounting the image (or snapshot ``guid``) shows.

    The delta file itself for a real image (a loop mount of its ext4),
    else the directory of the modelled filesystem.  ``descriptor`` may be
    a :class:`Descriptor` or the image directory.
    """
    if not isinstance(descriptor, Descriptor):
        descriptor = read_descriptor(descriptor)
    if _is_real(descriptor):
        return descriptor.image_path(guid or descriptor.top_guid)
    return content_dir(descriptor) if guid is None else \
        _frozen_dir(descriptor, guid)


def _copy_tree(source, destination):
    if os.path.isdir(source):
        shutil.copytree(source, destination, symlinks=True)
    else:
        os.makedirs(destination)


def _drop_tree(path):
    shutil.rmtree(path, ignore_errors=True)


def fs_stats(descriptor):
    """:class:`FsStats` of the modelled ext4 inside the image, measured now.

    The filesystem spans the whole virtual disk; used space is the size of
    the files in :func:`content_dir` rounded up to 4 KiB blocks, plus one
    block per directory, and every entry takes an inode.  The measure is
    kept in ``.statfs`` for :func:`image_fs_stats`.
    """
    used = _measure(descriptor.directory)
    return _stats(descriptor.size, *used)


_DISK_SIZE_RE = re.compile(r'<Disk_size>\s*([0-9]+)\s*</Disk_size>')
#: ploop's cache of filesystem statistics, next to the images.
STATFS_NAME = '.statfs'


def image_fs_stats(image_dir):
    """:class:`FsStats` of the image in ``image_dir``, cheaply; or None.

    vzlist calls this for every ploop container it lists, so it reads only
    the disk size from the descriptor and takes the usage from the
    ``.statfs`` cache, as ploop does for an unmounted image.  The cache is
    refreshed whenever the simulator mounts, unmounts or replaces the
    filesystem (snapshot switch or delete) and by ``ploop info``; without
    a cache the filesystem is measured (not cached: vzlist never writes).
    Files written inside a running container count from the next refresh.
    """
    try:
        with open(os.path.join(image_dir, DESCRIPTOR_NAME),
                  encoding='utf-8') as f:
            match = _DISK_SIZE_RE.search(f.read())
    except OSError:
        return None
    if not match:
        return None
    try:
        with open(os.path.join(image_dir, STATFS_NAME)) as f:
            used = json.load(f)
        used = (int(used['used_kb']), int(used['inodes_used']))
    except (OSError, ValueError, KeyError, TypeError):
        used = _measure(image_dir, store=False)
    return _stats(int(match.group(1)), *used)


def _stats(size, used_kb, inodes_used):
    total_kb = size * SECTOR_SIZE // 1024
    return FsStats(total_kb, min(used_kb, total_kb),
                   size * SECTOR_SIZE // BYTES_PER_INODE, inodes_used)


def _measure(image_dir, store=True):
    """Walk the live filesystem: ``(used KiB, inodes used)``.

    With ``store`` the result goes to the ``.statfs`` cache.
    """
    try:
        descriptor = read_descriptor(image_dir)
    except PloopError:
        descriptor = None
    if descriptor is not None and _is_real(descriptor):
        used = _real_usage(descriptor.image_path(descriptor.top_guid))
        if store:
            _store_usage(image_dir, used)
        return used
    used_blocks = 0
    entries = 0
    pending = [content_dir(image_dir)]
    while pending:
        try:
            scanner = os.scandir(pending.pop())
        except OSError:
            continue
        with scanner:
            for entry in scanner:
                entries += 1
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                    used_blocks += 1
                else:
                    size_bytes = entry.stat(follow_symlinks=False).st_size
                    used_blocks += -(-size_bytes // 4096)
    used = (used_blocks * 4, entries + 1)
    if store:
        _store_usage(image_dir, used)
    return used


def _store_usage(image_dir, used):
    try:
        hostfs.write_atomic(os.path.join(image_dir, STATFS_NAME), json.dumps(
            {'used_kb': used[0], 'inodes_used': used[1]}))
    except OSError:
        pass   # a read-only image still reports its usage


# -- snapshots ------------------------------------------------------------

class _DescriptorLock:
    """ploop's lock of a descriptor: ``DiskDescriptor.xml.lck``.

    Taking it reloads ``descriptor`` from disk, so that a change made by
    another process meanwhile is not lost.
    """

    def __init__(self, descriptor):
        self.descriptor = descriptor
        self.path = descriptor.path + '.lck'
        self.file = None

    def __enter__(self):
        self.file = open(self.path, 'a')
        fcntl.flock(self.file, fcntl.LOCK_EX)
        try:
            current = read_descriptor(self.descriptor.path)
        except PloopError:
            self.file.close()
            raise
        self.descriptor.__dict__.update(current.__dict__)
        return self

    def __exit__(self, *exc):
        self.file.close()


def _new_delta(descriptor, parent, log):
    """Add an empty top delta ``<base file>.{uuid}`` on top of ``parent``."""
    name = '%s.%s' % (descriptor.images[0].file, new_guid())
    path = os.path.join(descriptor.directory, name)
    log('Creating delta %s bs=%d size=%d sectors v2'
        % (path, descriptor.blocksize, descriptor.size))
    _allocate(path, descriptor.size * SECTOR_SIZE)
    descriptor.images.append(Image(TOPDELTA_UUID, name))
    descriptor.shots.append(Shot(TOPDELTA_UUID, parent))
    descriptor.top_guid = TOPDELTA_UUID


def _unlink(path, log):
    log('Removing %s' % path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def require_snapshot(descriptor, guid):
    if descriptor.shot(guid) is None:
        raise PloopError(SYSEXIT_NOSNAP,
                         "Can't find snapshot by uuid %s" % guid)


def snapshot(descriptor, uuid=None, log=_quiet):
    """Take a snapshot; return its GUID.

    As ploop does: the current top delta becomes the read-only snapshot
    ``uuid`` (generated when None) and a new empty top delta
    ``<base file>.{another uuid}`` with GUID TOPDELTA, child of the
    snapshot, takes the writes.  The live modelled filesystem is copied as
    the snapshot's frozen state.  Works mounted or not.

    :raises PloopError: 38 for a malformed or existing UUID, or when the
        snapshot limit is reached.
    """
    if uuid is not None and not _GUID_RE.match(uuid):
        raise PloopError(SYSEXIT_PARAM, 'Incorrect guid %s' % uuid)
    with _DescriptorLock(descriptor):
        if uuid is not None and descriptor.shot(uuid) is not None:
            raise PloopError(SYSEXIT_PARAM,
                             'The snapshot %s already exist' % uuid)
        depth = len(descriptor.chain(descriptor.top_guid))
        if depth > MAX_SNAPSHOTS:
            raise PloopError(SYSEXIT_PARAM, (
                'Unable to create a snapshot. The maximum number of '
                'snapshots (%d) has been reached' % (depth - 1)))
        guid = uuid or new_guid()
        if _is_real(descriptor):
            _real_snapshot(descriptor, guid, log)
        else:
            descriptor.rename_guid(descriptor.top_guid, guid)
            _new_delta(descriptor, guid, log)
            _copy_tree(content_dir(descriptor), _frozen_dir(descriptor, guid))
        descriptor.save(log)
    log('ploop snapshot %s has been successfully created' % guid)
    return guid


def _real_snapshot(descriptor, guid, log):
    """The top's image is copied to the snapshot's delta, under it."""
    top = descriptor.shot(descriptor.top_guid)
    name = '%s.%s' % (descriptor.images[0].file, guid)
    path = os.path.join(descriptor.directory, name)
    log('Creating delta %s bs=%d size=%d sectors v2'
        % (path, descriptor.blocksize, descriptor.size))
    live = descriptor.image_path(descriptor.top_guid)
    with _frozen_fs(live):
        _copy_image(live, path)
    descriptor.images.append(Image(guid, name))
    descriptor.shots = [s for s in descriptor.shots
                        if s.guid != top.guid] + [
        Shot(guid, top.parent), top._replace(parent=guid)]


def switch(descriptor, uuid, mounted=False, log=_quiet):
    """Revert the disk to snapshot ``uuid``; the current state is lost.

    The top delta is removed and a new empty one is created on top of
    ``uuid``, which stays a snapshot; the live filesystem becomes a copy of
    the snapshot's.  Only for an unmounted image: ``mounted`` is false or
    names the device (or mount point) holding the image.

    :raises PloopError: 43 for an unknown snapshot; 38 for the current top
        or a mounted image.
    """
    with _DescriptorLock(descriptor):
        if uuid == descriptor.top_guid:
            raise PloopError(SYSEXIT_PARAM,
                             'Nothing to do, already on %s snapshot' % uuid)
        require_snapshot(descriptor, uuid)
        if mounted:
            raise PloopError(SYSEXIT_PARAM, (
                'Unable to perform switch to snapshot operation on running '
                'device (%s)' % mounted))
        if _is_real(descriptor):
            top = descriptor.image_path(descriptor.top_guid)
            log('Copying %s to %s' % (descriptor.image_path(uuid), top))
            _copy_image(descriptor.image_path(uuid), top)
            descriptor.shots = [s._replace(parent=uuid)
                                if s.guid == descriptor.top_guid else s
                                for s in descriptor.shots]
            old_top = None
        else:
            old_top = descriptor.remove(descriptor.top_guid)
            _new_delta(descriptor, uuid, log)
            live = content_dir(descriptor)
            _drop_tree(live)
            _copy_tree(_frozen_dir(descriptor, uuid), live)
        _measure(descriptor.directory)
        descriptor.save(log)
        if old_top:
            _unlink(old_top, log)
    log('ploop snapshot has been successfully switched')


def _merge_into_parent(descriptor, guid, log):
    """Merge delta ``guid`` into its parent's file, as ploop merges.

    The parent's image and snapshot entries take ``guid`` (so the merged
    state keeps its identity and children), the delta file of ``guid`` is
    removed, and the parent's frozen state is dropped.
    """
    parent = descriptor.shot(guid).parent
    if parent == NONE_UUID:
        raise PloopError(SYSEXIT_PARAM, 'Unable to merge image %s: it is a '
                                        'base image' % guid)
    siblings = len(descriptor.children(parent))
    if siblings > 1:
        raise PloopError(SYSEXIT_PARAM, 'Unable to merge snapshot %s: it has '
                                        '%d children' % (parent, siblings))
    if _is_real(descriptor):
        # Complete images: the child already holds the merged state.
        grandparent = descriptor.shot(parent).parent
        merged = descriptor.remove(parent)
        log('Merging image: %s' % descriptor.image_path(guid))
        descriptor.shots = [s._replace(parent=grandparent) if s.guid == guid
                            else s for s in descriptor.shots]
        return merged
    merged = descriptor.remove(guid)
    log('Merging image: %s' % merged)
    descriptor.rename_guid(parent, guid)
    _drop_tree(_frozen_dir(descriptor, parent))
    return merged


def delete(descriptor, uuid, mounted=False, log=_quiet):
    """Delete snapshot ``uuid`` as ``ploop snapshot-delete`` does.

    A snapshot without children loses its delta (deleting the top delta
    makes its parent the top again); one with a single child is merged
    into that child, which keeps its GUID; more children are refused.  The
    base image, and the top delta of a mounted image, cannot be deleted.

    :raises PloopError: 43 for an unknown snapshot, 38 when refused.
    """
    with _DescriptorLock(descriptor):
        require_snapshot(descriptor, uuid)
        if mounted and uuid == descriptor.top_guid:
            raise PloopError(SYSEXIT_PARAM, 'Unable to delete active '
                                            'snapshot %s' % uuid)
        children = descriptor.children(uuid)
        if len(children) > 1:
            raise PloopError(SYSEXIT_PARAM, (
                'Unable to delete snapshot %s: it has %d children'
                % (uuid, len(children))))
        if children:
            removed = _merge_into_parent(descriptor, children[0].guid, log)
        else:
            parent = descriptor.shot(uuid).parent
            if parent == NONE_UUID:
                raise PloopError(SYSEXIT_PARAM, 'Unable to delete base image')
            real = _is_real(descriptor)
            removed = descriptor.remove(uuid)
            if uuid == descriptor.top_guid and real:
                descriptor.rename_guid(parent, TOPDELTA_UUID)
                _measure(descriptor.directory)
            elif uuid == descriptor.top_guid:
                # The parent becomes the writable top, with its state.
                descriptor.rename_guid(parent, TOPDELTA_UUID)
                _drop_tree(content_dir(descriptor))
                _copy_tree(_frozen_dir(descriptor, parent),
                           content_dir(descriptor))
                _drop_tree(_frozen_dir(descriptor, parent))
                _measure(descriptor.directory)
            else:
                _drop_tree(_frozen_dir(descriptor, uuid))
        descriptor.save(log)
        _unlink(removed, log)
    log('ploop snapshot %s has been successfully deleted' % uuid)


def merge(descriptor, uuid=None, merge_all=False, log=_quiet):
    """Merge delta ``uuid`` (default: the top delta) into its parent.

    With ``merge_all`` every delta from the top down is merged into the
    base image.  Works mounted or not.

    :raises PloopError: 43 for an unknown snapshot; 38 for the base image
        or a parent with several children.
    """
    with _DescriptorLock(descriptor):
        guid = uuid or descriptor.top_guid
        require_snapshot(descriptor, guid)
        removed = [_merge_into_parent(descriptor, guid, log)]
        while merge_all and descriptor.shot(guid).parent != NONE_UUID:
            removed.append(_merge_into_parent(descriptor, guid, log))
        descriptor.save(log)
        for path in removed:
            _unlink(path, log)
    log('ploop image has been successfully merged')


def list_snapshots(descriptor):
    """The snapshots in descriptor order, as :class:`SnapshotInfo`.

    ``file`` is the absolute delta path; ``current`` marks the top delta.
    """
    return [SnapshotInfo(shot.guid, shot.parent,
                         descriptor.image_path(shot.guid),
                         shot.guid == descriptor.top_guid)
            for shot in descriptor.shots]


def resize(descriptor, size_kb, log=_quiet):
    """Grow or shrink the disk to ``size_kb`` KiB (rounded to clusters).

    The top delta is resized; shrinking below the space the filesystem
    uses fails (the balloon cannot be inflated).

    :raises PloopError: 38 for a zero size, 26 when the data does not fit.
    """
    resize_sectors(descriptor, int(size_kb) * 2, log)


def resize_sectors(descriptor, sectors, log):
    size = _round_size(sectors, descriptor.blocksize)
    if size == 0:
        raise PloopError(SYSEXIT_PARAM, 'Incorrect block device size '
                                        'specified: 0 sectors')
    with _DescriptorLock(descriptor):
        used_kb = fs_stats(descriptor).used_kb
        if size * SECTOR_SIZE // 1024 < used_kb:
            raise PloopError(SYSEXIT_RESIZE_FS, (
                'Unable to resize: %d KB are in use, more than the new size '
                'of %d KB' % (used_kb, size * SECTOR_SIZE // 1024)))
        verb = 'Growing' if size >= descriptor.size else 'Shrinking'
        log('%s image %s size=%d sectors (new size=%d)'
            % (verb, descriptor.image_path(descriptor.top_guid),
               descriptor.size, size))
        if _is_real(descriptor):
            _real_resize(descriptor, size)
        else:
            with open(descriptor.image_path(descriptor.top_guid),
                      'r+b') as f:
                f.truncate(size * SECTOR_SIZE)
        descriptor.size = size
        descriptor.save(log)


# -- simulated ploop devices ----------------------------------------------

class DeviceTable:
    """``DIR/var/lib/vzsim/ploop.json``: device -> what it holds.

    Each entry is ``{"descriptor", "target", "guid", "readonly"}``; the
    table is read and written under an exclusive lock.
    """

    def __init__(self, host):
        self.path = os.path.join(host.state_dir, 'ploop.json')
        self.file = None
        self.devices = {}

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.file = open(self.path, 'a+', encoding='utf-8')
        fcntl.flock(self.file, fcntl.LOCK_EX)
        self.file.seek(0)
        text = self.file.read()
        self.devices = json.loads(text) if text.strip() else {}
        return self

    def save(self):
        self.file.seek(0)
        self.file.truncate()
        self.file.write(json.dumps(self.devices, sort_keys=True))
        self.file.flush()

    def __exit__(self, *exc):
        self.file.close()

    def find(self, descriptor_path, guid=None):
        """Device holding the image's top (or snapshot ``guid``), or None."""
        key = os.path.realpath(descriptor_path)
        return next((name for name, entry in self.devices.items()
                     if entry['descriptor'] == key and
                     entry['guid'] == guid), None)

    def next_free(self):
        number = 0
        while 'ploop%d' % number in self.devices:
            number += 1
        return number


def attach(host, descriptor_path, target=None, guid=None, readonly=False,
           device=None):
    """Register ``descriptor_path`` on a free simulated ploop device.

    ``target`` is the mount point (None: device only), ``guid`` the
    snapshot mounted (None: the top delta; a snapshot can be mounted
    read-only while the top is in use).  Returns the device, e.g.
    ``/dev/ploop0``.

    :raises PloopError: 37 when the image or the device is in use.
    """
    with DeviceTable(host) as table:
        used = table.find(descriptor_path, guid)
        if used:
            raise PloopError(SYSEXIT_DEV_INUSE, 'Image %s already used by '
                             'device /dev/%s' % (descriptor_path, used))
        name = (os.path.basename(device) if device else
                'ploop%d' % table.next_free())
        if name in table.devices:
            raise PloopError(SYSEXIT_DEV_INUSE,
                             'Device /dev/%s is busy' % name)
        table.devices[name] = {'descriptor': os.path.realpath(
            descriptor_path), 'target': target, 'guid': guid,
            'readonly': readonly}
        table.save()
    if guid is None:
        _measure(os.path.dirname(descriptor_path))
    return '/dev/' + name


def detach(host, descriptor_path=None, device=None):
    """Free the device of ``descriptor_path`` (or ``device``).

    Returns ``(device, entry)``.

    :raises PloopError: 40 when nothing is attached.
    """
    with DeviceTable(host) as table:
        name = (os.path.basename(device) if device else
                table.find(descriptor_path))
        if name not in table.devices:
            raise PloopError(SYSEXIT_DEV_NOT_MOUNTED, 'Image %s is not '
                             'mounted' % (device or descriptor_path))
        entry = table.devices.pop(name)
        table.save()
    if entry['guid'] is None:
        # ploop caches the statistics of the filesystem it unmounts.
        _measure(os.path.dirname(entry['descriptor']))
    return '/dev/' + name, entry


def device_of(host, descriptor_path):
    """The device holding ``descriptor_path``, or None."""
    with DeviceTable(host) as table:
        name = table.find(descriptor_path)
    return '/dev/' + name if name else None


def devices(host):
    """``[(device, entry), ...]`` of every attached device, by number."""
    with DeviceTable(host) as table:
        items = table.devices.items()
    return sorted(('/dev/' + name, entry) for name, entry in items)


def owner_ctid(host, descriptor_path, scan=True):
    """The container whose disk is ``descriptor_path``, or None.

    Tries the CTID a default VE_PRIVATE path names first; ``scan`` also
    checks every container config (for CTs with their own VE_PRIVATE).
    """
    wanted = os.path.realpath(descriptor_path)

    def owns(ctid):
        private = host.ve_private(ctid)
        return (private is not None and os.path.realpath(
            host.disk_descriptor(ctid)) == wanted)

    template = host.vz_conf.get('VE_PRIVATE', '')
    pattern = re.escape(template).replace(r'\$VEID', '([0-9]+)')
    match = re.match('^%s/' % pattern, wanted)
    if match and owns(int(match.group(1))):
        return int(match.group(1))
    if scan:
        return next((ctid for ctid in host.ctids() if owns(ctid)), None)
    return None
