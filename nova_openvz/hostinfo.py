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

"""Host facts (CPU model and topology, memory) from libvirt-python.

libvirt's OpenVZ driver (``openvz:///system``) runs inside the calling
process, so no libvirtd is needed; a simulated host points the same code at
libvirt's test driver fed with a description of the machine.
"""

import json
import threading

import libvirt
from lxml import etree
from nova.objects import fields
from oslo_log import log as logging

from nova_openvz import conf as openvz_conf
from nova_openvz import exception

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF


class HostFacts(object):
    """Static facts about the host, read once per connection."""

    def __init__(self, uri=None):
        self.uri = uri or CONF.openvz.libvirt_uri
        self._lock = threading.Lock()
        self._facts = None

    def _read(self):
        try:
            conn = libvirt.openReadOnly(self.uri)
        except libvirt.libvirtError as e:
            raise exception.HostNotReady(
                reason='libvirt connection %s failed: %s' % (self.uri, e))
        try:
            model, memory_mb, cpus, _mhz, nodes, sockets, cores, threads = (
                conn.getInfo())
            caps = etree.fromstring(conn.getCapabilities())
        finally:
            conn.close()
        cpu = caps.find('host/cpu')
        # getInfo()'s model is the machine architecture (uname -m) for the
        # OpenVZ and the test driver alike; capabilities name the CPU.
        arch = fields.Architecture.canonicalize(model)
        return {
            'arch': arch,
            'vcpus': cpus,
            'memory_mb': memory_mb,
            'cpu_info': {
                'arch': arch,
                'vendor': cpu.findtext('vendor') if cpu is not None else None,
                'model': cpu.findtext('model') if cpu is not None else None,
                'topology': {'sockets': sockets * nodes, 'cores': cores,
                             'threads': threads},
                'features': sorted(f.get('name') for f in
                                   caps.findall('host/cpu/feature')),
            },
        }

    def get(self):
        with self._lock:
            if self._facts is None:
                self._facts = self._read()
                LOG.info('Host facts from %s: %d CPUs, %d MB',
                         self.uri, self._facts['vcpus'],
                         self._facts['memory_mb'])
            return self._facts

    def cpu_info_json(self):
        return json.dumps(self.get()['cpu_info'])
