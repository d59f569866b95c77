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

"""Where an OpenVZ host keeps things: the one place that resolves paths.

The host's ``vz.conf`` says where container configs, private areas, roots
and templates live; a container's own config may override its private area
and root (``VE_PRIVATE``, ``VE_ROOT``, reference 1.7).  Nova's
``instances_path`` holds each instance's directory.  Both sides of the
privilege boundary resolve these paths here and nowhere else: the driver
(world-readable files on an OpenVZ host) and its privileged helper, which
trusts no path nova-compute sends when it can compute it itself.

Standard library only, and importing nothing of the driver (see
:mod:`nova_openvz.privsep`).  :func:`for_files` re-reads ``vz.conf`` only
when the file changed.
"""

import os
import re
import threading

from nova_openvz.privsep import vzconf

REQUIRED_KEYS = ('TEMPLATE', 'VE_PRIVATE', 'VE_ROOT', 'LOCKDIR')
#: vzctl destroy renames a container's config and action scripts to these.
DESTROYED_SUFFIXES = ('conf', 'mount', 'umount', 'premount', 'postumount',
                      'start', 'stop')
#: Action scripts the driver keeps lines in (reference 4.7).
ACTION_SCRIPTS = ('mount', 'umount', 'start')
_UUID_RE = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                      r'[0-9a-f]{12}\Z')


class HostPaths(object):
    """Paths of one OpenVZ host and one Nova ``instances_path``."""

    def __init__(self, vz_conf_path, instances_path):
        self.vz_conf_path = vz_conf_path
        self.instances_path = instances_path
        self.values = vzconf.read(vz_conf_path)

    # -- from vz.conf ------------------------------------------------------

    @property
    def conf_dir(self):
        return os.path.join(os.path.dirname(self.vz_conf_path), 'conf')

    @property
    def template_cache_dir(self):
        return os.path.join(self.values.get('TEMPLATE', '/vz/template'),
                            'cache')

    @property
    def dump_dir(self):
        return self.values.get('DUMPDIR', '/vz/dump')

    @property
    def lock_dir(self):
        """Where vzctl keeps ``<CTID>.lck`` (reference 1.1, LOCKDIR)."""
        return self.values.get('LOCKDIR', '/vz/lock')

    @property
    def default_layout(self):
        return self.values.get('VE_LAYOUT', 'ploop')

    def private_parent(self):
        """The directory holding every container's private area."""
        return os.path.dirname(vzconf.expand_veid(
            self.values.get('VE_PRIVATE', '/vz/private/$VEID'), 0))

    def root_parent(self):
        """The directory holding every container's root (root owns it)."""
        return os.path.dirname(vzconf.expand_veid(
            self.values.get('VE_ROOT', '/vz/root/$VEID'), 0))

    # -- one container -----------------------------------------------------

    def container_config_path(self, ctid):
        return os.path.join(self.conf_dir, '%d.conf' % int(ctid))

    def container_config(self, ctid):
        """The container's config as a dict; empty when there is none."""
        return vzconf.read(self.container_config_path(ctid))

    def _area(self, key, ctid, config=None):
        if config is None:
            config = self.container_config(ctid)
        value = config.get(key) or self.values.get(key) or ''
        return os.path.normpath(vzconf.expand_veid(value, int(ctid)))

    def private_dir(self, ctid, config=None):
        """VE_PRIVATE: the container's config first, then vz.conf."""
        return self._area('VE_PRIVATE', ctid, config)

    def root_dir(self, ctid, config=None):
        """VE_ROOT: the container's config first, then vz.conf."""
        return self._area('VE_ROOT', ctid, config)

    def action_script(self, ctid, suffix):
        """``<conf dir>/<CTID>.<suffix>``, a script vzctl runs for it."""
        if suffix not in ACTION_SCRIPTS:
            raise ValueError('no action script %r' % (suffix,))
        return os.path.join(self.conf_dir, '%d.%s' % (int(ctid), suffix))

    def destroyed_files(self, ctid):
        """What ``vzctl destroy`` leaves of a container's config files."""
        return [os.path.join(self.conf_dir, '%d.%s.destroyed'
                             % (int(ctid), suffix))
                for suffix in DESTROYED_SUFFIXES]

    # -- Nova's side -------------------------------------------------------

    def instance_dir(self, instance_uuid):
        """``<instances_path>/<uuid>``: console log, config drive."""
        if not _UUID_RE.match(str(instance_uuid)):
            raise ValueError('%r is not an instance UUID' % (instance_uuid,))
        return os.path.join(self.instances_path, instance_uuid)

    def problems(self):
        """What makes this host unusable, as a list; empty if nothing."""
        if not os.path.isfile(self.vz_conf_path):
            return ['global config %s does not exist' % self.vz_conf_path]
        found = ['%s does not set %s' % (self.vz_conf_path, key)
                 for key in REQUIRED_KEYS if not self.values.get(key)]
        if not os.path.isdir(self.conf_dir):
            found.append('container config directory %s does not exist'
                         % self.conf_dir)
        if self.values.get('TEMPLATE') and not os.path.isdir(
                self.template_cache_dir):
            found.append('template cache %s does not exist'
                         % self.template_cache_dir)
        return found


_cache = {}
_cache_lock = threading.Lock()


def for_files(vz_conf_path, instances_path):
    """The :class:`HostPaths` of these files, read again only on change."""
    try:
        info = os.stat(vz_conf_path)
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
    except OSError:
        stamp = None
    key = (vz_conf_path, instances_path)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is None or cached[0] != stamp or stamp is None:
            cached = _cache[key] = (stamp, HostPaths(vz_conf_path,
                                                     instances_path))
        return cached[1]
