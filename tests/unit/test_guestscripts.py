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

"""Configuration written inside the guest, and the scripts that write it.

The scripts are run for real with /bin/sh, not inside a container: the
guest's root is a temporary directory (see ``_Sandbox.run``) and PATH holds
only a few file tools, so no ``ip`` runs against this machine.
"""

import os
import shutil
import subprocess

import fixtures
from nova.network import model as network_model
import os_vif
import testtools

from nova_openvz import guestscripts
from nova_openvz import network
from tests.unit import test_network

TOOLS = ('cat', 'mkdir', 'grep', 'rm', 'echo')


def make_nic(ifname='eth0', v4=('10.0.0.5', '10.0.0.6'),
             v6=('2001:db8::5', '2001:db8::6'), route6=True, **kwargs):
    vif = test_network.make_vif(v4=v4, v6=v6, **kwargs)
    if v6 and route6:
        vif['network']['subnets'][-1]['routes'].append(network_model.Route(
            cidr='2001:db8:1::/48',
            gateway=network_model.IP(address='2001:db8::fe')))
    return network.Nic(vif, ifname)


class _Base(testtools.TestCase):

    def setUp(self):
        super().setUp()
        os_vif.objects.register_all()


class TestDebianStanzas(_Base):

    def test_both_families_with_extra_addresses_and_routes(self):
        nic = make_nic()
        self.assertEqual(
            '# Written by nova-openvz for port %s\n'
            'auto eth0\n'
            'iface eth0 inet static\n'
            '    address 10.0.0.5\n'
            '    netmask 255.255.255.0\n'
            '    gateway 10.0.0.1\n'
            '    mtu 1450\n'
            '    up ip addr add 10.0.0.6/24 dev eth0\n'
            '    up ip route add 192.168.0.0/16 via 10.0.0.254 dev eth0\n'
            'iface eth0 inet6 static\n'
            '    address 2001:db8::5\n'
            '    netmask 64\n'
            '    gateway 2001:db8::1\n'
            '    up ip -6 addr add 2001:db8::6/64 dev eth0\n'
            '    up ip -6 route add 2001:db8:1::/48 via 2001:db8::fe '
            'dev eth0\n' % nic.port_id,
            guestscripts.debian_stanzas(nic))

    def test_ipv4_only_without_mtu(self):
        nic = make_nic('eth2', v4=('10.0.0.9',), v6=(), mtu=None, routes=())
        text = guestscripts.debian_stanzas(nic)
        self.assertIn('auto eth2\niface eth2 inet static\n'
                      '    address 10.0.0.9\n    netmask 255.255.255.0\n'
                      '    gateway 10.0.0.1\n', text)
        self.assertNotIn('inet6', text)
        self.assertNotIn('mtu', text)
        self.assertNotIn(' up ', text)


class TestRhelFiles(_Base):

    def test_ifcfg_and_route_files(self):
        nic = make_nic()
        files = guestscripts.rhel_files(nic)
        self.assertEqual({'ifcfg-eth0', 'route-eth0', 'route6-eth0'},
                         set(files))
        self.assertEqual(
            '# Written by nova-openvz for port %s\n'
            'DEVICE=eth0\n'
            'HWADDR=FA:16:3E:00:00:01\n'
            'ONBOOT=yes\n'
            'BOOTPROTO=none\n'
            'TYPE=Ethernet\n'
            'IPADDR=10.0.0.5\n'
            'PREFIX=24\n'
            'IPADDR1=10.0.0.6\n'
            'PREFIX1=24\n'
            'GATEWAY=10.0.0.1\n'
            'IPV6INIT=yes\n'
            'IPV6_AUTOCONF=no\n'
            'IPV6ADDR=2001:db8::5/64\n'
            'IPV6ADDR_SECONDARIES="2001:db8::6/64"\n'
            'IPV6_DEFAULTGW=2001:db8::1\n'
            'MTU=1450\n' % nic.port_id, files['ifcfg-eth0'])
        self.assertEqual('192.168.0.0/16 via 10.0.0.254 dev eth0\n',
                         files['route-eth0'])
        self.assertEqual('2001:db8:1::/48 via 2001:db8::fe dev eth0\n',
                         files['route6-eth0'])

    def test_ipv4_only_has_no_ipv6_settings_nor_route_files(self):
        nic = make_nic('eth1', v4=('10.0.0.9',), v6=(), mtu=None, routes=())
        files = guestscripts.rhel_files(nic)
        self.assertEqual(['ifcfg-eth1'], list(files))
        text = files['ifcfg-eth1']
        self.assertIn('DEVICE=eth1\n', text)
        self.assertIn('IPADDR=10.0.0.9\nPREFIX=24\n', text)
        for absent in ('IPV6', 'IPADDR1', 'MTU'):
            self.assertNotIn(absent, text)


