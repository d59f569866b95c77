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

"""Shell scripts the driver runs inside a container.

Each function returns one script for
:meth:`nova_openvz.container.Container.run_script` (``vzctl exec2 <CT>
-``): the guest's network configuration, its password, and the device
nodes of attached volumes.

vzctl configures the host name, DNS and venet addresses inside a container
with its distribution scripts; the addresses of veth interfaces are the
guest's own business.  The driver writes them itself, the way the guest's
distribution keeps them, and applies them to the running container:

* Debian and Ubuntu (ifupdown): ``/etc/network/interfaces.d/<ifname>``,
  sourced from ``/etc/network/interfaces`` (Debian's file already sources
  the whole directory; otherwise one ``source`` line per interface is
  added);
* RHEL family (network-scripts): ``/etc/sysconfig/network-scripts/``
  ``ifcfg-<ifname>``, ``route-<ifname>`` and ``route6-<ifname>``.

The guest is recognised from inside: ``/etc/sysconfig/network-scripts``
or ``/etc/redhat-release`` means RHEL family, anything else Debian.

Everything runs as one shell script given to ``vzctl exec2 <CT> -`` on its
standard input, inside the container's own root, so guest paths are
resolved by the guest (a symlink there cannot point the host at its own
files) and secrets never appear on a command line.
"""

import ipaddress
import secrets

#: Ends every here-document; the values inside are validated not to hold
#: a line of their own (addresses, names, hashes).
_EOF = 'NOVA_OPENVZ_EOF'

_DETECT = """set -e
if [ -d /etc/sysconfig/network-scripts ] || [ -f /etc/redhat-release ]; then
    layout=rhel
else
    layout=debian
fi
put() { mkdir -p "${1%/*}"; cat > "$1"; }
"""

_DEBIAN_SOURCE = """if ! grep -qs '^source /etc/network/interfaces.d/\\*' \\
        /etc/network/interfaces &&
   ! grep -qxs 'source /etc/network/interfaces.d/%(ifname)s' \\
        /etc/network/interfaces; then
    echo 'source /etc/network/interfaces.d/%(ifname)s' \\
        >> /etc/network/interfaces
fi
"""


def _netmask(address):
    network = ipaddress.ip_interface('%s/%d' % (address.address,
                                                address.prefixlen))
    if address.version == 4:
        return str(network.netmask)
    return str(address.prefixlen)


def debian_stanzas(nic):
    """The ifupdown stanzas of one interface."""
    lines = ['# Written by nova-openvz for port %s' % nic.port_id,
             'auto %s' % nic.ifname]
    for version, family in ((4, 'inet'), (6, 'inet6')):
        addresses = [a for a in nic.addresses if a.version == version]
        if not addresses:
            continue
        first = addresses[0]
        lines += ['iface %s %s static' % (nic.ifname, family),
                  '    address %s' % first.address,
                  '    netmask %s' % _netmask(first)]
        gateways = [g for g in nic.gateways if g.version == version]
        if gateways:
            lines.append('    gateway %s' % gateways[0].gateway)
        if nic.mtu and version == 4:
            lines.append('    mtu %d' % nic.mtu)
        ip = 'ip' if version == 4 else 'ip -6'
        for extra in addresses[1:]:
            lines.append('    up %s addr add %s/%d dev %s' % (
                ip, extra.address, extra.prefixlen, nic.ifname))
        for route in nic.routes:
            if route.version == version:
                lines.append('    up %s route add %s via %s dev %s' % (
                    ip, route.cidr, route.gateway, nic.ifname))
    return '\n'.join(lines) + '\n'


