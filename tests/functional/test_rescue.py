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

"""Rescue and unrescue through Nova's API.

The rescue container sees the server's root at /mnt/rescue, a fix made
there is in the server after unrescue, and nothing of the rescue container
is left.  The tests that look inside need the real kernel backend.
"""

import os

from nova.tests.functional.api import client

from nova_openvz.testing import allinone
from tests.functional import test_network


class TestRescue(allinone.OpenVZCloudTestCase):

    def _require_real(self):
        if self.kernel_backend != 'real':
            self.skipTest('needs the real kernel backend (root and the '
                          'kernel features realkernel.probe checks); this '
                          'host runs the %s one' % self.kernel_backend)

    def exec2(self, ctid, command):
        code, out, err = self.vzhost.run('vzctl', 'exec2', ctid, command)
        self.assertEqual(0, code, err)
        return out

    def rescue_record(self, server):
        """The vzlist record of the server's rescue container, or None."""
        found = [r for r in self.vzlist() if 'nova-rescue=%s' % server['id']
                 in (r.get('description') or '')]
        self.assertLessEqual(len(found), 1)
        return found[0] if found else None

    def test_a_fix_made_in_rescue_is_in_the_server_after_unrescue(self):
        self._require_real()
        server = self.boot(name='broken')
        ctid = self.container(server)['ctid']
        self.exec2(ctid, 'echo broken > /etc/motd && sync')

        server = self._rescue_server(server)
        self.assertEqual('RESCUE', server['status'])
        self.assertEqual(1, server['OS-EXT-STS:power_state'])   # RUNNING
        # The server's container is stopped; its rescuer runs.
        self.assertEqual('mounted', self.container(server)['status'])
        rescuer = self.rescue_record(server)
        self.assertEqual('running', rescuer['status'])
        self.assertNotEqual(ctid, rescuer['ctid'])
        self.assertIsNone(rescuer['name'])
        self.assertEqual('broken\n', self.exec2(
            rescuer['ctid'], 'cat /mnt/rescue/etc/motd'))
        # root's password is the rescue password (chpasswd hashed it).
        shadow = self.exec2(rescuer['ctid'], 'grep ^root: /etc/shadow')
        self.assertNotIn(shadow.split(':')[1], ('', '*', '!', 'x'))
        self.exec2(rescuer['ctid'],
                   'echo fixed > /mnt/rescue/etc/motd && sync')

        server = self._unrescue_server(server)
        self.assertEqual('ACTIVE', server['status'])
        record = self.container(server)
        self.assertEqual('running', record['status'])
        self.assertEqual(ctid, record['ctid'])
        self.assertEqual('fixed\n', self.exec2(ctid, 'cat /etc/motd'))
        # Nothing of the rescue container is left.
        self.assertIsNone(self.rescue_record(server))
        self.assertEqual([], self.vzhost.leftovers(rescuer['ctid']))
        conf = os.path.join(self.vzhost.root, 'etc/vz/conf')
        self.assertEqual([], [n for n in os.listdir(conf)
                              if n.startswith('%d.' % rescuer['ctid'])])

    def test_a_server_with_a_config_drive_is_rescued_with_its_own(self):
        # The rescue container reads a config drive of its own (with the
        # rescue password), as libvirt's disk.config.rescue.
        self._require_real()
        self.flags(force_config_drive=True)
        server = self._rescue_server(self.boot(name='driven'))
        self.assertEqual('RESCUE', server['status'])
        rescuer = self.rescue_record(server)
        self.assertEqual('running', rescuer['status'])
        self.assertIn('meta_data.json', self.exec2(
            rescuer['ctid'], 'ls /config-drive/openstack/latest'))
        server = self._unrescue_server(server)
        self.assertEqual('ACTIVE', server['status'])
        self.assertIsNone(self.rescue_record(server))

    def test_delete_of_a_rescued_server_removes_both_containers(self):
        server = self._rescue_server(self.boot(name='doomed'))
        ctid = self.container(server)['ctid']
        rescuer = self.rescue_record(server)['ctid']
        self._delete_server(server)
        self.assertEqual([], self.vzlist())
        self.assertEqual([], self.vzhost.leftovers(ctid))
        self.assertEqual([], self.vzhost.leftovers(rescuer))

    def test_a_failed_rescue_leaves_the_server_as_nova_left_it(self):
        server = self.boot(name='unlucky')
        ctid = self.container(server)['ctid']
        # The rescue container's start fails.
        self.vzhost.inject_fault('vzctl', command='start', call=1,
                                 exit_code=133, stderr='init did not start')
        # Rescue is a call: the API answers with vzctl's words; Nova marks
        # the server ERROR.  Nova's manager powered the server off before
        # the driver's rescue: it stays so, no longer mounted, and no
        # rescue container is left.
        error = self.assertRaises(
            client.OpenStackApiException, self.api.post_server_action,
            server['id'], {'rescue': {'adminPass': 'MySecretPass'}})
        self.assertEqual(400, error.response.status_code)
        self.assertIn('init did not start', str(error))
        server = self._wait_for_state_change(server, 'ERROR')
        self.assertIsNone(self.rescue_record(server))
        record = self.container(server)
        self.assertEqual(ctid, record['ctid'])
        self.assertEqual('stopped', record['status'])
        conf = os.path.join(self.vzhost.root, 'etc/vz/conf')
        self.assertEqual([], [n for n in os.listdir(conf) if n[:1].isdigit()
                              and not n.startswith('%d.' % ctid)])
        # An operator's reboot brings it back.
        self._reboot_server(server, hard=True)
        self.assertEqual('running', self.container(server)['status'])


class TestRescueOnPorts(test_network.NetworkTestCase):

    def test_the_rescue_container_is_on_the_servers_port(self):
        a, b = self.make_port(), self.make_port()
        first = self.boot_on_ports('first', [a])
        second = self.boot_on_ports('second', [b])
        first = self._rescue_server(first)
        rescuer = [r for r in self.vzlist() if 'nova-rescue=%s' % first['id']
                   in (r.get('description') or '')][0]['ctid']
        # The same MAC and addresses, configured inside the rescue image.
        code, out, err = self.vzhost.run('vzctl', 'exec2', rescuer,
                                         'ip -o addr show dev eth0')
        self.assertEqual(0, code, err)
        self.assertIn('%s/24' % self.ipv4(a), out)
        self.ping(second, self.ipv4(a))
        first = self._unrescue_server(first)
        self.ping(second, self.ipv4(a))
        self.ping(first, self.ipv4(b))