class _Sandbox(_Base):
    """A guest root in a temporary directory and a PATH of a few tools."""

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.bin = self.useFixture(fixtures.TempDir()).path
        for tool in TOOLS:
            found = shutil.which(tool)
            if found:
                os.symlink(found, os.path.join(self.bin, tool))
        self.missing = [t for t in TOOLS[:-1]
                        if not os.path.exists(os.path.join(self.bin, t))]
        if self.missing:
            self.skipTest('needs %s' % ', '.join(self.missing))

    def fake(self, name, body):
        path = os.path.join(self.bin, name)
        with open(path, 'w') as f:
            f.write('#!/bin/sh\n' + body)
        os.chmod(path, 0o755)

    def run_script(self, script):
        # The scripts name guest files by absolute path (they run in the
        # container's root through vzctl exec2); here, with no chroot, every
        # '/etc/' in the text is pointed at the temporary root instead, and
        # self.read() maps the root back out of what the scripts wrote.
        script = script.replace('/etc/', self.root + '/etc/')
        proc = subprocess.run(['/bin/sh', '-c', script],
                              env={'PATH': self.bin}, capture_output=True,
                              text=True, check=False)
        self.assertEqual(0, proc.returncode, proc.stderr)
        return proc

    def path(self, guest_path):
        return os.path.join(self.root, guest_path.lstrip('/'))

    def read(self, guest_path):
        with open(self.path(guest_path)) as f:
            return f.read().replace(self.root, '')

    def write(self, guest_path, text):
        os.makedirs(os.path.dirname(self.path(guest_path)), exist_ok=True)
        with open(self.path(guest_path), 'w') as f:
            f.write(text.replace('/etc/', self.root + '/etc/'))

    def files(self):
        found = []
        for top, _dirs, names in os.walk(self.root):
            found += [os.path.join(top, n)[len(self.root):] for n in names]
        return sorted(found)


