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

"""Config drive for containers: a read-only directory at ``/config-drive``.

A container has no CD-ROM, so the config drive is its contents: the files
Nova's own metadata code puts on a config drive
(``InstanceMetadata.metadata_for_config_drive``), written under
``<instances_path>/<uuid>/config-drive`` and bind-mounted read-only at
``/config-drive`` inside the container by the container's mount action
script (``/etc/vz/conf/<CTID>.mount``, which vzctl runs on the host each
time it mounts the container; ``<CTID>.umount`` undoes it).  cloud-init's
ConfigDrive datasource reads that directory (``/config-drive``), and its
ds-identify counts a ``/config-drive/openstack/<version>/meta_data.json``
as the platform's sign, which a container cannot give through DMI.
"""

import os
import shutil

from nova.api.metadata import base as instance_metadata
from nova.virt import configdrive as nova_configdrive
from oslo_log import log as logging

from nova_openvz import conf as openvz_conf
from nova_openvz import privsep

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF

#: Where cloud-init's ConfigDrive datasource looks for a directory.
GUEST_PATH = '/config-drive'


def required_by(instance):
    return nova_configdrive.required_by(instance)


def directory(instance, rescue=False):
    """The config drive's files; a rescue container's are apart."""
    return os.path.join(privsep.paths().instance_dir(instance.uuid),
                        'config-drive.rescue' if rescue else 'config-drive')


def build(instance, network_info, admin_password, injected_files,
          rescue=False):
    """Write the config drive's files; return their directory.

    With ``rescue``, the rescue container's (as libvirt's
    ``disk.config.rescue``), carrying the rescue password.
    """
    extra_md = {'admin_pass': admin_password} if admin_password else {}
    metadata = instance_metadata.InstanceMetadata(
        instance, content=injected_files, extra_md=extra_md,
        network_info=network_info)
    target = directory(instance, rescue)
    partial = target + '.partial'
    shutil.rmtree(partial, ignore_errors=True)
    # Only the guest's root may read it (it can hold the admin password).
    os.makedirs(partial, mode=0o700)
    try:
        for path, data in metadata.metadata_for_config_drive():
            _write(partial, path, data)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(partial, target)
    except Exception:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    LOG.info('Config drive written to %s', target, instance=instance)
    return target


def _write(base, path, data):
    full = os.path.normpath(os.path.join(base, path))
    if os.path.commonpath([full, base]) != base:
        raise ValueError('config drive path %r leaves its directory' % path)
    os.makedirs(os.path.dirname(full), mode=0o755, exist_ok=True)
    if isinstance(data, str):
        data = data.encode('utf-8')
    with open(full, 'wb') as f:
        f.write(data)


def remove_rescue(instance):
    """Forget the rescue container's config drive."""
    shutil.rmtree(directory(instance, rescue=True), ignore_errors=True)


def remove(instance):
    """Forget the config drive's files.

    Its lines in the container's mount scripts go with the container:
    vzctl destroy renames the scripts and the driver deletes them.
    """
    shutil.rmtree(directory(instance), ignore_errors=True)
    remove_rescue(instance)
    try:
        os.rmdir(os.path.dirname(directory(instance)))
    except OSError:
        pass   # not empty (other files of the instance) or gone
