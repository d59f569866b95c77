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

"""Neutron ports as container interfaces: names, NETIF, vzctl arguments."""

import uuid

from nova import exception as nova_exception
from nova.network import model as network_model
import os_vif
from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import conf as openvz_conf
from nova_openvz import network
from nova_openvz.privsep import vzconf
from nova_openvz import vz4

CONF = openvz_conf.CONF
INVALID = nova_exception.InvalidInput


def make_vif(port_id=None, mac='fa:16:3e:00:00:01', v4=('10.0.0.5',),
             v6=('2001:db8::5',), dns4=('192.0.2.53',),
             dns6=('2001:db8::53',), mtu=1450, hybrid=True, active=False,
             devname=None, routes=(('192.168.0.0/16', '10.0.0.254'),)):
    """A Nova VIF on an IPv4 and an IPv6 subnet, as Neutron gives it."""
    port_id = port_id or str(uuid.uuid4())
    subnets = []
    if v4:
        subnets.append(network_model.Subnet(
            cidr='10.0.0.0/24',
            gateway=network_model.IP(address='10.0.0.1', type='gateway'),
            dns=[network_model.IP(address=a, type='dns') for a in dns4],
            ips=[network_model.FixedIP(address=a) for a in v4],
            routes=[network_model.Route(
                cidr=cidr, gateway=network_model.IP(address=gateway))
                for cidr, gateway in routes]))
    if v6:
        subnets.append(network_model.Subnet(
            cidr='2001:db8::/64',
            gateway=network_model.IP(address='2001:db8::1', type='gateway'),
            dns=[network_model.IP(address=a, type='dns') for a in dns6],
            ips=[network_model.FixedIP(address=a) for a in v6]))
    kwargs = {'mtu': mtu} if mtu is not None else {}
    net = network_model.Network(id=str(uuid.uuid4()), bridge='br-int',
                                label='private', subnets=subnets, **kwargs)
    return network_model.VIF(
        id=port_id, address=mac, network=net,
        type=network_model.VIF_TYPE_OVS,
        details={network_model.VIF_DETAILS_PORT_FILTER: True,
                 network_model.VIF_DETAILS_OVS_HYBRID_PLUG: hybrid},
        devname=devname or ('tap' + port_id[:11]), active=active,
        vnic_type=network_model.VNIC_TYPE_NORMAL)


def netif_entry(ifname, vif):
    """A NETIF device as vzctl writes it for a port's veth."""
    return ('ifname=%s,mac=%s,host_ifname=%s,host_mac=00:18:51:AA:BB:CC'
            % (ifname, vif['address'].upper(), vif['devname']))


def devices(netif):
    """The veth devices of a NETIF value, as a handle reads them."""
    return vzconf.netif_devices(netif)


def set_args(nics):
    """The ``vzctl set`` options that give a container these ports."""
    return [word for option in vz4.set_options([network.settings(nics)])
            for word in option]


def options(args):
    """``--option value`` pairs, in order."""
    return list(zip(args[::2], args[1::2]))


