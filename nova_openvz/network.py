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

"""Neutron ports as container network devices.

Bridged mode (the default): every port becomes a veth pair that vzctl
makes at container start from the container's NETIF.  The container end is
``eth<N>`` with the port's MAC; the host end keeps the name Nova gives the
port's device (``tap<port id>``), so Neutron's agent finds it, and its
firewall and anti-spoofing rules apply there, on the host.  os-vif plugs
the port before the container starts:

* Open vSwitch hybrid (``VIFBridge``): os-vif makes the per-port Linux
  bridge ``qbr...`` joined to the integration bridge; vzctl puts the host
  end into that bridge (NETIF ``bridge=``).
* native Open vSwitch (``VIFOpenVSwitch``): os-vif adds the host end to the
  integration bridge with Neutron's external IDs, before the device exists;
  Open vSwitch attaches it when vzctl creates it.

Routed mode (``[openvz] network_mode = routed``): the ports' fixed IPs go
on the container's venet device (vzctl ``--ipadd``) and the host routes
them; nothing is plugged into a switch.
"""

import collections
import ipaddress
import re
import unicodedata

from nova import exception as nova_exception
from nova.network import model as network_model
from nova.network import os_vif_util
import os_vif
from oslo_log import log as logging

from nova_openvz import conf as openvz_conf
from nova_openvz import settings as vz_settings

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF

#: Linux limits interface names to IFNAMSIZ - 1 characters.
_IFNAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z')
_MAC_RE = re.compile(r'^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z')
_PORT_ID_RE = re.compile(r'^[A-Za-z0-9-]{1,64}\Z')

Address = collections.namedtuple('Address', 'version address prefixlen')
Route = collections.namedtuple('Route', 'version cidr gateway')


class Nic(object):
    """One port as the container sees it and as vzctl makes it."""

    def __init__(self, vif, ifname):
        self.vif = vif
        self.ifname = ifname
        self.port_id = vif['id']
        self.mac = vif['address'].upper()
        self.host_ifname = _host_ifname(vif)
        #: The host end's MAC (see :func:`host_mac`).
        self.host_mac = host_mac(self.mac)
        self.mtu = vif['network'].get_meta('mtu') if vif.get('network') \
            else None
        self.addresses = []
        self.gateways = []
        self.routes = []
        self.nameservers = []
        for subnet in (vif.get('network') or {}).get('subnets', []):
            prefixlen = subnet.as_netaddr().prefixlen
            version = subnet['version']
            for ip in subnet['ips']:
                self.addresses.append(Address(version, ip['address'],
                                              prefixlen))
            gateway = (subnet.get('gateway') or {}).get('address')
            if gateway:
                self.gateways.append(Route(version, None, gateway))
            for route in subnet.get('routes') or []:
                self.routes.append(Route(version, route['cidr'],
                                         route['gateway']['address']))
            for dns in subnet.get('dns') or []:
                if dns['address'] not in self.nameservers:
                    self.nameservers.append(dns['address'])
        _check_name(self.host_ifname, vif)
        _check_values(self)
        if not _MAC_RE.match(self.mac):
            raise nova_exception.InvalidInput(
                reason='port %s has no usable MAC address %r'
                       % (self.port_id, vif['address']))

    @property
    def bridge(self):
        """The Linux bridge vzctl joins the host end to, or None."""
        osvif = to_osvif(self.vif)
        if osvif is not None and hasattr(osvif, 'bridge_name') and \
                not isinstance(osvif, os_vif.objects.vif.VIFOpenVSwitch):
            return osvif.bridge_name
        return None


def host_mac(mac):
    """``mac`` with ``FE`` as first octet: locally administered, unicast.

    Left to vzctl, the host end of a veth gets a MAC in OpenVZ's
    ``00:18:51`` range.  Open vSwitch takes a bridge's own MAC, and from it
    the datapath ID, from the lowest universally administered MAC among its
    ports, so every boot could change br-int's datapath ID, and Neutron's
    OVS agent then takes the switch for restarted and stops wiring ports.
    A locally administered MAC (as libvirt gives its taps) is never picked.
    """
    return 'FE' + mac.upper()[2:]