class TestNetworkScript(_Sandbox):

    def test_debian_files_and_source_lines(self):
        nics = [make_nic('eth0'), make_nic('eth1', v4=('10.0.0.9',), v6=(),
                                           mac='fa:16:3e:00:00:02')]
        self.write('/etc/network/interfaces', 'auto lo\niface lo inet '
                   'loopback\n')
        self.run_script(guestscripts.network_script(nics))
        for nic in nics:
            self.assertEqual(guestscripts.debian_stanzas(nic),
                             self.read('/etc/network/interfaces.d/' +
                                       nic.ifname))
        self.assertEqual('auto lo\niface lo inet loopback\n'
                         'source /etc/network/interfaces.d/eth0\n'
                         'source /etc/network/interfaces.d/eth1\n',
                         self.read('/etc/network/interfaces'))
        self.assertEqual(['/etc/network/interfaces',
                          '/etc/network/interfaces.d/eth0',
                          '/etc/network/interfaces.d/eth1'], self.files())

    def test_source_lines_are_added_once(self):
        script = guestscripts.network_script([make_nic()])
        self.run_script(script)
        self.run_script(script)
        self.assertEqual('source /etc/network/interfaces.d/eth0\n',
                         self.read('/etc/network/interfaces'))

    def test_no_source_line_when_the_directory_is_sourced(self):
        # Debian's own file.
        text = 'source /etc/network/interfaces.d/*\nauto lo\n'
        self.write('/etc/network/interfaces', text)
        self.run_script(guestscripts.network_script([make_nic()]))
        self.assertEqual(text, self.read('/etc/network/interfaces'))
        self.assertTrue(os.path.exists(
            self.path('/etc/network/interfaces.d/eth0')))

    def test_rhel_files(self):
        os.makedirs(self.path('/etc/sysconfig/network-scripts'))
        nics = [make_nic('eth0'), make_nic('eth1', v4=('10.0.0.9',), v6=(),
                                           routes=())]
        self.run_script(guestscripts.network_script(nics))
        expected = []
        for nic in nics:
            for name, text in guestscripts.rhel_files(nic).items():
                path = '/etc/sysconfig/network-scripts/' + name
                expected.append(path)
                self.assertEqual(text, self.read(path))
        self.assertEqual(sorted(expected), self.files())
        self.assertIn('/etc/sysconfig/network-scripts/route6-eth0',
                      expected)

    def test_redhat_release_means_rhel_too(self):
        self.write('/etc/redhat-release', 'AlmaLinux release 9\n')
        self.run_script(guestscripts.network_script([make_nic()]))
        self.assertIn('/etc/sysconfig/network-scripts/ifcfg-eth0',
                      self.files())
        self.assertFalse(os.path.exists(self.path('/etc/network')))

    def test_the_running_guest_gets_the_addresses_when_it_has_ip(self):
        log = os.path.join(self.root, 'ip.log')
        self.fake('ip', 'echo "$@" >> %s\n' % log)
        self.run_script(guestscripts.network_script([make_nic()]))
        with open(log) as f:
            calls = f.read().splitlines()
        self.assertEqual([
            'link set dev eth0 mtu 1450',
            'link set dev eth0 up',
            '-4 addr replace 10.0.0.5/24 dev eth0',
            '-4 addr replace 10.0.0.6/24 dev eth0',
            '-6 addr replace 2001:db8::5/64 dev eth0',
            '-6 addr replace 2001:db8::6/64 dev eth0',
            '-4 route replace default via 10.0.0.1 dev eth0',
            '-6 route replace default via 2001:db8::1 dev eth0',
            '-4 route replace 192.168.0.0/16 via 10.0.0.254 dev eth0',
            '-6 route replace 2001:db8:1::/48 via 2001:db8::fe dev eth0'],
            calls)


class TestRemoveInterfaceScript(_Sandbox):

    def test_debian_files_and_the_source_line_go(self):
        self.write('/etc/network/interfaces', 'auto lo\n')
        self.run_script(guestscripts.network_script([
            make_nic('eth0'),
            make_nic('eth1', v4=('10.0.0.9',), v6=())]))
        self.run_script(guestscripts.remove_interface_script('eth0'))
        self.assertEqual('auto lo\nsource /etc/network/interfaces.d/eth1\n',
                         self.read('/etc/network/interfaces'))
        self.assertEqual(['/etc/network/interfaces',
                          '/etc/network/interfaces.d/eth1'], self.files())

    def test_the_last_source_line_goes(self):
        self.run_script(guestscripts.network_script([make_nic('eth0')]))
        self.run_script(guestscripts.remove_interface_script('eth0'))
        self.assertEqual('', self.read('/etc/network/interfaces'))
        self.assertEqual(['/etc/network/interfaces'], self.files())

    def test_rhel_files_go(self):
        os.makedirs(self.path('/etc/sysconfig/network-scripts'))
        self.write('/etc/sysconfig/network-scripts/ifcfg-lo', 'DEVICE=lo\n')
        self.run_script(guestscripts.network_script([make_nic('eth0'),
                                                     make_nic('eth1')]))
        self.run_script(guestscripts.remove_interface_script('eth0'))
        self.assertEqual(['/etc/sysconfig/network-scripts/ifcfg-eth1',
                          '/etc/sysconfig/network-scripts/ifcfg-lo',
                          '/etc/sysconfig/network-scripts/route-eth1',
                          '/etc/sysconfig/network-scripts/route6-eth1'],
                         self.files())

    def test_nothing_to_remove_is_fine(self):
        self.run_script(guestscripts.remove_interface_script('eth3'))
        self.assertEqual([], self.files())

    def test_a_start_forgets_interfaces_detached_while_stopped(self):
        self.write('/etc/network/interfaces', 'auto lo\n')
        self.write('/etc/network/interfaces.d/guest-own', 'auto dummy0\n')
        self.run_script(guestscripts.network_script([make_nic('eth0'),
                                                     make_nic('eth1')]))
        # The start after eth1 was detached writes eth0 and prunes eth1;
        # the guest's own file stays.
        self.run_script(guestscripts.network_script([make_nic('eth0')],
                                                    prune=True))
        self.assertEqual(['/etc/network/interfaces',
                          '/etc/network/interfaces.d/eth0',
                          '/etc/network/interfaces.d/guest-own'],
                         self.files())
        self.assertEqual('auto lo\nsource /etc/network/interfaces.d/eth0\n',
                         self.read('/etc/network/interfaces'))


