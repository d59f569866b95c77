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

"""Shelve, shelve-offload and unshelve through Nova's API.

Nova builds them from the driver's power off, snapshot, destroy and
spawn: the snapshot image boots again with the server's files.  Needs the
real kernel backend to look inside.
"""

from nova_openvz.testing import allinone
from tests.functional import test_network


class TestShelve(allinone.KeepsImageData, allinone.OpenVZCloudTestCase):

    def exec2(self, server, command):
        ctid = self.container(server)['ctid']
        code, out, err = self.vzhost.run('vzctl', 'exec2', ctid, command)
        self.assertEqual(0, code, err)
        return out

    def test_offloaded_server_unshelves_with_its_files(self):
        if self.kernel_backend != 'real':
            self.skipTest('needs the real kernel backend (root and the '
                          'kernel features realkernel.probe checks); this '
                          'host runs the %s one' % self.kernel_backend)
        server = self.boot(name='shelf')
        ctid = self.container(server)['ctid']
        self.exec2(server, 'mkdir -p /srv && echo kept > /srv/file && sync')
        # shelved_offload_time 0 (Nova's default): offloaded at once.
        server = self._shelve_server(server)
        self.assertEqual('SHELVED_OFFLOADED', server['status'])
        self.assertIsNone(self.container(server))
        self.assertEqual([], self.vzhost.leftovers(ctid))

        server = self._unshelve_server(server)
        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual('running', self.container(server)['status'])
        self.assertEqual('kept\n', self.exec2(server, 'cat /srv/file'))
        # The shelved image is gone again, as Nova deletes it.
        self.assertEqual([], [i for i in self.glance.images.values()
                              if i['name'].endswith('-shelved')])

    def test_shelve_without_offload_keeps_the_stopped_container(self):
        self.flags(shelved_offload_time=-1)
        server = self.boot(name='kept')
        ctid = self.container(server)['ctid']
        server = self._shelve_server(server, expected_state='SHELVED')
        self.assertEqual('stopped', self.container(server)['status'])
        self._shelve_offload_server(server)
        self.assertIsNone(self.container(server))
        self.assertEqual([], self.vzhost.leftovers(ctid))
        server = self._unshelve_server(server)
        self.assertEqual('running', self.container(server)['status'])


class TestShelveOnPorts(allinone.KeepsImageData, test_network.NetworkTestCase):

    def test_unshelved_server_is_on_its_port_again(self):
        a, b = self.make_port(), self.make_port()
        first = self.boot_on_ports('first', [a])
        second = self.boot_on_ports('second', [b])
        first = self._shelve_server(first)
        self.api.post_server_action(first['id'], {'unshelve': None})
        # The spawn waits for Neutron's events of the port again.
        first = self._wait_for_state_change(first, 'ACTIVE',
                                            max_retries=120)
        link = self.inside(first, 'ip -o link show eth0')
        self.assertIn(a['mac_address'].lower(), link.lower())
        self.assertIn('%s/24' % self.ipv4(a),
                      self.inside(first, 'ip -o addr show dev eth0'))
        self.ping(second, self.ipv4(a))
