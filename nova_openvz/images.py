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

"""Glance images to OpenVZ OS templates.

An OS template is a tar archive of a root filesystem (plain, gzip, bzip2 or
xz), the format of OpenVZ's template cache.  An image is downloaded once per
host into a staging directory nova-compute owns, recognised by its content,
and moved by the privileged helper into ``$TEMPLATE/cache`` under a name that
vzctl's distribution scripts understand.

A ``disk_format=ploop`` image is a ploop base delta (a ``root.hdd``), as
Nova's Virtuozzo driver takes it.  vzctl only creates containers from
templates (reference 1.2), so the delta is turned into one, once per host:
``ploop restore-descriptor`` gives it a descriptor, ``ploop mount -r``
shows its filesystem, the privileged helper packs that into a gzip tarball
for the cache, and ``ploop umount`` ends it.
"""

import contextlib
import hashlib
import os
import re
import shutil
import time

import nova.conf  # noqa: F401  ([image_cache] options)
from nova import exception as nova_exception
from nova.virt import images as nova_images
from oslo_concurrency import lockutils
from oslo_log import log as logging
from oslo_utils import fileutils

from nova_openvz import conf as openvz_conf
from nova_openvz import container
from nova_openvz import exception
from nova_openvz import hosttools
from nova_openvz import privsep
from nova_openvz.privsep import images as priv_images
from nova_openvz import rollback

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF

#: archive kinds by their magic bytes, with the suffix vzctl looks for.
_MAGIC = ((b'\x1f\x8b', '.tar.gz'),
          (b'\xfd7zXZ\x00', '.tar.xz'),
          (b'BZh', '.tar.bz2'))
_TAR_MAGIC_OFFSET = 257
_PROPERTY_RE = re.compile(r'^[a-z0-9][a-z0-9._]*\Z')
SUFFIXES = ('.tar', '.tar.gz', '.tar.bz2', '.tar.xz')
#: Read size when hashing a download: memory stays bounded.
CHUNK_SIZE = 1024 * 1024


def template_name(image_meta, instance=None):
    """OSTEMPLATE for an image: ``[distro[-version][-arch]-]nova-<image id>``.

    vzctl picks distribution scripts by trying ``dists/<OSTEMPLATE>.conf``
    and stripping ``-parts`` from the end, so ``ubuntu-22.04-x86_64-nova-<id>``
    finds ``ubuntu-22.04.conf``, else ``ubuntu.conf``, else ``default``.
    The parts come from the image properties ``os_distro``, ``os_version``
    and ``architecture`` (``hw_architecture``).  Nova's image model drops
    ``os_version``; Nova keeps every image property in the instance's
    system metadata (``image_os_version``), so it is read there.  Without a
    valid ``os_distro`` the name is ``nova-<id>`` and vzctl uses its
    ``default`` scripts; a missing version or architecture is left out.
    """
    props = image_meta.properties
    version = _system_metadata(instance).get('image_os_version')
    distro = _name_part('os_distro', props.get('os_distro'))
    parts = []
    if distro:
        parts = [distro] + [part for part in (
            _name_part('os_version', version),
            _name_part('hw_architecture', props.get('hw_architecture')))
            if part]
    return '-'.join(parts + ['nova', image_meta.id])


def _system_metadata(instance):
    """The instance's system metadata if loaded (Nova loads it to build)."""
    if instance is None or (hasattr(instance, 'obj_attr_is_set') and
                            not instance.obj_attr_is_set('system_metadata')):
        return {}
    return instance.system_metadata or {}


def _name_part(field, value):
    """A property value usable in a template name, else None."""
    value = str(value or '').lower()
    if value and not _PROPERTY_RE.match(value):
        LOG.warning('Ignoring image property %s=%r: not a template name '
                    'part', field, value)
        return None
    return value or None


def archive_suffix(path, image_id):
    """The template suffix for the archive at ``path``, judged by content."""
    with open(path, 'rb') as f:
        head = f.read(_TAR_MAGIC_OFFSET + 8)
    for magic, suffix in _MAGIC:
        if head.startswith(magic):
            return suffix
    if head[_TAR_MAGIC_OFFSET:_TAR_MAGIC_OFFSET + 5] == b'ustar':
        return '.tar'
    raise nova_exception.ImageUnacceptable(
        image_id=image_id,
        reason='not a tar, tar.gz, tar.bz2 or tar.xz of a root '
               'filesystem; ' + ACCEPTED)


# Nova keeps 255 characters of a fault, so this comes first and is short.
ACCEPTED = ('OpenVZ needs disk_format=raw (OS template tarball) or '
            'disk_format=ploop, with container_format=bare')
