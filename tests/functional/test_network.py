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

"""Neutron ports, guest network set-up and config drive through Nova's API.

Real containers on the simulated host, plugged by os-vif into a private
Open vSwitch (userspace datapath); Neutron is Nova's fixture plus the
harness's PortAgent, which sends ``network-vif-plugged`` once a port's
device is on the switch.  Everything is checked from inside the
containers.
"""

import base64
import io
import json
import os
import shutil
import subprocess
import time
import uuid

import fixtures
from nova import context as nova_context
from nova.tests.functional.api import client
import testtools

from nova_openvz.privsep import vzconf
from nova_openvz.testing import allinone
from tests.unit.vzsim import test_debian_template
from vzsim import templates


class NetworkTestCase(allinone.OpenVZCloudTestCase):

    NETWORKING = True

    def inside(self, server, command, expect=0):
        ctid = self.container(server)['ctid']
        code, out, err = self.vzhost.run('vzctl', 'exec2', ctid, command)
        self.assertEqual(expect, code, 'exit %d: %s%s' % (code, out, err))
        return out

    def ipv4(self, port):
        return port['fixed_ips'][0]['ip_address']

    def _wait_for(self, condition, timeout=30):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.fail('timed out')
            time.sleep(0.2)

    def ping(self, server, address, timeout=20):
        """One ping answered within ``timeout`` seconds of trying.

        The peer's interface may still be coming up, and the switch is a
        userspace datapath sharing two cores with the test run.
        """
        ctid = self.container(server)['ctid']
        deadline = time.monotonic() + timeout
        while True:
            code, out, err = self.vzhost.run(
                'vzctl', 'exec2', ctid, 'ping -c 1 -W 1 %s' % address)
            if code == 0 or time.monotonic() > deadline:
                break
        self.assertEqual(0, code, 'no answer from %s within %d s: %s%s'
                         % (address, timeout, out, err))
        return out


