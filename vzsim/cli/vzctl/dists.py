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

"""Distribution scripts' work on the guest's files.

Hostname, DNS and passwords, as vzctl's ``dists`` scripts would do them
(reference 4.7).
"""

import os

from vzsim.cli.vzctl.common import E_CHANGEPASS
from vzsim.cli.vzctl.common import Failure


def dist_config(host, config):
    """``(path, found)`` of the distribution config vzctl would use.

    vzctl tries ``dists/<ostemplate>.conf``, then strips trailing ``-xxx``
    parts; ``found`` is False when it falls back to ``dists/default``.
    """
    name = config.get('OSTEMPLATE')
    while name:
        path = os.path.join(host.dists_dir, name + '.conf')
        if os.path.exists(path):
            return path, True
        name = name.rpartition('-')[0]
    return os.path.join(host.dists_dir, 'default'), False


def dist_warning(host, config):
    """vzctl's warning when no distribution config matches, or None."""
    path, found = dist_config(host, config)
    if found:
        return None
    if not config.get('OSTEMPLATE'):
        return ('Warning: distribution not specified in CT config, using '
                'defaults from %s' % path)
    return ('Warning: configuration file for distribution %s not found, '
            'using defaults from %s' % (config['OSTEMPLATE'], path))


def _guest_file(root, relative):
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def _host_nameservers(host):
    for path in (host.path('etc/resolv.conf'), '/etc/resolv.conf'):
        try:
            with open(path) as f:
                return [line.split()[1] for line in f
                        if line.startswith('nameserver') and
                        len(line.split()) > 1]
        except OSError:
            continue
    return []


def configure_guest(host, root, hostname=None, nameservers=None,
                    searchdomains=None):
    """What the set_hostname/set_dns distribution scripts do in the guest."""
    if hostname is not None:
        with open(_guest_file(root, 'etc/hostname'), 'w') as f:
            f.write(hostname + '\n')
    if nameservers is None and searchdomains is None:
        return
    if nameservers == ['inherit']:
        nameservers = _host_nameservers(host)
    path = _guest_file(root, 'etc/resolv.conf')
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    if searchdomains is not None:
        lines = [ln for ln in lines if not ln.startswith('search')]
        lines.insert(0, 'search ' + ' '.join(searchdomains))
    if nameservers is not None:
        lines = [ln for ln in lines if not ln.startswith('nameserver')]
        lines += ['nameserver ' + ns for ns in nameservers]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


#: set_userpass.sh's work for a guest whose tools really run: the
#: password (first line of stdin) for user $1, through the guest's
#: chpasswd, else busybox passwd.
GUEST_SET_PASSWORD = r'''IFS= read -r pw
if command -v chpasswd >/dev/null 2>&1; then
    printf '%s:%s\n' "$1" "$pw" | chpasswd
else
    printf '%s\n%s\n' "$pw" "$pw" | passwd "$1" >/dev/null 2>&1
fi'''


def set_password(root, user, password, call=None):
    """What set_userpass.sh does: add the user if needed, set the hash.

    With ``call`` on a real kernel the guest's own tools hash and store
    the password; otherwise a ``$sim$`` hash is written from here.
    """
    import hashlib
    import secrets
    etc = os.path.join(root, 'etc')
    if not os.path.isdir(etc):
        raise Failure(E_CHANGEPASS, 'Password change failed: %s does not '
                                    'exist' % etc)
    real = call is not None and call.kernel.real
    if real:
        hashed = '!'   # locked until the guest's tool sets it below
    else:
        salt = secrets.token_hex(8)
        hashed = '$sim$%s$%s' % (salt, hashlib.sha512(
            (salt + password).encode()).hexdigest())
    entries = {'passwd': '%s:x:%d:%d::/home/%s:/bin/sh' % (
        user, 1000, 1000, user) if user != 'root' else
        'root:x:0:0:root:/root:/bin/sh',
        'shadow': '%s:%s:19000:0:99999:7:::' % (user, hashed)}
    _write_user(etc, user, entries)
    if real:
        import shlex
        code = call.kernel.exec(
            call.ctid, root, 'set -- %s\n%s' % (shlex.quote(user),
                                                GUEST_SET_PASSWORD),
            stdin=(password + '\n').encode())
        if code:
            raise Failure(E_CHANGEPASS, 'Password change failed')


def _write_user(etc, user, entries):
    """Replace ``user``'s shadow entry; add its passwd entry if new."""
    for name, entry in entries.items():
        path = os.path.join(etc, name)
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            lines = []
        others = [ln for ln in lines if ln.split(':', 1)[0] != user]
        if name == 'passwd' and len(others) != len(lines):
            continue   # existing user: passwd untouched
        with open(path, 'w') as f:
            f.write('\n'.join(others + [entry]) + '\n')