PLOOP = 'ploop'
#: ploop failures that say the image is bad, not the host: such a boot
#: is not retried on another host.
_PLOOP_IMAGE_ERRORS = (exception.PloopImageCorrupt,
                       exception.PloopDescriptorInvalid,
                       exception.PloopMountFailed)


def check_format(image_meta):
    """Refuse early, before any download, what cannot be an OS template."""
    def field(name):
        return image_meta.obj_attr_is_set(name) and getattr(image_meta, name)

    disk_format = field('disk_format')
    container_format = field('container_format')
    reason = None
    if disk_format and disk_format not in ('raw', PLOOP):
        reason = 'disk_format %s: %s' % (disk_format, ACCEPTED)
    elif container_format and container_format != 'bare':
        reason = 'container_format %s: %s' % (container_format, ACCEPTED)
    if reason:
        raise nova_exception.ImageUnacceptable(image_id=image_meta.id,
                                               reason=reason)


def verify_download(context, image_id, path):
    """Check the file against the hash Glance recorded for the image.

    glanceclient checks the same while Nova streams from a real Glance;
    this check also covers download handlers and test doubles.  The
    multihash (``os_hash_algo``/``os_hash_value``) wins over the legacy
    MD5 ``checksum``; an image with neither is accepted, as Nova does.
    """
    info = nova_images.get_info(context, image_id)
    algo, expected = info.get('os_hash_algo'), info.get('os_hash_value')
    if not (algo and expected):
        algo, expected = 'md5', info.get('checksum')
    if not expected:
        LOG.info('Image %s has no checksum in Glance; not verified',
                 image_id)
        return
    try:
        digest = hashlib.new(algo, usedforsecurity=False)
    except ValueError:
        raise nova_exception.ImageUnacceptable(
            image_id=image_id, reason='unknown hash algorithm %s' % algo)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b''):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise nova_exception.ImageUnacceptable(
            image_id=image_id,
            reason='download does not match the %s hash Glance recorded '
                   '(%.16s..., got %.16s...)'
                   % (algo, expected, digest.hexdigest()))


class TemplateCache(object):
    """The host's OS template cache, filled from Glance."""

    @property
    def directory(self):
        return privsep.paths().template_cache_dir

    def cached(self, name):
        for suffix in SUFFIXES:
            path = os.path.join(self.directory,
                                name + suffix)
            if os.path.exists(path):
                return path
        return None

    def ensure(self, context, instance, image_meta):
        """Make sure the image is in the cache; return its OSTEMPLATE.

        Nova's fetch streams the image to a file chunk by chunk and checks
        its signature when ``[glance] verify_glance_signatures`` or the
        instance's trusted certificates ask; the hash is checked here.
        """
        check_format(image_meta)
        name = template_name(image_meta, instance)
        if self.cached(name):
            return name
        # One download per image per host, however many spawns wait here.
        with lockutils.lock(lock_name(image_meta.id), external=True):
            if self.cached(name):
                return name
            fileutils.ensure_tree(CONF.openvz.image_staging_dir)
            if _is_ploop(image_meta):
                filename = name + '.tar.gz'
                _convert_ploop(context, instance, image_meta.id, filename)
            else:
                filename = _download_template(context, instance,
                                              image_meta.id, name)
            LOG.info('Cached OS template %s', filename, instance=instance)
        return name

    def templates(self):
        """``{file name: image id}`` of the templates this driver cached."""
        try:
            names = os.listdir(self.directory)
        except OSError as e:
            LOG.warning('Cannot list the template cache: %s', e)
            return {}
        found = {}
        for filename in names:
            image_id = priv_images.nova_template_image(filename)
            if image_id:
                found[filename] = image_id
        return found

    def manage(self, all_instances):
        """Age the cache and remove templates no instance uses any more.

        ``all_instances`` are the instances Nova counts on this host (and
        on hosts sharing its storage).  As in libvirt's image cache, a used
        template is touched, and an unused one goes once it is older than
        ``[image_cache] remove_unused_original_minimum_age_seconds``, if
        ``remove_unused_base_images`` is set.  Templates the operator put
        in the cache (names without ``nova-<image id>``) are never touched.
        """
        used = {instance.image_ref for instance in all_instances
                if instance.image_ref}
        min_age = CONF.image_cache.remove_unused_original_minimum_age_seconds
        removed = []
        for filename, image_id in sorted(self.templates().items()):
            if image_id in used:
                priv_images.touch_template(filename)
                continue
            if not CONF.image_cache.remove_unused_base_images:
                continue
            path = os.path.join(self.directory, filename)
            # The spawn lock: never remove what a spawn is about to use.
            with lockutils.lock(lock_name(image_id), external=True):
                try:
                    age = time.time() - os.path.getmtime(path)
                except OSError:
                    continue   # removed meanwhile
                if age < min_age:
                    LOG.debug('Unused template %s is %ds old; kept until '
                              '%ds', filename, age, min_age)
                    continue
                priv_images.remove_template(filename)
            LOG.info('Removed unused OS template %s', filename)
            removed.append(filename)
        return removed