def _check_name(name, vif):
    if not _IFNAME_RE.match(name or ''):
        raise nova_exception.InvalidInput(
            reason='port %s has an unusable device name %r'
                   % (vif['id'], name))


def _plain_ip(text):
    """The canonical text of an IP address without an IPv6 scope id.

    Python accepts any characters after ``%`` as a scope id, spaces and
    ``$(...)`` included, and these values go into the guest's scripts.
    """
    address = ipaddress.ip_address(text)
    if getattr(address, 'scope_id', None):
        raise ValueError('%r has a scope id' % (text,))
    return str(address)


def _plain_network(text):
    network = ipaddress.ip_network(text, strict=False)
    _plain_ip(str(network.network_address))
    return str(network)


def _check_values(nic):
    """Refuse what could not be an address: it goes into guest files.

    Each value is replaced by its canonical text, so what reaches a guest
    script is what :mod:`ipaddress` printed, never what the port said.
    """
    try:
        if not _PORT_ID_RE.match(nic.port_id):
            raise ValueError('bad port ID')
        nic.addresses = [a._replace(address=_plain_ip(a.address))
                         for a in nic.addresses]
        nic.gateways, nic.routes = (
            [r._replace(gateway=_plain_ip(r.gateway),
                        cidr=r.cidr and _plain_network(r.cidr))
             for r in routes] for routes in (nic.gateways, nic.routes))
        nic.nameservers = [_plain_ip(n) for n in nic.nameservers]
        if nic.mtu is not None:
            nic.mtu = int(nic.mtu)
    except ValueError as e:
        raise nova_exception.InvalidInput(
            reason='port %r has unusable network data: %s'
                   % (nic.port_id, e))


def routed():
    return CONF.openvz.network_mode == 'routed'


def nics(network_info, devices=()):
    """The ports of ``network_info`` as :class:`Nic`, in order.

    ``devices`` are the container's veth devices
    (:attr:`nova_openvz.container.Container.interfaces`): a port whose
    device is already there keeps its container interface name (the host
    end of each veth is named after the port's device, so they alone say
    which port each interface carries); new ports get the lowest free
    ``ethN``.
    """
    by_host_name = {d.get('host_ifname'): d['ifname'] for d in devices}
    taken = {d['ifname'] for d in devices}
    result = []
    for vif in network_info or []:
        ifname = by_host_name.get(_host_ifname(vif))
        if ifname is None:
            ifname = _free_ifname(taken)
            taken.add(ifname)
        result.append(Nic(vif, ifname))
    return result


def _host_ifname(vif):
    return vif.get('devname') or ('tap' + vif['id'])[:14]


def _free_ifname(taken):
    index = 0
    while 'eth%d' % index in taken:
        index += 1
    return 'eth%d' % index


def interface_of(vif, devices):
    """The container interface carrying port ``vif``, or None."""
    for device in devices:
        if device.get('host_ifname') == _host_ifname(vif):
            return device['ifname']
    return None


def settings(nic_list):
    """The :class:`~nova_openvz.settings.Ports` giving a container these.

    Each nameserver once; the search domain is the domain Nova gives
    instance host names.
    """
    nameservers = []
    for nic in nic_list:
        nameservers += [ns for ns in nic.nameservers if ns not in nameservers]
    return vz_settings.Ports(
        nics=tuple(nic_list), routed=routed(),
        nameservers=tuple(nameservers),
        searchdomain=(CONF.api.dhcp_domain or '') if nic_list else '')


def to_osvif(vif):
    """The os-vif object of a Nova VIF, or None when os-vif has no plugin."""
    try:
        return os_vif_util.nova_to_osvif_vif(vif)
    except nova_exception.NovaException as e:
        raise nova_exception.VirtualInterfacePlugException(
            'port %s cannot be plugged: %s' % (vif['id'],
                                               e.format_message()))


