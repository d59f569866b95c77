"""What the host's ``vz.conf`` says: where containers and templates live.

The driver reads the same files vzctl reads (they are world-readable on an
OpenVZ host), so paths are never duplicated in Nova's configuration.
"""

import os

from nova_openvz import conf as openvz_conf
from nova_openvz import vzconf

CONF = openvz_conf.CONF

REQUIRED_KEYS = ('TEMPLATE', 'VE_PRIVATE', 'VE_ROOT', 'LOCKDIR')


class HostConfig(object):
    """Paths of one OpenVZ host, read from its vz.conf."""

    def __init__(self, vz_conf_path=None):
        self.vz_conf_path = vz_conf_path or CONF.openvz.vz_conf
        self.values = vzconf.read(self.vz_conf_path)

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
    def default_layout(self):
        return self.values.get('VE_LAYOUT', 'ploop')

    def private_dir(self, ctid):
        return vzconf.expand_veid(self.values['VE_PRIVATE'], ctid)

    def private_parent(self):
        """The directory holding every container's private area."""
        return os.path.dirname(self.private_dir(0))

    def container_config_path(self, ctid):
        return os.path.join(self.conf_dir, '%d.conf' % ctid)

    def container_config(self, ctid):
        return vzconf.read(self.container_config_path(ctid))

    def problems(self):
        """Return a list of what makes this host unusable, empty if none."""
        if not os.path.isfile(self.vz_conf_path):
            return ['global config %s does not exist' % self.vz_conf_path]
        found = []
        for key in REQUIRED_KEYS:
            if not self.values.get(key):
                found.append('%s does not set %s' % (self.vz_conf_path, key))
        if not os.path.isdir(self.conf_dir):
            found.append('container config directory %s does not exist'
                         % self.conf_dir)
        if self.values.get('TEMPLATE') and not os.path.isdir(
                self.template_cache_dir):
            found.append('template cache %s does not exist'
                         % self.template_cache_dir)
        return found