def _download_template(context, instance, image_id, name):
    """Download the tarball image ``image_id`` into the cache as ``name``.

    :returns: its file name there, with the suffix its content calls for.
    """
    staging = os.path.join(CONF.openvz.image_staging_dir, name + '.part')
    with fileutils.remove_path_on_error(staging):
        nova_images.fetch(context, image_id, staging,
                          trusted_certs=instance.trusted_certs)
        verify_download(context, image_id, staging)
        filename = name + archive_suffix(staging, image_id)
        priv_images.install_template(staging, filename)
    return filename


def _is_ploop(image_meta):
    return (image_meta.obj_attr_is_set('disk_format') and
            image_meta.disk_format == PLOOP)


def clear_staging():
    """Remove what unfinished downloads and snapshots left in staging.

    For ``init_host``: nova-compute has taken no work yet, and the staging
    directory is its own, so nothing in it is in flight; a process killed
    while it packed a snapshot or fetched an image left it there.
    """
    staging = CONF.openvz.image_staging_dir
    try:
        names = sorted(os.listdir(staging))
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(staging, name)
        LOG.warning('Removing %s: an image transfer that did not finish '
                    'left it', path)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def _remove_staged(work, packed):
    """Drop a ploop image's work dir and packed tarball, if there."""
    if os.path.lexists(work):
        shutil.rmtree(work)
    if os.path.lexists(packed):
        os.unlink(packed)


def _ploop(argv):
    hosttools.run('ploop', *argv)


def _umount_ploop(mount_dir):
    _ploop(_TOOLS.umount_image(mount_dir))


#: The tool generation's renderer (see :mod:`nova_openvz.vz4`).
_TOOLS = container.Container.tools


@contextlib.contextmanager
def _bad_image_errors(image_id, *directories):
    """ploop's verdict on the image itself becomes ImageUnacceptable.

    Nova keeps 255 characters of a fault, so the image's own directories
    are left out of ploop's message: it names the files relative to them.
    """
    try:
        yield
    except _PLOOP_IMAGE_ERRORS as exc:
        reason = exc.format_message()
        for directory in directories:
            reason = reason.replace(directory + os.sep, '')
        raise nova_exception.ImageUnacceptable(
            image_id=image_id, reason=reason) from exc


def _convert_ploop(context, instance, image_id, filename):
    """Download the ploop image ``image_id``; cache it as ``filename``.

    The caller holds the image's lock.  Whatever happens, the mount, the
    mount dir and the staged files are gone afterwards.
    """
    work = priv_images.ploop_work_dir(image_id)
    packed = os.path.join(CONF.openvz.image_staging_dir,
                          priv_images.ploop_pack_name(image_id))
    _remove_staged(work, packed)   # a leftover of a crashed attempt
    started = time.monotonic()
    with rollback.undone_by(_remove_staged, work, packed):
        os.mkdir(work, 0o755)
        delta = os.path.join(work, priv_images.PLOOP_DELTA)
        nova_images.fetch(context, image_id, delta,
                          trusted_certs=instance.trusted_certs)
        verify_download(context, image_id, delta)
        fetched = time.monotonic()
        mount_dir = priv_images.ploop_mount_dir(image_id)
        with _bad_image_errors(image_id, work, mount_dir):
            _ploop(_TOOLS.restore_descriptor(work, delta))
            priv_images.make_ploop_mount_dir(image_id)
            with rollback.undone_by(priv_images.remove_ploop_mount_dir,
                                    image_id):
                _ploop(_TOOLS.mount_image(mount_dir, os.path.join(
                    work, priv_images.PLOOP_DESCRIPTOR)))
                with rollback.undone_by(_umount_ploop, mount_dir):
                    hosttools.pack(priv_images.pack_ploop_image, image_id,
                                   what='ploop image %s' % image_id)
        priv_images.install_template(packed, filename)
    LOG.info('Converted ploop image %(image)s to a template: download '
             '%(fetch).1fs, conversion %(convert).1fs',
             {'image': image_id, 'fetch': fetched - started,
              'convert': time.monotonic() - fetched}, instance=instance)


def lock_name(image_id):
    return 'openvz-template-' + image_id