def _plug_object(vif):
    osvif = to_osvif(vif)
    if osvif is None:
        raise nova_exception.VirtualInterfacePlugException(
            'port %s has VIF type %s, which os-vif cannot plug'
            % (vif['id'], vif['type']))
    # An unset field raises NotImplementedError, not AttributeError.
    profile = osvif.port_profile if osvif.obj_attr_is_set('port_profile') \
        else None
    if isinstance(osvif, os_vif.objects.vif.VIFOpenVSwitch) and \
            profile is not None and 'create_port' in profile.fields:
        # No hypervisor adds the device to the switch, as libvirt does
        # for VMs: os-vif adds the port, with Neutron's IDs, ahead of the
        # veth that vzctl makes at start.
        profile.create_port = True
    return osvif


def plug(instance, network_info):
    """Plug every port with os-vif (nothing in routed mode)."""
    if routed():
        return
    info = os_vif_util.nova_to_osvif_instance(instance)
    for vif in network_info or []:
        osvif = _plug_object(vif)
        LOG.debug('Plugging %s', osvif, instance=instance)
        try:
            os_vif.plug(osvif, info)
        except Exception as e:
            raise nova_exception.VirtualInterfacePlugException(
                'os-vif could not plug port %s: %s' % (vif['id'], e))


def unplug(instance, network_info, quiet=False):
    """Unplug every port; ``quiet`` logs failures instead of raising."""
    if routed():
        return
    info = os_vif_util.nova_to_osvif_instance(instance)
    for vif in network_info or []:
        try:
            os_vif.unplug(_plug_object(vif), info)
        except Exception as e:
            if not quiet:
                raise nova_exception.VirtualInterfaceUnplugException(
                    reason='port %s: %s' % (vif['id'], e))
            LOG.warning('Could not unplug port %s: %s', vif['id'], e,
                        instance=instance)


def replug_switch_ports(instance, network_info):
    """Plug the native Open vSwitch ports again, before a restart.

    A restart makes new veth devices under the old names.  Ports in a
    ``qbr`` bridge are joined again by vzctl; a switch port is deleted and
    added again, as libvirt does for a VM's tap, so Open vSwitch takes the
    new device when it appears.
    """
    if routed():
        return
    native = [vif for vif in network_info or []
              if isinstance(to_osvif(vif), os_vif.objects.vif.VIFOpenVSwitch)]
    unplug(instance, native, quiet=True)
    plug(instance, native)


def plugged_events(network_info):
    """Neutron events to wait for: ports not yet active (as libvirt)."""
    if routed() or not CONF.vif_plugging_timeout:
        return []
    return [('network-vif-plugged', vif['id'])
            for vif in network_info or []
            if vif.get('active', True) is False and
            vif['vnic_type'] != network_model.VNIC_TYPE_REMOTE_MANAGED]


def initialize():
    """Load os-vif's plugins (once per process)."""
    os_vif.initialize()


#: What a Linux host name holds at most (HOST_NAME_MAX, sethostname(2)).
HOSTNAME_MAX = 64
_LABEL_RE = re.compile(r'[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z')


def guest_hostname(hostname):
    """The host name the container gets for Nova's ``instance.hostname``.

    Nova keeps Latin-1 letters of a display name in ``hostname`` ("café")
    and, since microversion 2.94, takes FQDNs of up to 255 characters; a
    container's kernel takes neither (vzctl start fails).  As a libvirt
    guest would end up with, letters lose their accents, anything else
    becomes ``-``, and a name longer than the kernel allows keeps its first
    label.  '' (no host name) when nothing usable is left.
    """
    text = unicodedata.normalize('NFKD', hostname or '')
    text = text.encode('ascii', 'ignore').decode().lower()
    labels = [re.sub(r'-+', '-', re.sub(r'[^a-z0-9-]', '-', label)
                     ).strip('-')[:63].strip('-')
              for label in text.split('.')]
    labels = [label for label in labels if _LABEL_RE.match(label)]
    name = '.'.join(labels)
    if len(name) >= HOSTNAME_MAX:
        name = labels[0]
    return name