class _Base(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.flags = self.useFixture(config_fixture.Config(CONF)).config
        # The domain Nova gives host names becomes the search domain.
        self.flags(group='api', dhcp_domain='example.org')
        os_vif.objects.register_all()


class TestInterfaceNames(_Base):

    def test_ports_get_eth0_eth1_in_order(self):
        vifs = [make_vif(), make_vif(mac='fa:16:3e:00:00:02'),
                make_vif(mac='fa:16:3e:00:00:03')]
        nics = network.nics(network_model.NetworkInfo(vifs))
        self.assertEqual(['eth0', 'eth1', 'eth2'], [n.ifname for n in nics])
        self.assertEqual([v['id'] for v in vifs], [n.port_id for n in nics])

    def test_no_ports_no_interfaces(self):
        self.assertEqual([], network.nics(None))
        self.assertEqual([], network.nics(network_model.NetworkInfo()))

    def test_existing_ports_keep_their_names_new_ones_fill_gaps(self):
        first, second, third, fourth = (
            make_vif(mac='fa:16:3e:00:00:0%d' % i) for i in range(1, 5))
        # eth1 was detached: its name is free again; eth2 is taken.
        netif = ';'.join([netif_entry('eth0', first),
                          netif_entry('eth2', second)])
        nics = network.nics([third, second, first, fourth], devices(netif))
        self.assertEqual([('eth1', third['id']), ('eth2', second['id']),
                          ('eth0', first['id']), ('eth3', fourth['id'])],
                         [(n.ifname, n.port_id) for n in nics])

    def test_a_netif_device_of_another_port_is_not_reused(self):
        other = make_vif()
        vif = make_vif()
        nics = network.nics([vif], devices(netif_entry('eth0', other)))
        self.assertEqual(['eth1'], [n.ifname for n in nics])

    def test_interface_of(self):
        vif, other, absent = make_vif(), make_vif(), make_vif()
        netif = netif_entry('eth0', other) + ';' + netif_entry('eth3', vif)
        self.assertEqual('eth3', network.interface_of(vif, devices(netif)))
        self.assertEqual('eth0', network.interface_of(other, devices(netif)))
        self.assertIsNone(network.interface_of(absent, devices(netif)))
        self.assertIsNone(network.interface_of(vif, devices(None)))
        self.assertIsNone(network.interface_of(vif, devices('')))


class TestNic(_Base):

    def test_addresses_routes_dns_and_mtu_are_read(self):
        nic = network.Nic(make_vif(v4=('10.0.0.5', '10.0.0.6')), 'eth0')
        self.assertEqual([(4, '10.0.0.5', 24), (4, '10.0.0.6', 24),
                          (6, '2001:db8::5', 64)],
                         [tuple(a) for a in nic.addresses])
        self.assertEqual([(4, None, '10.0.0.1'), (6, None, '2001:db8::1')],
                         [tuple(g) for g in nic.gateways])
        self.assertEqual([(4, '192.168.0.0/16', '10.0.0.254')],
                         [tuple(r) for r in nic.routes])
        self.assertEqual(['192.0.2.53', '2001:db8::53'], nic.nameservers)
        self.assertEqual(1450, nic.mtu)
        self.assertEqual('FA:16:3E:00:00:01', nic.mac)

    def test_netif_add_of_a_hybrid_port_names_its_bridge(self):
        vif = make_vif(mac='fa:16:3e:ab:cd:ef')
        nic = network.Nic(vif, 'eth1')
        tap = 'tap' + vif['id'][:11]
        self.assertEqual('eth1,FA:16:3E:AB:CD:EF,%s,FE:16:3E:AB:CD:EF,qbr%s'
                         % (tap, vif['id'][:11]), vz4.netif_add(nic))

    def test_netif_add_of_a_native_ovs_port_has_no_bridge(self):
        vif = make_vif(mac='fa:16:3e:ab:cd:ef', hybrid=False)
        self.assertEqual('eth0,FA:16:3E:AB:CD:EF,%s,FE:16:3E:AB:CD:EF,'
                         % vif['devname'],
                         vz4.netif_add(network.Nic(vif, 'eth0')))

    def test_host_end_mac_is_locally_administered_unicast(self):
        # Open vSwitch never takes a bridge's MAC (and datapath ID) from a
        # locally administered address: br-int keeps its datapath ID
        # whatever containers boot (the functional network test checks
        # that on a real switch).
        for mac in ('00:18:51:12:34:56', 'fa:16:3e:ab:cd:ef',
                    '02:00:00:00:00:01'):
            host = network.host_mac(mac)
            first = int(host[:2], 16)
            self.assertTrue(first & 0x02, host)        # locally administered
            self.assertFalse(first & 0x01, host)       # unicast
            self.assertEqual(mac.upper()[2:], host[2:])

    def test_host_end_defaults_to_tap_and_the_port_id(self):
        vif = make_vif()
        vif['devname'] = None
        self.assertEqual(('tap' + vif['id'])[:14],
                         network.Nic(vif, 'eth0').host_ifname)

    def test_bad_network_data_is_refused(self):
        # nova.network.model checks addresses when it builds them, not a
        # network_info read back from Nova's cache: spoil them afterwards.
        def v4(vif):
            return vif['network']['subnets'][0]

        def v6(vif):
            return vif['network']['subnets'][1]

        def put(get, key, value):
            return lambda vif: get(vif).__setitem__(key, value)

        bad = [
            lambda vif: v4(vif)['ips'][0].__setitem__(
                'address', '10.0.0.5; reboot'),
            lambda vif: v6(vif)['ips'][0].__setitem__(
                'address', '2001:db8::zz'),
            lambda vif: v4(vif)['gateway'].__setitem__(
                'address', '10.0.0.1\nup rm -rf /'),
            lambda vif: v4(vif)['dns'][0].__setitem__(
                'address', 'ns.example.org'),
            lambda vif: v4(vif)['routes'][0]['gateway'].__setitem__(
                'address', '10.0.0.254 x'),
            lambda vif: v4(vif)['routes'][0].__setitem__(
                'cidr', 'not-a-network'),
            lambda vif: vif['network']['meta'].__setitem__('mtu', 'big'),
            put(lambda vif: vif, 'address', 'fa:16:3e:00:00'),
            put(lambda vif: vif, 'address', 'fa:16:3e:00:00:0g'),
            put(lambda vif: vif, 'address', 'fa:16:3e:00:00:01\n'),
            put(lambda vif: vif, 'devname', 'tap/../../x'),
            put(lambda vif: vif, 'devname', 'tap0123456789abc'),  # 16 chars
            put(lambda vif: vif, 'devname', '-tap'),
            put(lambda vif: vif, 'id', str(uuid.uuid4()) + '\nauto eth9'),
            put(lambda vif: vif, 'id', 'port id'),
            # Python takes anything after % as an IPv6 scope id.
            lambda vif: v6(vif)['gateway'].__setitem__(
                'address', 'fe80::1%eth0 $(reboot)'),
            lambda vif: v6(vif)['ips'][0].__setitem__(
                'address', "2001:db8::5%'\nNOVA_OPENVZ_EOF\nhalt"),
            lambda vif: v6(vif)['dns'].append({'address': 'fe80::53%x y'}),
        ]
        for spoil in bad:
            vif = make_vif()
            network.Nic(vif, 'eth0')    # good before
            spoil(vif)
            self.assertRaises(INVALID, network.Nic, vif, 'eth0')
            self.assertRaises(INVALID, network.nics, [vif])

    def test_values_reach_the_guest_in_canonical_form(self):
        vif = make_vif()
        vif['network']['subnets'][1]['ips'][0]['address'] = \
            '2001:0DB8:0000::0005'
        nic = network.Nic(vif, 'eth0')
        self.assertIn('2001:db8::5', [a.address for a in nic.addresses])

    def test_the_longest_device_name_is_taken(self):
        nic = network.Nic(make_vif(devname='tap0123456789ab'), 'eth0')
        self.assertEqual('tap0123456789ab', nic.host_ifname)


class TestSetArgs(_Base):

    def test_bridged_mode_adds_a_veth_per_port_and_each_dns_once(self):
        first = make_vif(dns4=('192.0.2.53', '192.0.2.54'))
        second = make_vif(mac='fa:16:3e:00:00:02', dns4=('192.0.2.54',),
                          v6=())
        nics = network.nics([first, second])
        self.assertEqual(
            [('--netif_add', vz4.netif_add(nics[0])),
             ('--netif_add', vz4.netif_add(nics[1])),
             ('--nameserver', '192.0.2.53'),
             ('--nameserver', '192.0.2.54'),
             ('--nameserver', '2001:db8::53'),
             ('--searchdomain', 'example.org')],
            options(set_args(nics)))
        self.assertTrue(vz4.netif_add(nics[1]).startswith(
            'eth1,FA:16:3E:00:00:02,'))
        self.assertNotIn('--ipadd', set_args(nics))

    def test_routed_mode_puts_fixed_ips_on_venet(self):
        self.flags(group='openvz', network_mode='routed')
        nics = network.nics([make_vif(v4=('10.0.0.5', '10.0.0.6')),
                             make_vif(v4=('10.0.0.7',), v6=(), dns4=())])
        self.assertEqual(
            [('--ipadd', '10.0.0.5'), ('--ipadd', '10.0.0.6'),
             ('--ipadd', '2001:db8::5'), ('--ipadd', '10.0.0.7'),
             ('--nameserver', '192.0.2.53'),
             ('--nameserver', '2001:db8::53'),
             ('--searchdomain', 'example.org')],
            options(set_args(nics)))

    def test_no_search_domain_without_nova_dhcp_domain(self):
        self.flags(group='api', dhcp_domain='')
        nics = network.nics([make_vif()])
        self.assertNotIn('--searchdomain', set_args(nics))

    def test_no_ports_no_arguments(self):
        self.assertEqual([], set_args([]))


class TestPluggedEvents(_Base):

    def test_only_inactive_ports_are_waited_for(self):
        down = make_vif(active=False)
        up = make_vif(active=True)
        unknown = make_vif()
        del unknown['active']
        self.assertEqual([('network-vif-plugged', down['id'])],
                         network.plugged_events([up, down, unknown]))

    def test_nothing_is_waited_for_without_a_timeout(self):
        self.flags(vif_plugging_timeout=0)
        self.assertEqual([], network.plugged_events([make_vif()]))

    def test_nothing_is_waited_for_in_routed_mode(self):
        self.flags(group='openvz', network_mode='routed')
        self.assertEqual([], network.plugged_events([make_vif()]))


class TestGuestHostname(testtools.TestCase):

    def test_valid_hostnames_are_kept(self):
        for name in ('web', 'web-1', 'web1.example.org', 'a' * 63,
                     '.'.join(['a' * 30, 'b' * 32])):
            self.assertEqual(name, network.guest_hostname(name))
        self.assertEqual('', network.guest_hostname(''))
        self.assertEqual('', network.guest_hostname(None))

    def test_what_nova_accepts_becomes_a_name_the_kernel_takes(self):
        # Latin-1 letters Nova keeps from a display name, upper case,
        # characters a host name cannot hold.
        for name, expected in (('café', 'cafe'), ('Web_1', 'web-1'),
                               ('-web-', 'web'), ('web..org', 'web.org'),
                               ('müll über', 'mull-uber'), ('☃', '')):
            self.assertEqual(expected, network.guest_hostname(name))

    def test_a_long_fqdn_keeps_its_first_label(self):
        # Microversion 2.94 allows FQDNs beyond the kernel's 64 bytes.
        fqdn = '.'.join(['a' * 20, 'b' * 30, 'c' * 27])
        self.assertEqual('a' * 20, network.guest_hostname(fqdn))
        self.assertEqual('d' * 63, network.guest_hostname('d' * 70))
        for name in ('café', fqdn, 'x' * 300):
            self.assertLess(len(network.guest_hostname(name)),
                            network.HOSTNAME_MAX)
