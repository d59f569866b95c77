"""Glance images to OpenVZ OS templates.

An OS template is a tar archive of a root filesystem (plain, gzip, bzip2 or
xz), the format of OpenVZ's template cache.  An image is downloaded once per
host into a staging directory nova-compute owns, recognised by its content,
and moved by the privileged helper into ``$TEMPLATE/cache`` under a name that
vzctl's distribution scripts understand.
"""

import os
import re

from nova import exception as nova_exception
from nova.virt import images as nova_images
from oslo_concurrency import lockutils
from oslo_log import log as logging
from oslo_utils import fileutils

from nova_openvz import conf as openvz_conf
from nova_openvz import privsep

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF

#: archive kinds by their magic bytes, with the suffix vzctl looks for.
_MAGIC = ((b'\x1f\x8b', '.tar.gz'),
          (b'\xfd7zXZ\x00', '.tar.xz'),
          (b'BZh', '.tar.bz2'))
_TAR_MAGIC_OFFSET = 257
_PROPERTY_RE = re.compile(r'^[a-z0-9][a-z0-9._]*\Z')
SUFFIXES = ('.tar', '.tar.gz', '.tar.bz2', '.tar.xz')


def template_name(image_meta):
    """OSTEMPLATE for an image: ``[distro[-arch]-]nova-<image id>``.

    vzctl picks distribution scripts by stripping ``-parts`` from the end
    of OSTEMPLATE, so ``ubuntu-x86_64-nova-<id>`` finds the Ubuntu scripts;
    an image without a valid ``os_distro`` gets vzctl's defaults.  (Nova's
    image model has no ``os_version``, so the version is not part of it.)
    """
    props = image_meta.properties
    parts = []
    for field in ('os_distro', 'hw_architecture'):
        value = str(props.get(field, '') or '').lower()
        if not value:
            break
        if not _PROPERTY_RE.match(value):
            LOG.warning('Ignoring image property %s=%r: not a template '
                        'name part', field, value)
            break
        parts.append(value)
    parts += ['nova', image_meta.id]
    return '-'.join(parts)


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
        reason='not an OS template: OpenVZ boots tar archives of a root '
               'filesystem (plain, gzip, bzip2 or xz) uploaded with '
               'disk_format=raw and container_format=bare')


def check_format(image_meta):
    """Refuse early what cannot be an OS template."""
    disk_format = image_meta.obj_attr_is_set('disk_format') and \
        image_meta.disk_format
    if disk_format and disk_format != 'raw':
        raise nova_exception.ImageUnacceptable(
            image_id=image_meta.id,
            reason='disk_format %s is not supported; upload OS template '
                   'tarballs with disk_format=raw' % disk_format)


class TemplateCache(object):
    """The host's OS template cache, filled from Glance."""

    def __init__(self, host_config):
        self.host_config = host_config

    def cached(self, name):
        for suffix in SUFFIXES:
            path = os.path.join(self.host_config.template_cache_dir,
                                name + suffix)
            if os.path.exists(path):
                return path
        return None

    def ensure(self, context, instance, image_meta):
        """Make sure the image is in the cache; return its OSTEMPLATE."""
        check_format(image_meta)
        name = template_name(image_meta)
        if self.cached(name):
            return name
        # One download per image per host, however many spawns wait here.
        with lockutils.lock('openvz-template-' + image_meta.id,
                            external=True):
            if self.cached(name):
                return name
            fileutils.ensure_tree(CONF.openvz.image_staging_dir)
            staging = os.path.join(CONF.openvz.image_staging_dir,
                                   name + '.part')
            with fileutils.remove_path_on_error(staging):
                nova_images.fetch(context, image_meta.id, staging,
                                  trusted_certs=instance.trusted_certs)
                suffix = archive_suffix(staging, image_meta.id)
                privsep.install_template(staging, name + suffix)
            LOG.info('Cached OS template %s%s', name, suffix,
                     instance=instance)
        return name