class TestPorts(NetworkTestCase):

    def test_two_servers_reach_each_other_configured_from_inside(self):
        native, hybrid = self.make_port(), self.make_port(hybrid=True)
        first = self.boot_on_ports('first', [native])
        second = self.boot_on_ports('second', [hybrid])
        # Both boots waited for the agent's network-vif-plugged.
        self.assertEqual(sorted([native['id'], hybrid['id']]),
                         sorted(self.agent.sent))
        # The native port's device is on the integration bridge; the
        # hybrid one's is in its own qbr bridge, joined to it by os-vif.
        ports = self.switch.ports(self.integration_bridge)
        self.assertIn(('tap' + native['id'])[:14], ports)
        self.assertIn(('qvo' + hybrid['id'])[:14], ports)

        for server, port in ((first, native), (second, hybrid)):
            link = self.inside(server, 'ip -o link show eth0')
            self.assertIn(port['mac_address'].lower(), link.lower())
            self.assertIn('mtu 1450', link)
            addresses = self.inside(server, 'ip -o addr show dev eth0')
            self.assertIn('%s/24' % self.ipv4(port), addresses)
            self.assertIn('%s/64' % port['fixed_ips'][1]['ip_address'],
                          addresses)
            routes = self.inside(server, 'ip route show default')
            self.assertIn('via 192.168.1.1 dev eth0', routes)
            resolv = self.inside(server, 'cat /etc/resolv.conf')
            self.assertIn('nameserver 192.168.1.53', resolv)
            self.assertIn('nameserver fd37:44e8:ad06::53', resolv)
            hostname = self.api.get_server(
                server['id'])['OS-EXT-SRV-ATTR:hostname']
            self.assertEqual(hostname, self.inside(server, 'hostname').strip())
            # Written the Debian way, so the guest's own boot brings it up.
            stanza = self.inside(server,
                                 'cat /etc/network/interfaces.d/eth0')
            self.assertIn('address %s' % self.ipv4(port), stanza)
            self.assertIn('source /etc/network/interfaces.d/eth0',
                          self.inside(server, 'cat /etc/network/interfaces'))

        self.ping(first, self.ipv4(hybrid))
        self.ping(second, self.ipv4(native))
        # TCP too: the guests' frames carry complete checksums, which the
        # userspace switch does not fill in.
        self.inside(second, 'nc -l -p 5000 > /tmp/got 2>&1 &')
        self.inside(first, 'echo over tcp | nc -w 5 %s 5000'
                    % self.ipv4(hybrid))
        self._wait_for(lambda: self.inside(
            second, 'cat /tmp/got') == 'over tcp\n', timeout=10)

    def test_integration_bridge_keeps_its_datapath_id_across_boots(self):
        # Open vSwitch derives a bridge's datapath ID from the lowest
        # universally administered MAC among its ports; a changed ID makes
        # Neutron's OVS agent take the switch for restarted.  The host ends
        # carry locally administered MACs, which it never picks.
        def datapath_id():
            return self.switch.vsctl('get', 'Bridge',
                                     self.integration_bridge,
                                     'datapath_id').strip()

        # The ID the bridge got from its own (random, local) MAC.
        self._wait_for(lambda: datapath_id() != '[]')
        before = datapath_id()
        a, b = self.make_port(), self.make_port()
        first = self.boot_on_ports('first', [a])
        self.boot_on_ports('second', [b])
        self.assertEqual(before, datapath_id())
        for port in (a, b):
            host_end = ('tap' + port['id'])[:14]
            mac = self.switch.interface(host_end, 'mac_in_use').strip('"')
            self.assertEqual(0x02, int(mac[:2], 16) & 0x03, mac)
        self._reboot_server(first, hard=True)
        self.assertEqual(before, datapath_id())

    def test_reboot_brings_the_interfaces_back_from_the_guest_files(self):
        a, b = self.make_port(), self.make_port()
        first = self.boot_on_ports('first', [a])
        self.boot_on_ports('second', [b])
        self._reboot_server(first, hard=True)
        self.assertIn('%s/24' % self.ipv4(a),
                      self.inside(first, 'ip -o addr show dev eth0'))
        self.ping(first, self.ipv4(b))

    def test_stop_unplugs_and_start_plugs_again(self):
        a, b = self.make_port(), self.make_port()
        first = self.boot_on_ports('first', [a])
        second = self.boot_on_ports('second', [b])
        device = ('tap' + a['id'])[:14]
        self._stop_server(first)
        self.assertNotIn(device, self.switch.ports(self.integration_bridge))
        self._start_server(first)
        self.assertIn(device, self.switch.ports(self.integration_bridge))
        self.ping(second, self.ipv4(a))

    def test_port_never_plugged_fails_the_boot_and_cleans_up(self):
        self.flags(max_attempts=1, group='scheduler')
        self.flags(vif_plugging_timeout=2)
        self.agent.hold = True
        port = self.make_port()
        server = self.boot_on_ports('late', [port], expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        # Nova's words for a VirtualInterfaceCreateException at boot.
        self.assertIn('Failed to allocate the network(s)', fault)
        self.assertEqual([], self.vzlist())
        self.assertEqual([], self.vzhost.all_leftovers())
        self.assertNotIn(('tap' + port['id'])[:14],
                         self.switch.ports(self.integration_bridge))

    def test_port_late_but_not_fatal_still_boots(self):
        self.flags(vif_plugging_timeout=2, vif_plugging_is_fatal=False)
        self.agent.hold = True
        late, peer = self.make_port(), self.make_port()
        server = self.boot_on_ports('late', [late])
        self.assertEqual('running', self.container(server)['status'])
        self.agent.hold = False
        self.boot_on_ports('peer', [peer])
        self.ping(server, self.ipv4(peer))

    def test_attach_and_detach_an_interface_on_a_running_server(self):
        a, b, extra = self.make_port(), self.make_port(), self.make_port()
        first = self.boot_on_ports('first', [a])
        second = self.boot_on_ports('second', [b])
        ctid = self.container(first)['ctid']
        self.api.attach_interface(
            first['id'], {'interfaceAttachment': {'port_id': extra['id']}})
        self._wait_for_port_attached(first, extra)
        # Live: the same container, now with eth1 and its address.
        self.assertEqual(ctid, self.container(first)['ctid'])
        self.assertIn('%s/24' % self.ipv4(extra),
                      self.inside(first, 'ip -o addr show dev eth1'))
        self.ping(second, self.ipv4(extra))

        self.api.detach_interface(first['id'], extra['id'])
        self._wait_for_port_detached(first, extra)
        self.inside(first, 'test -e /sys/class/net/eth1', expect=1)
        self.inside(first, 'test -e /etc/network/interfaces.d/eth1',
                    expect=1)
        self.assertNotIn(('tap' + extra['id'])[:14],
                         self.switch.ports(self.integration_bridge))
        self.assertIn('%s/24' % self.ipv4(a),
                      self.inside(first, 'ip -o addr show dev eth0'))

    def test_an_interface_the_guest_cannot_take_leaves_nothing_behind(self):
        # The guest's network script fails: the container keeps neither
        # the NETIF entry nor the veth, and the switch has no port for it.
        a, extra = self.make_port(), self.make_port()
        server = self.boot_on_ports('first', [a])
        ctid = self.container(server)['ctid']
        config = os.path.join(self.vzhost.root, 'etc/vz/conf/%d.conf' % ctid)
        netif = vzconf.read(config)['NETIF']
        self.vzhost.inject_fault('vzctl', command='exec2', ctid=ctid,
                                 exit_code=2, stderr='ifup: eth1 failed')
        self.assertRaises(client.OpenStackApiException,
                          self.api.attach_interface, server['id'],
                          {'interfaceAttachment': {'port_id': extra['id']}})
        self.assertEqual(netif, vzconf.read(config)['NETIF'])
        device = ('tap' + extra['id'])[:14]
        self.assertNotIn(device, self.switch.ports(self.integration_bridge))
        self.assertNotEqual(0, subprocess.run(
            ['ip', 'link', 'show', 'dev', device],
            capture_output=True).returncode)
        self.assertEqual('running', self.container(server)['status'])

    def _wait_for_port_attached(self, server, port):
        def attached():
            return [i for i in self.api.get_port_interfaces(server['id'])
                    if i['port_id'] == port['id']]
        self._wait_for(attached)

    def _wait_for_port_detached(self, server, port):
        def detached():
            return not [i for i in self.api.get_port_interfaces(server['id'])
                        if i['port_id'] == port['id']]
        self._wait_for(detached)


class TestGuestSetup(NetworkTestCase):

    def test_config_drive_is_what_nova_built_read_only(self):
        from nova.api.metadata import base as instance_metadata
        port = self.make_port()
        user_data = '#!/bin/sh\necho hello from user data\n'
        server = self.boot_on_ports(
            'drive', [port], config_drive=True,
            user_data=base64.b64encode(user_data.encode()).decode())
        inside = json.loads(self.inside(
            server, 'cat /config-drive/openstack/latest/meta_data.json'))
        # What Nova's metadata service serves for this server.
        nova_md = instance_metadata.get_metadata_by_instance_id(
            server['id'], self.ipv4(port))
        expected = json.loads(dict(nova_md.metadata_for_config_drive())[
            'openstack/latest/meta_data.json'])
        # random_seed is new each time Nova renders it; a config drive
        # also carries the admin password (as libvirt's does), the
        # metadata service does not.
        for record in (inside, expected):
            record.pop('random_seed', None)
        self.assertTrue(inside.pop('admin_pass'))
        self.assertEqual(expected, inside)
        self.assertEqual(user_data, self.inside(
            server, 'cat /config-drive/openstack/latest/user_data'))
        network_data = json.loads(self.inside(
            server, 'cat /config-drive/openstack/latest/network_data.json'))
        self.assertEqual(port['mac_address'],
                         network_data['links'][0]['ethernet_mac_address'])
        self.inside(server, 'touch /config-drive/x', expect=1)
        # Gone with the server: scripts and files.
        ctid = self.container(server)['ctid']
        self._delete_server(server)
        self.assertEqual([], self.vzhost.leftovers(ctid))

    def test_admin_password_is_set_without_showing_it(self):
        server = self.boot_on_ports('pw', [self.make_port()])
        before = self.inside(server, 'grep ^root: /etc/shadow')
        secret = 'n0t-on-any-argv'
        self.api.post_server_action(server['id'],
                                    {'changePassword': {'adminPass': secret}})
        self._wait_for(lambda: self.inside(
            server, 'grep ^root: /etc/shadow') != before)
        for call in self.vzhost.calls():
            self.assertNotIn(secret, ' '.join(call['argv']))


class TestRoutedMode(NetworkTestCase):

    def test_routed_mode_puts_the_addresses_on_venet(self):
        self.flags(network_mode='routed', group='openvz')
        port = self.make_port(active=True)
        server = self.boot_on_ports('routed', [port])
        record = self.container(server)
        self.assertIn(self.ipv4(port), record['ip'])
        self.assertIn(self.ipv4(port),
                      self.inside(server, 'ip -o addr show dev venet0'))
        self.assertEqual([], self.switch.ports(self.integration_bridge))


@testtools.skipUnless(test_debian_template.SLOW,
                      'slow: set NOVA_OPENVZ_SLOW_TESTS=1 to build a Debian '
                      'template and boot cloud-init through Nova')
class TestCloudInitThroughNova(NetworkTestCase):
    """Real cloud-init in a Debian container, fed by Nova's config drive."""

    def _debian_image(self):
        if not shutil.which('debootstrap'):
            self.skipTest('debootstrap is not installed (bindep profile '
                          '"slow")')
        cache = os.environ.get(test_debian_template.CACHE_ENV) or \
            self.useFixture(fixtures.TempDir()).path
        os.makedirs(cache, exist_ok=True)
        tarball = os.path.join(cache,
                               test_debian_template.TEMPLATE + '.tar.gz')
        if not os.path.exists(tarball):
            templates.build_debian_template(tarball)
        with open(tarball, 'rb') as f:
            data = f.read()
        image_id = str(uuid.uuid4())
        self.glance.create(nova_context.get_admin_context(), {
            'id': image_id, 'name': 'debian-cloud-init', 'status': 'active',
            'disk_format': 'raw', 'container_format': 'bare',
            'visibility': 'public', 'size': len(data),
            'properties': {'os_distro': 'debian', 'os_version': '12'},
        }, data=io.BytesIO(data))
        return image_id

    def test_cloud_init_configures_the_server_from_the_config_drive(self):
        image_id = self._debian_image()
        port = self.make_port()
        user_data = ('#cloud-config\nwrite_files:\n'
                     '  - path: /root/from-nova\n'
                     '    content: hello through nova\n')
        body = self._build_server(
            name='cloudy', image_uuid=image_id, flavor_id='2',
            networks=[{'port': port['id']}])
        body.update(config_drive=True, user_data=base64.b64encode(
            user_data.encode()).decode())
        server = self._wait_for_state_change(
            self.api.post_server({'server': body}), 'ACTIVE',
            max_retries=240)
        deadline = time.monotonic() + 300
        status = ''
        while 'status: done' not in status:
            if time.monotonic() > deadline:
                self.fail('cloud-init did not finish: %s' % status)
            time.sleep(2)
            ctid = self.container(server)['ctid']
            status = self.vzhost.run('vzctl', 'exec2', ctid,
                                     'cloud-init status --long')[1]
        self.assertIn('source=/config-drive', status)
        self.assertEqual('hello through nova',
                         self.inside(server, 'cat /root/from-nova').strip())
        self.assertIn(server['id'], self.inside(
            server, 'cat /var/lib/cloud/data/instance-id'))
        self.assertEqual('cloudy', self.inside(server, 'hostname').strip())