def rhel_files(nic):
    """``{file name: text}`` of one interface under network-scripts."""
    ifcfg = ['# Written by nova-openvz for port %s' % nic.port_id,
             'DEVICE=%s' % nic.ifname, 'HWADDR=%s' % nic.mac,
             'ONBOOT=yes', 'BOOTPROTO=none', 'TYPE=Ethernet']
    v4 = [a for a in nic.addresses if a.version == 4]
    v6 = [a for a in nic.addresses if a.version == 6]
    for index, address in enumerate(v4):
        suffix = str(index) if index else ''
        ifcfg += ['IPADDR%s=%s' % (suffix, address.address),
                  'PREFIX%s=%d' % (suffix, address.prefixlen)]
    for gateway in nic.gateways:
        if gateway.version == 4:
            ifcfg.append('GATEWAY=%s' % gateway.gateway)
            break
    if v6:
        ifcfg += ['IPV6INIT=yes', 'IPV6_AUTOCONF=no',
                  'IPV6ADDR=%s/%d' % (v6[0].address, v6[0].prefixlen)]
        if len(v6) > 1:
            ifcfg.append('IPV6ADDR_SECONDARIES="%s"' % ' '.join(
                '%s/%d' % (a.address, a.prefixlen) for a in v6[1:]))
        for gateway in nic.gateways:
            if gateway.version == 6:
                ifcfg.append('IPV6_DEFAULTGW=%s' % gateway.gateway)
                break
    if nic.mtu:
        ifcfg.append('MTU=%d' % nic.mtu)
    files = {'ifcfg-' + nic.ifname: '\n'.join(ifcfg) + '\n'}
    for version, name in ((4, 'route-'), (6, 'route6-')):
        routes = ['%s via %s dev %s' % (r.cidr, r.gateway, nic.ifname)
                  for r in nic.routes if r.version == version]
        if routes:
            files[name + nic.ifname] = '\n'.join(routes) + '\n'
    return files


def _heredoc(path, text):
    return 'put %s <<\'%s\'\n%s%s\n' % (path, _EOF, text, _EOF)


def _live(nic):
    """Commands that give the running container the interface's config."""
    commands = ['ip link set dev %s up' % nic.ifname]
    if nic.mtu:
        commands.insert(0, 'ip link set dev %s mtu %d' % (nic.ifname,
                                                          nic.mtu))
    for address in nic.addresses:
        commands.append('ip %s addr replace %s/%d dev %s' % (
            '-4' if address.version == 4 else '-6', address.address,
            address.prefixlen, nic.ifname))
    for gateway in nic.gateways:
        commands.append('ip %s route replace default via %s dev %s' % (
            '-4' if gateway.version == 4 else '-6', gateway.gateway,
            nic.ifname))
    for route in nic.routes:
        commands.append('ip %s route replace %s via %s dev %s' % (
            '-4' if route.version == 4 else '-6', route.cidr, route.gateway,
            nic.ifname))
    return commands


#: Shell function that forgets one interface's files (and source line).
_FORGET = """forget() {
    rm -f /etc/sysconfig/network-scripts/ifcfg-"$1" \\
        /etc/sysconfig/network-scripts/route-"$1" \\
        /etc/sysconfig/network-scripts/route6-"$1" \\
        /etc/network/interfaces.d/"$1"
    if [ -f /etc/network/interfaces ]; then
        grep -vx "source /etc/network/interfaces.d/$1" \\
            /etc/network/interfaces > /etc/network/interfaces.nova || :
        cat /etc/network/interfaces.nova > /etc/network/interfaces
        rm -f /etc/network/interfaces.nova
    fi
}
"""

#: Forget the files this driver wrote for interfaces the container no
#: longer has (detached while it was stopped); $keep lists the others.
_PRUNE = """for f in /etc/network/interfaces.d/* \\
         /etc/sysconfig/network-scripts/ifcfg-*; do
    grep -qs '^# Written by nova-openvz' "$f" || continue
    name=${f##*/}
    name=${name#ifcfg-}
    case " $keep " in *" $name "*) ;; *) forget "$name" ;; esac
done
"""