class TestPasswordScript(_Sandbox):

    PASSWORDS = ('simple', 'with spaces  and  tabs\t', "it's", 'say "hi"',
                 '$HOME $(id) `id` ${x}', 'back\\slash\\n\\', '%s%d %%',
                 '-n', ' leading and trailing ', 'NOVA_OPENVZ',
                 'NOVA_OPENVZ_EOF')

    def setUp(self):
        super().setUp()
        self.out = os.path.join(self.root, 'stdin')
        self.args = os.path.join(self.root, 'args')

    def result(self):
        with open(self.out) as f:
            return f.read()

    def test_chpasswd_gets_user_and_password_on_stdin(self):
        self.fake('chpasswd', 'cat > %s\n' % self.out)
        for password in self.PASSWORDS:
            self.run_script(guestscripts.password_script('root', password))
            self.assertEqual('root:%s\n' % password, self.result())

    def test_an_empty_password_is_refused(self):
        # Else root of the guest would have no password at all.
        self.assertRaises(ValueError, guestscripts.password_script, 'root',
                          '')

    def test_passwd_when_there_is_no_chpasswd(self):
        self.fake('passwd', 'echo "$@" > %s\ncat > %s\n'
                  % (self.args, self.out))
        for password in self.PASSWORDS:
            self.run_script(guestscripts.password_script('root', password))
            self.assertEqual('%s\n%s\n' % (password, password),
                             self.result())
            with open(self.args) as f:
                self.assertEqual('root\n', f.read())

    def test_the_password_is_not_on_a_command_line(self):
        self.fake('chpasswd', 'echo "$@" > %s\ncat > %s\n'
                  % (self.args, self.out))
        script = guestscripts.password_script('root', 's3cret pass')
        self.run_script(script)
        with open(self.args) as f:
            self.assertEqual('\n', f.read())
        self.assertNotIn('s3cret', script.split('\n', 1)[0])

    def test_waits_for_cloud_init_to_finish_with_the_user(self):
        # Tempest changes the password a second after the server is
        # ACTIVE: cloud-init may still be making or locking the user.
        calls = os.path.join(self.root, 'calls')
        self.fake('cloud-init', 'echo x >> %s\n'
                  'if [ $(cat %s | wc -l) -lt 3 ]; then\n'
                  '    echo "status: running"\n'
                  'else\n'
                  '    echo "status: done"\n'
                  'fi\n' % (calls, calls))
        for tool in ('wc', 'sleep'):
            os.symlink(shutil.which(tool), os.path.join(self.bin, tool))
        self.fake('chpasswd', 'wc -l < %s > %s\n' % (calls, self.out))
        self.run_script(guestscripts.password_script('debian', 'pw'))
        # Asked three times; chpasswd only once cloud-init was done.
        self.assertEqual('3', self.result().strip())

    def test_cloud_init_that_never_ends_delays_but_does_not_block(self):
        self.fake('cloud-init', 'echo "status: running"\n')
        self.fake('sleep', ':\n')
        self.fake('chpasswd', 'cat > %s\n' % self.out)
        self.run_script(guestscripts.password_script('debian', 'pw'))
        self.assertEqual('debian:pw\n', self.result())

    def test_a_failing_chpasswd_fails_the_script(self):
        self.fake('chpasswd', 'exit 3\n')
        proc = subprocess.run(
            ['/bin/sh', '-c', guestscripts.password_script('root', 'x')],
            env={'PATH': self.bin}, capture_output=True, check=False)
        self.assertNotEqual(0, proc.returncode)

    def test_line_breaks_are_refused(self):
        for password in ('a\nroot:other', 'a\r', 'a\0b', '\n'):
            self.assertRaises(ValueError, guestscripts.password_script, 'root',
                              password)