def network_script(nic_list, prune=False):
    """Shell script that writes and applies the interfaces ``nic_list``.

    With ``prune`` (``nic_list`` is then every interface of the container)
    it also forgets what it wrote for interfaces that are gone.
    """
    parts = [_DETECT]
    if prune:
        keep = ' '.join(nic.ifname for nic in nic_list)
        parts += [_FORGET, 'keep="%s"\n' % keep, _PRUNE]
    parts.append('if [ "$layout" = rhel ]; then\n')
    for nic in nic_list:
        for name, text in sorted(rhel_files(nic).items()):
            parts.append(_heredoc('/etc/sysconfig/network-scripts/' + name,
                                  text))
    parts.append('else\n')
    for nic in nic_list:
        parts.append(_heredoc('/etc/network/interfaces.d/' + nic.ifname,
                              debian_stanzas(nic)))
        parts.append(_DEBIAN_SOURCE % {'ifname': nic.ifname})
    parts.append('fi\n')
    # Applied live too: the guest's init brought its interfaces up before
    # these files existed.  A guest without ip(8) gets them at next boot.
    parts.append('command -v ip >/dev/null 2>&1 || exit 0\n')
    for nic in nic_list:
        parts += [command + '\n' for command in _live(nic)]
    return ''.join(parts)


def remove_interface_script(ifname):
    """Shell script that forgets interface ``ifname``'s configuration."""
    return _DETECT + _FORGET + 'forget %s\n' % ifname


#: Seconds a password change waits for cloud-init's first boot: well
#: within Nova's RPC timeout (60 s), since the API waits for the answer.
CLOUD_INIT_WAIT = 40

# A password set right after boot races cloud-init, which then creates the
# default user or locks its password (chpasswd fails, or the password is
# locked after it was set): wait while cloud-init says it is not done.
_CLOUD_INIT_WAIT = (
    "if command -v cloud-init >/dev/null 2>&1; then\n"
    "    n=0\n"
    "    while [ \"$n\" -lt %d ]; do\n"
    "        case \"$(cloud-init status 2>/dev/null || true)\" in\n"
    "            *running*|*'not started'*) sleep 1; n=$((n + 1)) ;;\n"
    "            *) break ;;\n"
    "        esac\n"
    "    done\n"
    "fi\n" % CLOUD_INIT_WAIT)


def password_script(user, password):
    """Shell script that sets ``user``'s password with the guest's tools.

    The password travels on the script's standard input only (read from a
    here-document into a variable, and given to chpasswd or passwd by the
    shell's builtin printf), never on a command line.  In a guest with
    cloud-init it first waits (at most ``CLOUD_INIT_WAIT`` seconds) for
    cloud-init's boot stages to end.
    """
    if not password:
        raise ValueError('an empty password would let anyone log in')
    if '\n' in password or '\r' in password or '\0' in password:
        raise ValueError('a password cannot hold line breaks')
    # The here-document's end marker must not be the password itself.
    eof = _EOF
    while eof in password:
        eof = '%s_%s' % (_EOF, secrets.token_hex(4))
    read_password = ("set -e\n"
                     "IFS= read -r pw <<'%(eof)s'\n%(password)s\n%(eof)s\n"
                     % {'eof': eof, 'password': password})
    return (read_password + _CLOUD_INIT_WAIT +
            "if command -v chpasswd >/dev/null 2>&1; then\n"
            "    printf '%%s:%%s\\n' '%(user)s' \"$pw\" | chpasswd\n"
            "else\n"
            "    printf '%%s\\n%%s\\n' \"$pw\" \"$pw\" | "
            "passwd '%(user)s' >/dev/null\n"
            "fi\n" % {'user': user})


def make_node_script(name, major, minor):
    """Make block device node ``/dev/<name>`` now (a volume attaching).

    The same line as the container's start script keeps
    (:mod:`nova_openvz.privsep.containers`).
    """
    return 'rm -f /dev/%s; mknod -m 0660 /dev/%s b %d %d\n' % (
        name, name, major, minor)


def remove_node_script(name):
    """Remove device node ``/dev/<name>`` (a volume detaching)."""
    return 'rm -f /dev/%s\n' % name


#: Prints the container's mount table (which file systems use a volume).
MOUNTINFO_SCRIPT = 'cat /proc/self/mountinfo\n'
