"""Simulated ``vzctl`` (legacy OpenVZ vzctl 4.x command-line contract).

Messages, output streams, exit codes and the order of checks follow
openvz-reference.md sections 1, 2 and 9 (vzctl 4.11 sources
where the reference is silent).  Kernel effects go through
:mod:`nova_openvz.simulator.kernel`; ploop image work through
:mod:`nova_openvz.simulator.ploop`.

``console`` lives in :mod:`nova_openvz.simulator.console`.

Not simulated: ``convert``, ``quotaon``,
``quotaoff``, ``quotainit``, ``--netdev_add``/``--netdev_del``,
``--pci_add``/``--pci_del``, ``--meminfo``, ``--local_uid`` on set; they
answer like an unknown command or option.  The modelled halt always
completes at once, so STOP_TIMEOUT is stored but never waited for (use
latency injection for slow stops; the real kernel waits); vzquota and
``vztmpl-dl`` are not run.

Distribution scripts (hostname, DNS, passwords) are done here in Python on
the files under VE_ROOT: ``etc/hostname``, ``etc/resolv.conf``,
``etc/passwd`` and ``etc/shadow`` (a ``$sim$`` hash, not crypt(3)).  On
the real kernel the running container's hostname is set too, and the
guest's own ``chpasswd`` (or busybox ``passwd``) stores the password.
"""

import os
import shutil
import sys
import time

from nova_openvz.simulator import console
from nova_openvz.simulator import hostfs
from nova_openvz.simulator import kernel as kernels
from nova_openvz import vzconf

VERSION = '4.11.1'

# Exit codes (vzerror.h).
E_SYSTEM = 3
E_EXEC = 8
E_NOCONFIG = 10
E_NOSCRIPT = 11
E_SYNTAX = 20
E_VALUE = 21
E_ROOT_NOTSET = 22
E_PRIVATE_NOTSET = 23
E_TMPL_NOTSET = 24
E_UBC = 28
E_OSTEMPLATE_NOTSET = 29
E_NOT_RUNNING = 31
E_RUNNING = 32
E_NOT_MOUNTED = 40
E_MOUNTED = 41
E_NOPRVT = 43
E_PRVT_EXISTS = 44
E_NEW_PRVT = 48
E_DISKSPACE_NOTSET = 63
E_CHANGEPASS = 74
E_ACTIONSCRIPT = 79
E_CP_CONFIG = 82
E_DEVICES = 86
E_OSTEMPLATE_NOT_FOUND = 91
E_START_DISABLED = 105
E_APPLY_CONFIG = 109
E_VETH = 130
E_NAME = 131
E_CHKPNT = 16
E_RESTORE = 17
E_NOVECONFIG = 14
E_RESIZE_IMAGE = 154
E_CREATE_SNAPSHOT = 156
E_DELETE_SNAPSHOT = 158
E_SWITCH_SNAPSHOT = 159
E_MOUNT_SNAPSHOT = 160
E_UMOUNT_SNAPSHOT = 161
E_LIST_SNAPSHOT = 167

GLOBAL_FLAGS = ('--quiet', '--verbose', '--skiplock', '--version')
TEMPLATE_EXTENSIONS = ('', '.gz', '.bz2', '.xz')
DEFAULT_STOP_TIMEOUT = 120
DEFAULT_CPUUNITS = 1000
#: Snapshot UUID of the writable top delta (ploop TOPDELTA_UUID).
SNAPSHOTS_XML = 'Snapshots.xml'

USAGE = """\
vzctl version {version}
Simulated OpenVZ host: the vzctl 4.x command-line contract.

Usage: vzctl [--quiet|--verbose|--skiplock] <command> <ctid> [parameters]

vzctl create <ctid> [--ostemplate <name>] [--config <name>]
   [--layout ploop|simfs] [--hostname <name>] [--name <name>]
   [--ipadd <addr>] [--diskspace <kbytes>] [--diskinodes <N>]
   [--private <path>] [--root <path>] [--description <text>]
vzctl start <ctid> [--force] [--wait]
vzctl stop <ctid> [--fast] [--skip-umount]
vzctl restart <ctid> [start and stop options]
vzctl destroy | delete | mount | umount | status | compact <ctid>
vzctl exec | exec2 | exec3 <ctid> <command> [arg ...]
vzctl runscript <ctid> <script>
vzctl enter <ctid> [--exec <command> [arg ...]]
vzctl console <ctid> [ttynum]
vzctl suspend | chkpnt <ctid> [--suspend|--resume|--dump|--kill]
   [--dumpfile <name>]
vzctl resume | restore <ctid> [--undump|--resume|--kill] [--dumpfile <name>]
vzctl snapshot <ctid> [--id <uuid>] [--name <name>] [--description <desc>]
   [--skip-suspend] [--skip-config]
vzctl snapshot-switch <ctid> --id <uuid> [--skip-resume|--must-resume]
   [--skip-config]
vzctl snapshot-delete <ctid> --id <uuid>
vzctl snapshot-list <ctid> [-H] [-o field[,field...]] [--id <uuid>] [-L]
vzctl snapshot-mount <ctid> --id <uuid> --target <dir>
vzctl snapshot-umount <ctid> --id <uuid>
vzctl set <ctid> [--save] [--force] [--setmode restart|ignore]
   [--ram <bytes>[KMG]] [--swap <bytes>[KMG]] [UBC parameters]
   [--ipadd <addr>] [--ipdel <addr>|all] [--hostname <name>]
   [--nameserver <addr>] [--searchdomain <name>]
   [--onboot yes|no] [--bootorder <N>] [--disabled yes|no]
   [--userpasswd <user>:<passwd>] [--name <name>] [--description <text>]
   [--cpuunits <N>] [--cpulimit <N>[%]] [--cpus <N>]
   [--cpumask <cpus>|auto|all] [--nodemask <nodes>|all]
   [--diskspace <soft>[:<hard>]] [--diskinodes <soft>[:<hard>]]
   [--quotatime <N>] [--quotaugidlimit <N>] [--mount_opts <opt>[,...]]
   [--capability <name>:on|off[,...]] [--features <name>:on|off[,...]]
   [--devices b|c:major:minor|all:r|w|rw|none] [--devnodes <dev>:r|w|rw|none]
   [--netif_add <ifname>[,<mac>,<host_ifname>,<host_mac>,<bridge>]]
   [--netif_del <ifname>|all] [--ifname <dev> [--mac <mac>]
   [--host_ifname <name>] [--host_mac <mac>] [--bridge <name>]
   [--mac_filter on|off]] [--netfilter disabled|stateless|stateful|full]
   [--ioprio <N>] [--iolimit <N>[BKMG]] [--iopslimit <N>]
   [--ostemplate <name>] [--stop-timeout <N>] [--root <path>]
   [--private <path>] [--applyconfig <name>] [--applyconfig_map name]
   [--reset_ub]
"""


class Failure(hostfs.ToolError):
    """A vzctl error: ``message`` goes to stderr through the logger."""


# -- small value parsers (each raises vzconf.FormatError on bad input) ------

def _yes_no(text):
    if text not in ('yes', 'no'):
        raise vzconf.FormatError(text)
    return text


def _uint(text):
    if not text.isdigit():
        raise vzconf.FormatError(text)
    return str(int(text))


def _ranged(low, high):
    def parse(text):
        if not text.isdigit() or not low <= int(text) <= high:
            raise vzconf.FormatError(text)
        return str(int(text))
    return parse


def _choice(*allowed):
    def parse(text):
        if text not in allowed:
            raise vzconf.FormatError(text)
        return text
    return parse


def _raw(text):
    return text


def _float(text):
    try:
        value = float(text)
    except ValueError:
        raise vzconf.FormatError(text)
    if value < 0:
        raise vzconf.FormatError(text)
    return text


def _ubc(param):
    def parse(text):
        return vzconf.format_ubc(*vzconf.parse_ubc(param, text))
    return parse


def _vswap(text):
    """--ram/--swap: bytes (suffixes allowed) to ``0:<pages>``."""
    if text == 'unlimited':
        return '0:unlimited'
    pages = -(-vzconf.parse_size(text) // vzconf.PAGE_SIZE)
    return '0:%d' % pages


def _diskspace(text):
    return vzconf.format_diskspace(*vzconf.parse_diskspace(text))


def _diskinodes(text):
    parts = text.split(':')
    if len(parts) > 2 or not all(p.isdigit() for p in parts):
        raise vzconf.FormatError(text)
    return '%d:%d' % (int(parts[0]), int(parts[-1]))


def _cpulimit(text):
    if text.endswith('%'):
        percent = text[:-1]
        if not percent.isdigit() or int(percent) > 100:
            raise vzconf.FormatError(text)
        return str(int(percent) * (os.cpu_count() or 1))
    return _uint(text)


def _cpu_list(text):
    """``all`` or a list like ``0,2-3`` (CPUMASK/NODEMASK)."""
    if text in ('all', 'auto'):
        return text
    for part in text.split(','):
        bounds = part.split('-')
        if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
            raise vzconf.FormatError(text)
        if len(bounds) == 2 and int(bounds[0]) > int(bounds[1]):
            raise vzconf.FormatError(text)
    return text


def _iolimit(text):
    """IOLIMIT: MB/s by default on the command line, bytes/s in config."""
    return str(vzconf.parse_size(text, unit=1024 * 1024))


def _ip(text):
    """Canonical ``addr[/mask]``; None for the ignored 0.0.0.0 and ::."""
    import ipaddress
    address, slash, mask = text.partition('/')
    try:
        parsed = ipaddress.ip_address(address)
        if slash:
            ipaddress.ip_network('%s/%s' % (parsed, mask), strict=False)
    except ValueError:
        raise vzconf.FormatError(text)
    if parsed.is_unspecified:
        return None
    return parsed.compressed + (slash + mask if slash else '')


def _ip_address(entry):
    return entry.partition('/')[0]


# -- getopt_long ------------------------------------------------------------

def getopt(argv, spec, prog='vzctl'):
    """Parse long options like glibc's getopt_long (prefixes allowed).

    ``spec`` maps option names to True when they take a value.  Returns
    ``(options, positional)``; raises ``Failure(code 0)`` after printing
    glibc's message, the caller picks the exit code.
    """
    options, positional = [], []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == '--':
            positional.extend(args)
            break
        if not arg.startswith('--') or arg == '-':
            if arg.startswith('-') and arg != '-':
                sys.stderr.write("%s: invalid option -- '%s'\n"
                                 % (prog, arg[1:2]))
                raise Failure(0)
            positional.append(arg)
            continue
        name, eq, value = arg[2:].partition('=')
        if name not in spec:
            matches = sorted(o for o in spec if o.startswith(name))
            if len(matches) > 1:
                sys.stderr.write("%s: option '--%s' is ambiguous; "
                                 "possibilities:%s\n" % (
                                     prog, name,
                                     ''.join(" '--%s'" % m for m in matches)))
                raise Failure(0)
            if not matches:
                sys.stderr.write("%s: unrecognized option '--%s'\n"
                                 % (prog, name))
                raise Failure(0)
            name = matches[0]
        if spec[name]:
            if not eq:
                if not args:
                    sys.stderr.write("%s: option '--%s' requires an "
                                     "argument\n" % (prog, name))
                    raise Failure(0)
                value = args.pop(0)
        elif eq:
            sys.stderr.write("%s: option '--%s' doesn't allow an argument\n"
                             % (prog, name))
            raise Failure(0)
        options.append((name, value if spec[name] else True))
    return options, positional


# -- per-call context -------------------------------------------------------

class Call:
    """One vzctl invocation on one container."""

    def __init__(self, host, ctid, out, kernel, options, positional):
        self.host = host
        self.ctid = ctid
        self.out = out
        self.kernel = kernel
        self.options = options
        self.positional = positional

    def opt(self, name, default=None):
        """Last value of option ``name`` (True for flags)."""
        value = default
        for key, given in self.options:
            if key == name:
                value = given
        return value

    @property
    def config(self):
        return self.host.read_config(self.ctid)

    @property
    def private(self):
        return self.host.ve_private(self.ctid)

    @property
    def root(self):
        return self.host.ve_root(self.ctid)

    @property
    def conf_path(self):
        return self.host.conf_path(self.ctid)

    def layout(self):
        return self.host.layout(self.ctid)

    def running(self):
        return self.kernel.is_running(self.ctid)

    def mounted(self):
        return self.kernel.is_mounted(self.ctid)

    def require_root(self):
        root = self.root
        if not root:
            raise Failure(E_ROOT_NOTSET, 'VE_ROOT is not set')
        return root

    def require_private(self):
        private = self.private
        if not private:
            raise Failure(E_PRIVATE_NOTSET, 'VE_PRIVATE is not set')
        if not os.path.exists(private):
            raise Failure(E_NOPRVT, 'Container private area %s does not '
                                    'exist' % private)
        return private

    # -- filesystem --------------------------------------------------------

    def tree(self):
        """What holds the container's files.

        A directory, or the image file of a ploop container on the real
        kernel.
        """
        private = self.require_private()
        if self.layout() == 'ploop':
            return ploop_do(152, ploop_lib().mount_source,
                            os.path.join(private, 'root.hdd'))
        return private

    def run_scripts(self, names):
        """Run those host-side action scripts (mount, umount...) that exist."""
        import subprocess
        env = dict(os.environ, VEID=str(self.ctid),
                   VE_CONFFILE=self.conf_path)
        for name in names:
            script = os.path.join(self.host.conf_dir, name)
            if not os.access(script, os.X_OK):
                continue
            if subprocess.call([script], env=env) != 0:
                raise Failure(E_ACTIONSCRIPT, 'Error executing %s script %s'
                              % (name.rpartition('.')[2], script))

    def run_inside_script(self, name):
        """Run ``<CTID>.start`` or ``.stop`` inside the container.

        vzctl runs the start script after setting up the container's
        resources (devices included) and before init, the stop script before
        halting it; a failure is exit 79 (V4 src/lib/env.c).
        """
        script = os.path.join(self.host.conf_dir, '%d.%s' % (self.ctid, name))
        if not os.path.isfile(script):
            return
        with open(script, 'rb') as f:
            text = f.read()
        try:
            code = self.kernel.exec(self.ctid, self.host.ve_root(self.ctid),
                                    None, stdin=text)
        except hostfs.ToolError as exc:
            raise Failure(E_ACTIONSCRIPT, 'Error executing %s script %s: %s'
                          % (name, script, exc.message))
        if code != 0:
            raise Failure(E_ACTIONSCRIPT, 'Error executing %s script %s'
                          % (name, script))

    def mount(self, scripts=True):
        root = self.require_root()
        tree = self.tree()
        if scripts:
            self.run_scripts(('vps.premount', '%d.premount' % self.ctid))
        device = self._attach_ploop(root)
        try:
            self.kernel.mount(self.ctid, tree, root)
        except hostfs.ToolError:
            if device:
                ploop_lib().detach(self.host, device=device)
            raise
        if scripts:
            try:
                self.run_scripts(('vps.mount', '%d.mount' % self.ctid))
            except Failure:
                # vzctl unmounts again when a mount script fails (V4
                # src/lib/fs.c vps_mount).
                self.umount(scripts=False, quiet=True)
                raise
        self.out.info('Container is mounted')

    def _attach_ploop(self, root):
        """Put a ploop CT's image on a simulated device, as ploop mount."""
        if self.layout() != 'ploop':
            return None
        ploop = ploop_lib()
        path = self.host.disk_descriptor(self.ctid)
        descriptor = ploop_do(152, ploop.read_descriptor, path)
        device = ploop_do(152, ploop.attach, self.host, path, root)
        chain = descriptor.chain(descriptor.top_guid)
        for level, delta in enumerate(reversed(chain)):
            self.out.info('Adding delta dev=%s img=%s (%s)' % (
                device, descriptor.image_path(delta),
                'rw' if level == len(chain) - 1 else 'ro'))
        self.out.info("Mounting %sp1 at %s fstype=ext4 "
                      "data='balloon_ino=12,'" % (device, root))
        return device

    def umount(self, scripts=True, quiet=False):
        root = self.require_root()
        if scripts:
            self.run_scripts(('%d.umount' % self.ctid, 'vps.umount'))
        info = (lambda text: None) if quiet else self.out.info
        ploop_device = None
        if self.layout() == 'ploop':
            ploop_device = ploop_lib().device_of(
                self.host, self.host.disk_descriptor(self.ctid))
            info('Unmounting file system at %s' % root)
        self.kernel.umount(self.ctid, root)
        if ploop_device:
            info('Unmounting device %s' % ploop_device)
            ploop_lib().detach(self.host, device=ploop_device)
        if scripts:
            self.run_scripts(('%d.postumount' % self.ctid, 'vps.postumount'))
        info('Container is unmounted')


def ploop_lib():
    """The simulated ploop library (imported only by ploop work)."""
    from nova_openvz.simulator import ploop
    return ploop


def ploop_do(error_code, function, *args, **kwargs):
    """Call a ploop library function; its errors exit ``error_code``."""
    try:
        return function(*args, **kwargs)
    except hostfs.ToolError as exc:
        raise Failure(error_code, exc.message)


def ploop_command(error_code, host, argv):
    """Do ``ploop <argv>`` in-process, as vzctl does through libploop."""
    ploop_do(error_code, ploop_lib()._run, host, argv)


# -- distribution scripts (guest-side configuration) ------------------------

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


# -- start / stop -----------------------------------------------------------

def _required_ubc_missing(config):
    """A beancounter that start requires but ``config`` lacks, or None."""
    ubc = {}
    for name in hostfs.UBC_NAMES:
        text = config.get(name.upper())
        if text:
            ubc[name] = vzconf.parse_ubc(name.upper(), text)
    ram = ubc.get('physpages', (0, vzconf.LONG_MAX))[1]
    if ram not in (vzconf.LONG_MAX, hostfs.INT_MAX):
        required = ('physpages', 'swappages')
    else:
        required = ('kmemsize', 'lockedpages', 'privvmpages', 'shmpages',
                    'numproc', 'physpages', 'vmguarpages', 'oomguarpages',
                    'numtcpsock', 'numflock', 'numpty', 'numsiginfo',
                    'tcpsndbuf', 'tcprcvbuf', 'othersockbuf', 'dgramrcvbuf',
                    'numothersock', 'dcachesize', 'numfile', 'numiptent')
    for name in required:
        if name not in ubc:
            return name
    return None


_netif_devices = kernels.netif_devices


NETIF_KEYS = ('ifname', 'bridge', 'mac', 'host_ifname', 'host_mac',
              'mac_filter')


def _netif_text(devices):
    return ';'.join(','.join('%s=%s' % (key, device[key])
                             for key in NETIF_KEYS if device.get(key))
                    for device in devices)


def apply_running(call, config, ips=True, cpu=True, veth=True, guest=True):
    """Apply ``config`` to a running container, saying what vzctl says."""
    kernel, ctid, out = call.kernel, call.ctid, call.out
    kernel.apply_resources(ctid, config)
    if ips:
        addresses = [_ip_address(a) for a in
                     (config.get('IP_ADDRESS') or '').split()]
        if addresses:
            out.info('Adding IP address(es): %s' % ' '.join(addresses))
            kernel.add_ips(ctid, addresses)
    if cpu:
        out.info('Setting CPU units: %s' % (config.get('CPUUNITS') or
                                            DEFAULT_CPUUNITS))
        if config.get('CPULIMIT'):
            out.info('Setting CPU limit: %s' % config['CPULIMIT'])
        if config.get('CPUS'):
            out.info('Setting CPUs: %s' % config['CPUS'])
    if veth:
        devices = [d for d in _netif_devices(config.get('NETIF'))
                   if d.get('host_ifname')]
        if devices:
            out.info('Configure veth devices: %s'
                     % ' '.join(d['host_ifname'] for d in devices))
            kernel.add_veth(ctid, devices)
    if guest:
        nameservers = (config.get('NAMESERVER') or
                       call.host.vz_conf.get('NAMESERVER'))
        searchdomains = config.get('SEARCHDOMAIN')
        configure_guest(call.host, call.root,
                        hostname=config.get('HOSTNAME') or None,
                        nameservers=nameservers.split() if nameservers
                        else None,
                        searchdomains=searchdomains.split() if searchdomains
                        else None)
        kernel.set_hostname(ctid, config.get('HOSTNAME'))


def do_start(call, wait=False, force=False, skip_remount=False):
    config = call.config
    if config.get('DISABLED') == 'yes' and not force:
        raise Failure(E_START_DISABLED, 'Container start disabled')
    if call.running():
        raise Failure(E_RUNNING, 'Container is already running')
    call.require_private()
    dump = call.host.dump_file(call.ctid)
    if os.path.exists(dump):
        call.out.info('Dump file %s exists, trying to restore from it'
                      % dump)
        do_restore(call, dump)
        return 0
    missing = _required_ubc_missing(config)
    if missing:
        raise Failure(E_UBC, 'Error: required UB parameter %s not set'
                      % missing)
    if 'VE_LAYOUT' not in config:
        layout = call.layout()
        call.out.info("Saving VE layout '%s' to the VE config file" % layout)
        call.host.save_config(call.ctid, {'VE_LAYOUT': layout})
        config['VE_LAYOUT'] = layout
    call.out.info('Starting container...')
    if call.mounted() and not skip_remount:
        call.umount()
    if not call.mounted():
        call.mount()
    warning = dist_warning(call.host, config)
    if warning:
        call.out.error(warning)
    call.kernel.start(call.ctid, config)
    try:
        apply_running(call, config)
        call.run_inside_script('start')
        call.kernel.finish_start(call.ctid)
    except hostfs.ToolError:
        call.kernel.stop(call.ctid, fast=True)
        call.umount()
        call.out.error('Container start failed')
        raise
    if wait:
        call.out.info('Container start in progress, waiting ...')
        call.out.info('Container started successfully')
    else:
        call.out.info('Container start in progress...')
    return 0


def do_stop(call, fast=False, skip_umount=False):
    if not call.running():
        call.out.error('Unable to stop: container is not running')
        return 0
    call.run_inside_script('stop')
    call.out.info('Stopping container ...')
    if fast:
        call.out.info('Killing container ...')
    call.kernel.stop(call.ctid, fast=fast)
    call.out.info('Container was stopped')
    if not skip_umount:
        call.umount()
    return 0


def do_restore(call, dumpfile):
    """Full restore from ``dumpfile``; the dump is removed on success."""
    if not os.path.exists(dumpfile):
        raise Failure(E_RESTORE, 'Unable to open %s: No such file or '
                                 'directory' % dumpfile)
    call.out.info('Restoring container ...')
    if not call.mounted():
        call.mount()
    call.out.info('\tundump...')
    call.kernel.restore(call.ctid, dumpfile)
    call.out.info('\tresume...')
    os.unlink(dumpfile)
    call.out.info('Restoring completed successfully')
    return 0


# -- commands ---------------------------------------------------------------

START_ONLY = {'force': False, 'skip_ve_setup': False, 'wait': False,
              'skip-fsck': False, 'skip-remount': False}
STOP_ONLY = {'fast': False, 'skip-umount': False}


def _startstop_spec(start, stop):
    spec = dict(START_ONLY)
    spec.update(STOP_ONLY)

    def check(options):
        allowed = (START_ONLY if start else {}).keys() | \
            (STOP_ONLY if stop else {}).keys()
        for name, _ in options:
            if name not in allowed:
                sys.stderr.write('Option --%s is not applicable to %s '
                                 'command\n' % (name,
                                                'start' if start else 'stop'))
                raise Failure(E_SYNTAX)
    return spec, check


def cmd_start(call):
    return do_start(call, wait=bool(call.opt('wait')),
                    force=bool(call.opt('force')),
                    skip_remount=bool(call.opt('skip-remount')))


def cmd_stop(call):
    return do_stop(call, fast=bool(call.opt('fast')),
                   skip_umount=bool(call.opt('skip-umount')))


def cmd_restart(call):
    call.out.info('Restarting container')
    if call.running():
        do_stop(call, fast=bool(call.opt('fast')))
    return cmd_start(call)


def cmd_status(call):
    host, ctid = call.host, call.ctid
    exist = host.exists(ctid)
    running = call.running()
    suspended = (exist and not running and
                 os.path.exists(host.dump_file(ctid)))
    sys.stdout.write('CTID %d %s %s %s%s\n' % (
        ctid, 'exist' if exist else 'deleted',
        'mounted' if call.mounted() else 'unmounted',
        'running' if running else 'down',
        ' suspended' if suspended else ''))
    return 0


def cmd_mount(call):
    call.require_private()
    if call.mounted():
        call.out.error('Container is already mounted')
        return 0
    call.mount()
    return 0


def cmd_umount(call):
    if call.running():
        raise Failure(E_RUNNING, 'Container is running -- stop it first')
    if not call.mounted():
        raise Failure(E_NOT_MOUNTED, 'CT is not mounted')
    call.umount()
    return 0


def _rename_destroyed(path):
    if os.path.lexists(path):
        os.replace(path, path + '.destroyed')


def cmd_destroy(call):
    host, ctid, out = call.host, call.ctid, call.out
    if call.running():
        out.info('Container is currently running. Stop it first.')
        return E_RUNNING
    if call.mounted():
        raise Failure(E_MOUNTED, 'Container is currently mounted '
                                 '(umount first)')
    private = call.private
    if private and os.path.lexists(private):
        out.info('Destroying container private area: %s' % private)
        if os.path.islink(private) or not os.path.isdir(private):
            os.unlink(private)
        else:
            shutil.rmtree(private)
    _rename_destroyed(host.conf_path(ctid))
    for script in hostfs.ACTION_SCRIPTS:
        _rename_destroyed(host.conf_path(ctid, script))
    for path in (host.dump_file(ctid),):
        if os.path.exists(path):
            os.unlink(path)
    root = call.root
    if root:
        try:
            os.rmdir(root)
        except OSError:
            pass
    host.remove_name_links(ctid)
    call.kernel.forget(ctid)
    out.info('Container private area was destroyed')
    return 0


def _exec_command(words):
    """The shell string vzctl builds: words joined by spaces."""
    if words == ['-']:
        return None
    return ' '.join(word if word else "''" for word in words)


def _cmd_exec(call, three=False):
    if not call.positional:
        sys.stderr.write('No command line given for exec\n')
        raise Failure(E_SYNTAX)
    root = call.require_root()
    if not call.running():
        raise Failure(E_NOT_RUNNING, 'Container is not running')
    if three:
        import shlex
        command = shlex.join(call.positional)
    else:
        command = _exec_command(call.positional)
    return call.kernel.exec(call.ctid, root, command)


def cmd_exec(call):
    try:
        code = _cmd_exec(call)
    except Failure as exc:
        if exc.code == E_SYNTAX:
            raise
        call.out.error(exc.message)
        return E_EXEC
    return E_EXEC if code else 0


def cmd_exec2(call):
    return _cmd_exec(call)


def cmd_exec3(call):
    return _cmd_exec(call, three=True)


def cmd_enter(call):
    words = call.positional
    if words and words[0] != '--exec':
        sys.stderr.write("Invalid option '%s'\n" % words[0])
        raise Failure(E_SYNTAX)
    if words and len(words) < 2:
        sys.stderr.write('No command line given for --exec\n')
        raise Failure(E_SYNTAX)
    root = call.require_root()
    if not call.running():
        raise Failure(E_NOT_RUNNING, 'Container is not running')
    command = _exec_command(words[1:]) if words else None
    call.out.info('entered into CT %d' % call.ctid)
    code = call.kernel.exec(call.ctid, root, command)
    call.out.info('exited from CT %d' % call.ctid)
    return code


def cmd_runscript(call):
    """runscript <CT> <host script>: run it inside with /bin/sh.

    A stopped container is mounted for it (no init, no /proc).
    """
    if len(call.positional) != 1:
        sys.stderr.write('Invalid syntax: runscript takes one script\n')
        raise Failure(E_SYNTAX)
    try:
        with open(call.positional[0], 'rb') as f:
            script = f.read()
    except OSError as exc:
        raise Failure(E_NOSCRIPT, 'Unable to open script %s: %s'
                      % (call.positional[0], exc.strerror))
    root = call.require_root()
    mount = not call.running() and not call.mounted()
    if mount:
        call.mount()
    try:
        return call.kernel.exec(call.ctid, root, None, stdin=script)
    finally:
        if mount:
            call.umount()


def cmd_compact(call):
    call.require_root()
    call.require_private()
    if call.layout() != 'ploop':
        call.out.info('Compact only makes sense for ploop containers')
    return 0


CHKPNT_SPEC = {'dump': False, 'suspend': False, 'resume': False,
               'kill': False, 'skip_arpdetect': False, 'flags': True,
               'context': True, 'dumpfile': True}
RESTORE_SPEC = {'undump': False, 'kill': False, 'resume': False,
                'skip_arpdetect': False, 'flags': True, 'context': True,
                'dumpfile': True}


def _cpt_subcommand(call, names):
    chosen = [name for name, _ in call.options if name in names]
    if len(chosen) > 1:
        raise Failure(E_SYNTAX, 'Invalid syntax: only one sub command may '
                                'be used')
    return chosen[0] if chosen else None


def cmd_chkpnt(call):
    sub = _cpt_subcommand(call, ('dump', 'suspend', 'resume', 'kill'))
    kernel, ctid, out = call.kernel, call.ctid, call.out
    if not call.running():
        raise Failure(E_NOT_RUNNING, 'Unable to setup checkpointing: '
                                     'container is not running')
    frozen = kernel.is_frozen(ctid)
    if sub in ('resume', 'kill', 'dump') and not frozen:
        raise Failure(E_CHKPNT, 'Container is not suspended; use '
                                'chkpnt --suspend first')
    if sub == 'resume':
        out.info('Resuming...')
        kernel.thaw(ctid)
        return 0
    if sub == 'kill':
        out.info('Killing...')
        kernel.stop(ctid, fast=True)
        return 0
    dumpfile = call.opt('dumpfile') or call.host.dump_file(ctid)
    out.info('Setting up checkpoint...')
    if sub in (None, 'suspend'):
        out.info('\tsuspend...')
        kernel.freeze(ctid)
    if sub == 'dump':
        # --dump leaves the container frozen, as a separate --kill follows
        out.info('\tdump...')
        kernel.dump(ctid, dumpfile)
    elif sub is None:
        out.info('\tdump...')
        kernel.checkpoint(ctid, dumpfile)
    if sub is None:
        out.info('\tkill...')
    out.info('Checkpointing completed successfully')
    if sub is None:
        call.umount()
    return 0


def cmd_restore(call):
    sub = _cpt_subcommand(call, ('undump', 'kill', 'resume'))
    kernel, ctid, out = call.kernel, call.ctid, call.out
    dumpfile = call.opt('dumpfile') or call.host.dump_file(ctid)
    if sub in ('resume', 'kill'):
        if not kernel.is_frozen(ctid):
            raise Failure(E_RESTORE, 'Container is not in the undumped '
                                     'state')
        if sub == 'resume':
            out.info('Resuming...')
            kernel.thaw(ctid)
        else:
            out.info('Killing...')
            kernel.stop(ctid, fast=True)
        return 0
    if call.running():
        raise Failure(E_RUNNING, 'Container is already running')
    call.require_private()
    if sub == 'undump':
        if not os.path.exists(dumpfile):
            raise Failure(E_RESTORE, 'Unable to open %s: No such file or '
                                     'directory' % dumpfile)
        out.info('Restoring container ...')
        if not call.mounted():
            call.mount()
        out.info('\tundump...')
        kernel.restore(ctid, dumpfile)
        kernel.freeze(ctid)
        return 0
    return do_restore(call, dumpfile)


# -- create -----------------------------------------------------------------

CREATE_SPEC = dict.fromkeys(
    ('ostemplate', 'config', 'private', 'root', 'ipadd', 'hostname', 'name',
     'description', 'layout', 've_layout', 'velayout', 'diskspace',
     'diskinodes', 'local_uid', 'local_gid'), True)


def _safe_members(tar, destination):
    """Members of ``tar`` that stay inside ``destination`` when unpacked.

    Absolute names, ``..`` escapes and links pointing outside are refused;
    device nodes are skipped when we cannot create them (not root).
    """
    import tarfile
    base = os.path.realpath(destination)
    for member in tar.getmembers():
        target = os.path.realpath(os.path.join(base, member.name))
        if member.name.startswith('/') or (
                target != base and not target.startswith(base + os.sep)):
            raise tarfile.TarError('refusing to unpack %s outside the '
                                   'container' % member.name)
        if member.islnk() or (member.issym() and
                              not member.linkname.startswith('/')):
            link_base = base if member.islnk() else os.path.dirname(target)
            linked = os.path.realpath(os.path.join(link_base,
                                                   member.linkname))
            if linked != base and not linked.startswith(base + os.sep):
                raise tarfile.TarError('refusing link %s -> %s outside the '
                                       'container' % (member.name,
                                                      member.linkname))
        if (member.ischr() or member.isblk()) and os.geteuid() != 0:
            continue
        yield member


def unpack_template(tarball, destination):
    """Unpack an OS template tarball safely; errors raise Failure(48)."""
    import tarfile
    try:
        with tarfile.open(tarball, 'r:*') as tar:
            members = list(_safe_members(tar, destination))
            kwargs = {}
            if hasattr(tarfile, 'fully_trusted_filter'):
                # our own checks above replace the extraction filters, which
                # would reject the device nodes a real template carries
                kwargs['filter'] = 'fully_trusted'
            tar.extractall(destination, members=members, numeric_owner=True,
                           **kwargs)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise Failure(E_NEW_PRVT, 'tar: %s' % exc)


def _find_template(template_dir, ostemplate):
    for ext in TEMPLATE_EXTENSIONS:
        path = os.path.join(template_dir, 'cache', ostemplate + '.tar' + ext)
        if os.path.isfile(path):
            return path
    raise Failure(E_OSTEMPLATE_NOT_FOUND,
                  'Cached OS template %s/cache/%s.tar[.gz|.bz2|.xz] not '
                  'found' % (template_dir, ostemplate))


def _check_name(host, ctid, name):
    if not hostfs.NAME_RE.match(name):
        raise Failure(E_NAME, 'Error: invalid name %s' % name)
    owner = host.ctid_by_name(name)
    if owner is not None and owner != ctid and host.has_config(owner):
        raise Failure(E_NAME, 'Conflict: name %s already used by container '
                              '%d' % (name, owner))


def cmd_create(call):
    """vzctl create; every failure also prints the "failed" line."""
    copied = []
    try:
        return _create(call, copied)
    except hostfs.ToolError as exc:
        if exc.message:
            call.out.error(exc.message)
        call.out.error('Creation of container private area failed')
        for path in copied:
            os.unlink(path)
        raise Failure(exc.code)


def _sample_path(host, name):
    return os.path.join(host.conf_dir, 've-%s.conf-sample' % name)


def _create(call, copied):
    host, ctid, out = call.host, call.ctid, call.out
    dst = call.conf_path
    cfg_exists = os.path.isfile(dst)
    sample = None
    if call.opt('config'):
        src = _sample_path(host, call.opt('config'))
        if not os.path.isfile(src):
            raise Failure(E_CP_CONFIG, 'Sample config %s not found' % src)
        if cfg_exists:
            raise Failure(E_CP_CONFIG, 'Error: container config file %s '
                                       'already exists, can not use --config '
                                       'option' % dst)
        sample = call.opt('config')
    elif host.vz_conf.get('CONFIGFILE'):
        src = _sample_path(host, host.vz_conf['CONFIGFILE'])
        if not os.path.isfile(src):
            raise Failure(E_CP_CONFIG, 'Sample config %s not found\nFix the '
                                       'value of CONFIGFILE in %s'
                          % (src, host.vz_conf_path))
        if cfg_exists:
            out.info('Warning: CT config file already exists, not applying '
                     'a default config sample.')
            out.info('It might lead to incomplete CT configuration, you can '
                     'use --applyconfig to fix.')
        else:
            sample = host.vz_conf['CONFIGFILE']
    if sample is not None:
        shutil.copyfile(src, dst)
        copied.append(dst)
    config = dict(host.vz_conf)
    config.update(host.read_config(ctid))
    values = _create_values(call)
    config.update(values)

    if not config.get('TEMPLATE'):
        raise Failure(E_TMPL_NOTSET, 'TEMPLATE is not set')
    if not config.get('VE_PRIVATE'):
        raise Failure(E_PRIVATE_NOTSET, 'VE_PRIVATE is not set')
    if not config.get('VE_ROOT'):
        raise Failure(E_ROOT_NOTSET, 'VE_ROOT is not set')
    private = vzconf.expand_veid(config['VE_PRIVATE'], ctid)
    root = vzconf.expand_veid(config['VE_ROOT'], ctid)
    if os.path.exists(private) and (not os.path.isdir(private) or
                                    os.listdir(private)):
        raise Failure(E_PRVT_EXISTS, 'Private area already exists in %s'
                      % private)
    layout = (config.get('VE_LAYOUT') or 'ploop').partition(':')[0]
    if values.get('NAME'):
        _check_name(host, ctid, values['NAME'])
    ostemplate = config.get('OSTEMPLATE') or config.get('DEF_OSTEMPLATE')
    if not ostemplate:
        raise Failure(E_OSTEMPLATE_NOTSET, 'OS template is not specified')

    diskspace = None
    if config.get('DISKSPACE'):
        diskspace = vzconf.parse_diskspace(config['DISKSPACE'])
    if layout == 'ploop' and (not diskspace or diskspace[1] <= 0):
        raise Failure(E_DISKSPACE_NOTSET, 'Error: diskspace not set '
                                          '(required for ploop)')
    tarball = _find_template(config['TEMPLATE'], ostemplate)
    _create_private(call, private, root, layout, tarball, ostemplate,
                    diskspace)

    if vzconf.read(dist_config(host, config)[0]).get('POST_CREATE'):
        out.info('Performing postcreate actions')
    changes = {'VE_ROOT': config['VE_ROOT'],
               'VE_PRIVATE': config['VE_PRIVATE'],
               'OSTEMPLATE': os.path.basename(ostemplate)}
    if sample is not None and not host.read_config(ctid).get(
            'ORIGIN_SAMPLE'):
        changes['ORIGIN_SAMPLE'] = sample
    changes.update((key, value) for key, value in values.items()
                   if key not in ('VE_ROOT', 'VE_PRIVATE', 'OSTEMPLATE',
                                  'VE_LAYOUT'))
    changes['VE_LAYOUT'] = layout
    host.save_config(ctid, changes)
    copied.clear()
    out.info('CT configuration saved to %s' % dst)
    if values.get('NAME'):
        host.set_name_link(values['NAME'], ctid)
    call.run_scripts(('vps.create',))
    out.info('Container private area was created')
    return 0


def _create_values(call):
    """Config values given on the create command line."""
    parsers = {'ostemplate': ('OSTEMPLATE', _raw),
               'private': ('VE_PRIVATE', _raw),
               'root': ('VE_ROOT', _raw),
               'hostname': ('HOSTNAME', _raw),
               'name': ('NAME', _raw),
               'description': ('DESCRIPTION', _raw),
               'layout': ('VE_LAYOUT', _choice('simfs', 'ploop',
                                               'ploop:expanded',
                                               'ploop:plain', 'ploop:raw')),
               've_layout': None, 'velayout': None,
               'diskspace': ('DISKSPACE', _diskspace),
               'diskinodes': ('DISKINODES', _diskinodes),
               'local_uid': ('LOCAL_UID', _uint),
               'local_gid': ('LOCAL_GID', _uint)}
    values, ips = {}, []
    for name, value in call.options:
        if name == 'config':
            continue
        if name == 'ipadd':
            ip = _parse(name, value, _ip)
            if ip:
                ips.append(ip)
            continue
        key, parser = parsers[name] or parsers['layout']
        values[key] = _parse(name, value, parser)
    if ips:
        values['IP_ADDRESS'] = ' '.join(ips)
    return values


def _parse(option, value, parser):
    try:
        return parser(value)
    except vzconf.FormatError:
        raise Failure(E_VALUE, 'Bad parameter for --%s: %s'
                      % (option, value))


def _create_private(call, private, root, layout, tarball, ostemplate,
                    diskspace):
    """Build ``<private>.tmp``, unpack the template, rename it in place."""
    out = call.out
    tmp = private + '.tmp'
    if os.path.lexists(tmp):
        out.error('Warning: Temp dir %s already exists, deleting' % tmp)
        shutil.rmtree(tmp)
    os.makedirs(private, exist_ok=True)   # claims the area, as vzctl does
    try:
        os.makedirs(tmp)
        unpack_to = tmp
        if layout == 'ploop':
            image_dir = os.path.join(tmp, 'root.hdd')
            os.mkdir(image_dir, 0o700)
            out.info('Creating image: %s size=%dK'
                     % (os.path.join(image_dir, 'root.hdd'), diskspace[1]))
            ploop_do(151, ploop_lib().create_image, image_dir, diskspace[1],
                     filesystem=call.kernel.real)
            os.makedirs(root, exist_ok=True)
            unpack_to = ploop_lib().mount_source(image_dir)
        out.info('Creating container private area (%s)' % ostemplate)
        if os.path.isfile(unpack_to):
            # A real image: fill it through a mount, as vzctl does.
            call.kernel.mount(call.ctid, unpack_to, root)
            try:
                unpack_template(tarball, root)
            finally:
                call.kernel.umount(call.ctid, root)
        else:
            os.makedirs(unpack_to, exist_ok=True)
            unpack_template(tarball, unpack_to)
        os.rmdir(private)
        os.rename(tmp, private)
    except BaseException:
        if os.path.isdir(private) and not os.listdir(private):
            os.rmdir(private)
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- set --------------------------------------------------------------------

CAPABILITIES = frozenset((
    'chown', 'dac_override', 'dac_read_search', 'fowner', 'fsetid', 'kill',
    'setgid', 'setuid', 'setpcap', 'linux_immutable', 'net_bind_service',
    'net_broadcast', 'net_admin', 'net_raw', 'ipc_lock', 'ipc_owner',
    'sys_module', 'sys_rawio', 'sys_chroot', 'sys_ptrace', 'sys_pacct',
    'sys_admin', 'sys_boot', 'sys_nice', 'sys_resource', 'sys_time',
    'sys_tty_config', 'mknod', 'lease', 'setveid', 've_admin'))
FEATURES = frozenset(('sysfs', 'nfs', 'sit', 'ipip', 'ppp', 'ipgre',
                      'bridge', 'nfsd'))

#: option -> (config key, value parser, kind).  Kinds: ``ubc``, ``cpu``,
#: ``io``, ``disk`` and ``dev`` apply live; ``guest`` is written inside the
#: guest; ``restart`` needs a restart; ``fs`` is refused while running;
#: None is config only.
SET_SIMPLE = {
    'onboot': ('ONBOOT', _yes_no, None),
    'bootorder': ('BOOTORDER', _uint, None),
    'disabled': ('DISABLED', _yes_no, None),
    'description': ('DESCRIPTION', _raw, None),
    'ostemplate': ('OSTEMPLATE', _raw, None),
    'stop-timeout': ('STOP_TIMEOUT', _uint, None),
    'hostname': ('HOSTNAME', _raw, 'guest'),
    'ram': ('PHYSPAGES', _vswap, 'ubc'),
    'swap': ('SWAPPAGES', _vswap, 'ubc'),
    'vm_overcommit': ('VM_OVERCOMMIT', _float, 'ubc'),
    'cpuunits': ('CPUUNITS', _ranged(8, 500000), 'cpu'),
    'cpulimit': ('CPULIMIT', _cpulimit, 'cpu'),
    'cpus': ('CPUS', _uint, 'cpu'),
    'cpumask': ('CPUMASK', _cpu_list, 'cpu'),
    'nodemask': ('NODEMASK', _cpu_list, 'cpu'),
    'ioprio': ('IOPRIO', _ranged(0, 7), 'io'),
    'iolimit': ('IOLIMIT', _iolimit, 'io'),
    'iopslimit': ('IOPSLIMIT', _uint, 'io'),
    'diskspace': ('DISKSPACE', _diskspace, 'disk'),
    'diskinodes': ('DISKINODES', _diskinodes, 'disk'),
    'quotatime': ('QUOTATIME', _uint, 'disk'),
    'quotaugidlimit': ('QUOTAUGIDLIMIT', _uint, 'restart'),
    'diskquota': ('DISK_QUOTA', _yes_no, 'restart'),
    'netfilter': ('NETFILTER', _choice('disabled', 'stateless', 'stateful',
                                       'full'), 'restart'),
    'iptables': ('IPTABLES', _raw, 'restart'),
    'mount_opts': ('MOUNT_OPTS', _raw, 'restart'),
    'private': ('VE_PRIVATE', _raw, 'fs'),
    'root': ('VE_ROOT', _raw, 'fs'),
}
SET_SIMPLE.update((name.lower(), (name, _ubc(name), 'ubc'))
                  for name in vzconf.UBC_PARAMS)

#: Options handled by dedicated code (value taken: True).
SET_SPECIAL = {
    'save': False, 'force': False, 'reset_ub': False, 'skip_arpdetect': False,
    'setmode': True, 'applyconfig': True, 'applyconfig_map': True,
    'name': True, 'userpasswd': True, 'ipadd': True, 'ip': True,
    'ipdel': True, 'nameserver': True, 'searchdomain': True,
    'capability': True, 'features': True, 'devices': True, 'devnodes': True,
    'netif_add': True, 'netif_del': True, 'ifname': True, 'mac': True,
    'host_ifname': True, 'host_mac': True, 'bridge': True,
    'mac_filter': True,
}
SET_SPEC = dict(SET_SPECIAL)
SET_SPEC.update((name, True) for name in SET_SIMPLE)

#: Messages of vzctl's check_set_mode for keys that need a restart.
RESTART_MESSAGES = {
    'CAPABILITY': 'Unable to set capability on a running container',
    'IPTABLES': 'Unable to set iptables on a running container',
    'NETFILTER': 'Unable to set netfilter on a running container',
    'FEATURES': 'Unable to set features on a running container',
    'DISK_QUOTA': 'Unable to switch DISK_QUOTA on or off on a running '
                  'container',
    'MOUNT_OPTS': 'Unable to change mount options on a running container',
}
#: Messages for live kinds applied to a stopped container without --save.
NOT_RUNNING_MESSAGES = (
    ('ubc', 'Unable to apply UBC parameters: container is not running'),
    ('net', 'Unable to apply network parameters: container is not running'),
    ('cpu', 'Unable to apply CPU parameters: container is not running'),
    ('veth', 'Unable to create veth: container is not running'),
    ('dev', 'Unable to set devices: container is not running'),
    ('io', 'Unable to set I/O parameters: container is not running'),
)
#: Keys --applyconfig never takes from a sample.
APPLYCONFIG_SKIP = frozenset(('HOSTNAME', 'IP_ADDRESS', 'OSTEMPLATE',
                              'VE_ROOT', 'VE_PRIVATE', 'DESCRIPTION', 'NAME',
                              'ORIGIN_SAMPLE'))


class SetRequest:
    """What one ``vzctl set`` asks for, before anything is applied."""

    def __init__(self, old):
        self.old = old            # config before the call
        self.changes = {}         # key -> new value
        self.removes = set()      # keys to drop
        self.kinds = set()        # kinds of the changed keys
        self.given = set()        # option names given
        self.ip_changes = False
        self.userpw = []
        self.sample = None

    def set(self, key, value, kind=None):
        self.changes[key] = value
        self.removes.discard(key)
        if kind:
            self.kinds.add(kind)

    def current(self, key):
        if key in self.removes:
            return ''
        return self.changes.get(key, self.old.get(key, ''))

    def merged(self):
        config = {k: v for k, v in self.old.items() if k not in self.removes}
        config.update(self.changes)
        return config


def _merge_flags(request, key, option, value, known, upper):
    """--capability/--features ``name:on|off[,...]`` merged into ``key``."""
    entries = {}
    order = []
    for item in request.current(key).split():
        name, _, state = item.partition(':')
        entries[name.lower()] = state
        order.append(name.lower())
    for item in value.split(','):
        name, _, state = item.partition(':')
        if name.lower() not in known or state not in ('on', 'off'):
            raise Failure(E_VALUE, 'Bad parameter for --%s: %s'
                          % (option, value))
        if name.lower() not in entries:
            order.append(name.lower())
        entries[name.lower()] = state
    request.set(key, ' '.join('%s:%s' % (n.upper() if upper else n,
                                         entries[n]) for n in order),
                'restart')


def _merge_devices(request, option, value):
    """--devices ``b|c:major:minor|all:perm|none`` into DEVICES."""
    parts = value.split(':')
    if (len(parts) != 4 or parts[0] not in ('b', 'c') or
            not parts[1].isdigit() or
            not (parts[2].isdigit() or parts[2] == 'all') or
            not (parts[3] == 'none' or
                 (parts[3] and set(parts[3]) <= set('rwq')))):
        raise Failure(E_VALUE, 'Bad parameter for --%s: %s' % (option, value))
    if parts[1] == '7':
        raise Failure(E_DEVICES, 'Setting access to loop devices (major 7) '
                                 'is not allowed')
    device = ':'.join(parts[:3])
    kept = [d for d in request.current('DEVICES').split()
            if d.rpartition(':')[0] != device]
    if parts[3] != 'none':
        kept.append(value)
    request.set('DEVICES', ' '.join(kept), 'dev')


def _merge_devnodes(request, option, value):
    name, _, perm = value.rpartition(':')
    if not name or not (perm == 'none' or (perm and set(perm) <= set('rwq'))):
        raise Failure(E_VALUE, 'Bad parameter for --%s: %s' % (option, value))
    kept = [d for d in request.current('DEVNODES').split()
            if d.rpartition(':')[0] != name]
    if perm != 'none':
        kept.append(value)
    request.set('DEVNODES', ' '.join(kept), 'dev')


_generated_mac = kernels.generated_mac


def _check_mac(option, value):
    if len(value) != 17:
        raise Failure(E_VALUE, 'Invalid container MAC address length')
    return value.upper()


def _netif_add(request, ctid, value):
    devices = _netif_devices(request.current('NETIF'))
    for spec in value.split():
        fields = (spec.split(',') + [''] * 5)[:5]
        ifname, mac, host_ifname, host_mac, bridge = fields
        if not ifname or len(ifname) > 15:
            raise Failure(E_VALUE, 'Bad parameter for --netif_add: %s'
                          % value)
        if not host_ifname:
            digits = ''.join(c if c.isdigit() else ' ' for c in ifname)
            number = digits.split()[0] if digits.split() else '0'
            host_ifname = 'veth%d.%s' % (ctid, number)
        host_mac = (_check_mac('netif_add', host_mac) if host_mac else
                    _generated_mac(ctid, 'host', host_ifname))
        mac = (_check_mac('netif_add', mac) if mac else
               _generated_mac(ctid, ifname, host_mac))
        device = {'ifname': ifname, 'bridge': bridge, 'mac': mac,
                  'host_ifname': host_ifname, 'host_mac': host_mac}
        devices = [d for d in devices if d['ifname'] != ifname] + [device]
    request.set('NETIF', _netif_text(devices), 'veth')


def _netif_del(request, value):
    devices = _netif_devices(request.current('NETIF'))
    if value == 'all':
        devices = []
    else:
        devices = [d for d in devices if d['ifname'] != value]
    request.set('NETIF', _netif_text(devices), 'veth')


def _netif_modify(request, options):
    """--ifname X with --mac/--host_ifname/--host_mac/--bridge/..."""
    ifnames = [value for name, value in options if name == 'ifname']
    fields = [(name, value) for name, value in options
              if name in ('mac', 'host_ifname', 'host_mac', 'bridge',
                          'mac_filter')]
    if not ifnames and not fields:
        return
    if len(ifnames) != 1:
        raise Failure(E_SYNTAX, 'Error: exactly one --ifname must be given '
                                'to change a veth device')
    devices = _netif_devices(request.current('NETIF'))
    matching = [d for d in devices if d['ifname'] == ifnames[0]]
    if not matching:
        raise Failure(E_VETH, 'Invalid usage: veth device %s is not '
                              'configured' % ifnames[0])
    for name, value in fields:
        if name in ('mac', 'host_mac'):
            value = _check_mac(name, value)
        elif name == 'mac_filter':
            value = _parse(name, value, _choice('on', 'off'))
        matching[0][name] = value
    request.set('NETIF', _netif_text(devices), 'veth')


def parse_set(call, old):
    """Turn the set options into a :class:`SetRequest` (checks values)."""
    request = SetRequest(old)
    ip_entries = old.get('IP_ADDRESS', '').split()
    nameservers, searchdomains = [], []
    for name, value in call.options:
        request.given.add(name)
        if name in SET_SIMPLE:
            key, parser, kind = SET_SIMPLE[name]
            request.set(key, _parse(name, value, parser), kind)
        elif name in ('ipadd', 'ip'):
            entry = _parse('ipadd', value, _ip)
            if entry:
                ip_entries = [e for e in ip_entries
                              if _ip_address(e) != _ip_address(entry)]
                ip_entries.append(entry)
                request.ip_changes = True
        elif name == 'ipdel':
            if value == 'all':
                ip_entries = []
            else:
                address = _ip_address(_parse(name, value, _ip) or value)
                ip_entries = [e for e in ip_entries
                              if _ip_address(e) != address]
            request.ip_changes = True
        elif name == 'nameserver':
            nameservers.append(value if value == 'inherit' else
                               _ip_address(_parse(name, value, _ip) or ''))
        elif name == 'searchdomain':
            searchdomains.append(value)
        elif name == 'capability':
            _merge_flags(request, 'CAPABILITY', name, value, CAPABILITIES,
                         upper=True)
        elif name == 'features':
            _merge_flags(request, 'FEATURES', name, value, FEATURES,
                         upper=False)
        elif name == 'devices':
            _merge_devices(request, name, value)
        elif name == 'devnodes':
            _merge_devnodes(request, name, value)
        elif name == 'netif_add':
            _netif_add(request, call.ctid, value)
        elif name == 'netif_del':
            _netif_del(request, value)
        elif name == 'name':
            request.set('NAME', value)
        elif name == 'userpasswd':
            user, colon, password = value.partition(':')
            if not user or not colon:
                raise Failure(E_VALUE, 'Bad parameter for --userpasswd: %s'
                              % value)
            request.userpw.append((user, password))
        elif name == 'setmode':
            _parse(name, value, _choice('restart', 'ignore'))
        elif name == 'applyconfig':
            request.sample = value
    _netif_modify(request, call.options)
    if request.ip_changes:
        request.set('IP_ADDRESS', ' '.join(ip_entries), 'net')
    if nameservers:
        request.set('NAMESERVER', ' '.join(nameservers), 'guest')
    if searchdomains:
        request.set('SEARCHDOMAIN', ' '.join(searchdomains), 'guest')
    return request


def _apply_sample(host, request):
    path = _sample_path(host, request.sample)
    if not os.path.isfile(path):
        raise Failure(E_APPLY_CONFIG, 'Sample config file not found: %s'
                      % path)
    sample = vzconf.read(path)
    for key, value in sample.items():
        if key in APPLYCONFIG_SKIP or key in request.changes:
            continue
        request.set(key, value)
    if not sample.get('ORIGIN_SAMPLE'):
        request.set('ORIGIN_SAMPLE', request.sample)


def _check_set_syntax(call, request, save):
    """Option combinations vzctl refuses before looking at the container."""
    given = request.given
    if 'reset_ub' in given and len(given) > 1:
        raise Failure(E_SYNTAX, 'Error: --reset_ub can not be used with '
                                'other options')
    for option in ('ostemplate', 'stop-timeout', 'force'):
        if option in given and not save:
            raise Failure(E_SYNTAX, 'Error: --%s option requires --save'
                          % option)
    if call.opt('setmode') == 'restart' and not save:
        raise Failure(E_SYNTAX, "Error: --setmode restart doesn't make sense"
                                " without --save flag")
    if 'nodemask' in given and 'cpumask' not in given:
        raise Failure(E_SYNTAX, 'Error: --nodemask requires --cpumask')
    if call.opt('cpumask') == 'auto' and 'nodemask' not in given:
        raise Failure(E_SYNTAX, 'Error: --cpumask auto requires --nodemask')


def cmd_set(call):
    host, ctid, out = call.host, call.ctid, call.out
    save = bool(call.opt('save'))
    old = call.config
    request = parse_set(call, old)
    _check_set_syntax(call, request, save)
    ploop = ctid != 0 and call.private and call.layout() == 'ploop'
    if 'diskspace' in request.given and ploop and not save:
        raise Failure(E_SYNTAX, "Error: can't use --diskspace without --save "
                                "for a ploop-based container")
    running = ctid != 0 and call.running()

    if 'applyconfig_map' in request.given and old.get('NAME'):
        _check_name(host, ctid, old['NAME'])
        host.set_name_link(old['NAME'], ctid)
    if 'reset_ub' in request.given:
        if not running:
            raise Failure(E_NOT_RUNNING, 'Unable to apply UBC parameters: '
                                         'container is not running')
        call.kernel.apply_resources(ctid, old)
        return 0
    if 'NAME' in request.changes:
        if not save:
            raise Failure(E_NAME, 'Error: unable to use --name option '
                                  'without --save')
        _check_name(host, ctid, request.changes['NAME'])
    if running:
        for key, what in (('VE_PRIVATE', 'VE_PRIVATE'),
                          ('VE_ROOT', 'VE_ROOT')):
            if key in request.changes:
                raise Failure(E_RUNNING, 'Unable to change %s on a running '
                                         'container' % what)
    if request.userpw:
        _set_userpasswd(call, request.userpw, running)
    if request.sample:
        _apply_sample(host, request)
    if 'diskspace' in request.given and ploop:
        hard_kb = vzconf.parse_diskspace(request.changes['DISKSPACE'])[1]
        ploop = ploop_lib()
        descriptor = ploop_do(E_RESIZE_IMAGE, ploop.read_descriptor,
                              host.disk_descriptor(ctid))
        ploop_do(E_RESIZE_IMAGE, ploop.resize, descriptor, hard_kb)
    if 'diskinodes' in request.given and ploop:
        out.info('Warning: --diskinodes is ignored for ploop-based '
                 'container')
    if ('ram' in request.given and ctid != 0 and
            not request.current('SWAPPAGES')):
        raise Failure(E_UBC, 'Error: required UB parameter (swap) not set')

    code = 0
    if running:
        code = _apply_set_running(call, request, save)
        if code < 0:
            return _finish_set(call, request, save, running, 0,
                               restart=True)
    elif not save and ctid != 0:
        code = _refuse_live_on_stopped(call, request)
    return _finish_set(call, request, save, running, code)


def _set_userpasswd(call, userpw, running):
    """Set passwords; a stopped CT is mounted just for that."""
    root = call.require_root()
    mounted = call.mounted()
    if not running and not mounted:
        call.kernel.mount(call.ctid, call.tree(), root)
    try:
        for user, password in userpw:
            set_password(root, user, password, call)
    finally:
        if not running and not mounted:
            call.kernel.umount(call.ctid, root)


def _refuse_live_on_stopped(call, request):
    """A stopped container without --save: live kinds fail with 31."""
    for kind, message in NOT_RUNNING_MESSAGES:
        if kind in request.kinds:
            call.out.error(message)
            return E_NOT_RUNNING
    if 'guest' in request.kinds:
        call.out.error('Unable to configure container: not running')
    return 0


def _apply_set_running(call, request, save):
    """Apply a set to a running container; -1 means "restart instead"."""
    out, ctid, kernel = call.out, call.ctid, call.kernel
    setmode = call.opt('setmode')
    restart_keys = [key for key in request.changes
                    if key in RESTART_MESSAGES and
                    request.changes[key] != request.old.get(key, '')]
    ugid = request.changes.get('QUOTAUGIDLIMIT')
    ugid_switch = None
    if ugid is not None:
        before = int(request.old.get('QUOTAUGIDLIMIT') or 0)
        if bool(int(ugid)) != bool(before):
            ugid_switch = 'on' if int(ugid) else 'off'
    if restart_keys or ugid_switch:
        if setmode != 'restart':
            for key in restart_keys:
                out.error(RESTART_MESSAGES[key])
            if ugid_switch:
                out.error('Unable to turn %s second-level disk quota on a '
                          'running container' % ugid_switch)
        if setmode == 'restart':
            return -1
        if setmode == 'ignore':
            return E_RUNNING
        out.error('WARNING: Some of the parameters could not be applied to '
                  'a running container.\n\tPlease consider using --setmode '
                  'option')
    merged = request.merged()
    kinds = request.kinds
    try:
        if kinds & {'ubc', 'cpu', 'io', 'dev', 'disk'}:
            kernel.apply_resources(ctid, merged)
        if 'net' in kinds:
            old_ips = [_ip_address(e) for e in
                       request.old.get('IP_ADDRESS', '').split()]
            new_ips = [_ip_address(e) for e in
                       merged.get('IP_ADDRESS', '').split()]
            gone = [ip for ip in old_ips if ip not in new_ips]
            added = [ip for ip in new_ips if ip not in old_ips]
            if gone:
                out.info('Deleting IP address(es): %s' % ' '.join(gone))
                kernel.del_ips(ctid, gone)
            if added:
                out.info('Adding IP address(es): %s' % ' '.join(added))
                kernel.add_ips(ctid, added)
        if 'cpu' in kinds:
            for key, label in (('CPUUNITS', 'CPU units'),
                               ('CPULIMIT', 'CPU limit'), ('CPUS', 'CPUs')):
                if key in request.changes:
                    out.info('Setting %s: %s' % (label, merged[key]))
        if 'veth' in kinds:
            old_names = [d.get('host_ifname') for d in
                         _netif_devices(request.old.get('NETIF'))]
            new_names = [d.get('host_ifname') for d in
                         _netif_devices(merged.get('NETIF'))]
            kernel.del_veth(ctid, [n for n in old_names
                                   if n not in new_names])
            if new_names:
                out.info('Configure veth devices: %s' % ' '.join(new_names))
                kernel.add_veth(ctid, _netif_devices(merged.get('NETIF')))
        if 'guest' in kinds:
            warning = dist_warning(call.host, merged)
            if warning:
                out.error(warning)
            changed = request.changes
            configure_guest(
                call.host, call.root, hostname=changed.get('HOSTNAME'),
                nameservers=(changed['NAMESERVER'].split()
                             if 'NAMESERVER' in changed else None),
                searchdomains=(changed['SEARCHDOMAIN'].split()
                               if 'SEARCHDOMAIN' in changed else None))
            kernel.set_hostname(ctid, changed.get('HOSTNAME'))
    except hostfs.ToolError as exc:
        out.error(exc.message)
        return exc.code
    return 0


def _finish_set(call, request, save, running, code, restart=False):
    """Save (or warn about not saving) after a set, as run_action does."""
    out, host, ctid = call.out, call.host, call.ctid
    if not save:
        if code == 0 and not (request.userpw and len(request.given) == 1):
            out.info('WARNING: Settings were not saved to config %s(use '
                     '--save flag)' % ('and will be lost after CT restart '
                                       if running else ''))
        return code
    if code:
        out.error('Error: failed to apply some parameters, not saving '
                  'configuration file!')
        return code
    path = call.conf_path
    try:
        with open(path, encoding='utf-8') as f:
            before = f.read()
    except FileNotFoundError:
        out.error('WARNING: %s not found' % path)
        before = None
    after = vzconf.render(before or '', request.changes, request.removes)
    if before is not None and after == before:
        out.info('No changes in CT configuration, not saving')
    else:
        hostfs.write_atomic(path, after)
        out.info('CT configuration saved to %s' % path)
    if 'NAME' in request.changes:
        if request.old.get('NAME') and \
                request.old['NAME'] != request.changes['NAME']:
            link = host.name_link(request.old['NAME'])
            if host.ctid_by_name(request.old['NAME']) == ctid:
                os.unlink(link)
        host.set_name_link(request.changes['NAME'], ctid)
        out.info('Name %s assigned' % request.changes['NAME'])
    if restart:
        try:
            do_stop(call)
            do_start(call)
        except hostfs.ToolError as exc:
            if before is not None:
                hostfs.write_atomic(path, before)
            out.error(exc.message)
            out.error('Error: failed to apply some parameters, not saving '
                      'configuration file!')
            return exc.code
    return 0


# -- snapshots --------------------------------------------------------------

SNAPSHOT_SPEC = {'id': True, 'uuid': True, 'name': True, 'description': True,
                 'skip-suspend': False, 'skip-config': False}
SWITCH_SPEC = {'id': True, 'uuid': True, 'skip-resume': False,
               'must-resume': False, 'skip-config': False}
ID_SPEC = {'id': True, 'uuid': True}
MOUNT_SPEC = {'id': True, 'uuid': True, 'target': True}
SNAPSHOT_FIELDS = {
    # field -> (header, width)
    'parent_uuid': ('PARENT_UUID', 38), 'current': ('C', 1),
    'uuid': ('UUID', 38), 'date': ('DATE', 19), 'name': ('NAME', 32),
    'desc': ('DESCRIPTION', 32), 'device': ('DEVICE', 16),
    'target': ('TARGET', 0),
}
SNAPSHOT_ALIASES = {'id': 'uuid', 'parent_id': 'parent_uuid'}
DEFAULT_SNAPSHOT_FIELDS = ('parent_uuid', 'current', 'uuid', 'date', 'name')


def normalise_uuid(text):
    """``{xxxxxxxx-...}`` form of a UUID, or None when it is not one."""
    import uuid
    try:
        return '{%s}' % uuid.UUID(text.strip('{}'))
    except ValueError:
        return None


class SnapshotTree:
    """vzctl's ``<VE_PRIVATE>/Snapshots.xml`` (ParallelsSavedStates)."""

    def __init__(self, private):
        self.path = os.path.join(private, SNAPSHOTS_XML)
        import xml.etree.ElementTree as ElementTree
        self.et = ElementTree
        try:
            self.doc = ElementTree.parse(self.path).getroot()
        except FileNotFoundError:
            self.doc = ElementTree.Element('ParallelsSavedStates')
            ElementTree.SubElement(self.doc, 'SavedStateItem', guid='',
                                   current='no')

    def items(self):
        """``[(item, parent_guid)]`` of every snapshot, tree order."""
        found = []

        def walk(node, parent):
            for child in node.findall('SavedStateItem'):
                found.append((child, parent))
                walk(child, child.get('guid'))
        walk(self.doc.find('SavedStateItem'), '')
        return found

    def find(self, guid):
        for item, parent in self.items():
            if item.get('guid') == guid:
                return item, parent
        return None, None

    def current(self):
        for item, _ in self.items():
            if item.get('current') == 'yes':
                return item
        return None

    def _node(self, guid):
        if not guid:
            return self.doc.find('SavedStateItem')
        return self.find(guid)[0]

    def set_current(self, guid):
        for item, _ in self.items():
            item.set('current', 'yes' if item.get('guid') == guid else 'no')

    def add(self, guid, name, description):
        current = self.current()
        parent = current if current is not None else self._node('')
        item = self.et.SubElement(parent, 'SavedStateItem', guid=guid,
                                  current='no')
        for tag, text in (('Name', name), ('DateTime', time.strftime(
                '%Y-%m-%d %H:%M:%S')), ('Creator', 'vzctl'),
                          ('ScreenShot', ''), ('Description', description)):
            self.et.SubElement(item, tag).text = text
        self.set_current(guid)

    def remove(self, guid):
        item, parent_guid = self.find(guid)
        parent = self._node(parent_guid)
        index = list(parent).index(item)
        parent.remove(item)
        for offset, child in enumerate(item.findall('SavedStateItem')):
            parent.insert(index + offset, child)
        if item.get('current') == 'yes' and parent_guid:
            self.set_current(parent_guid)

    def save(self):
        self.et.indent(self.doc)
        text = self.et.tostring(self.doc, encoding='unicode')
        hostfs.write_atomic(self.path, '<?xml version="1.0" encoding="UTF-8"'
                                       '?>\n' + text + '\n')


def _snapshot_id(call, required=True):
    value = call.opt('id') or call.opt('uuid')
    if value is None:
        if required:
            raise Failure(E_SYNTAX, 'Invalid syntax: snapshot id is missing')
        return None
    guid = normalise_uuid(value)
    if guid is None:
        raise Failure(E_VALUE, 'Bad parameter for --id: %s' % value)
    return guid


def _require_ploop(call, code):
    """The parsed DiskDescriptor.xml of a ploop CT (snapshot commands)."""
    if call.layout() != 'ploop':
        raise Failure(code, 'Snapshot feature is only available for '
                            'ploop-based CTs')
    return ploop_do(code, ploop_lib().read_descriptor,
                    call.host.disk_descriptor(call.ctid))


def cmd_snapshot(call):
    import uuid
    private = call.require_private()
    descriptor = _require_ploop(call, E_CREATE_SNAPSHOT)
    guid = _snapshot_id(call, required=False) or '{%s}' % uuid.uuid4()
    tree = SnapshotTree(private)
    if tree.find(guid)[0] is not None:
        raise Failure(E_CREATE_SNAPSHOT, 'Snapshot %s already exists' % guid)
    out, kernel, ctid = call.out, call.kernel, call.ctid
    out.info('Creating snapshot %s' % guid)
    dump_dir = os.path.join(private, 'dump')
    os.makedirs(dump_dir, exist_ok=True)
    running = call.running()
    frozen = False
    if running and not call.opt('skip-suspend'):
        kernel.freeze(ctid)
        frozen = True
    try:
        ploop_do(E_CREATE_SNAPSHOT, ploop_lib().snapshot, descriptor, guid)
        if frozen:
            kernel.dump(ctid, os.path.join(dump_dir, guid))
    finally:
        if frozen:
            kernel.thaw(ctid)
    if not call.opt('skip-config'):
        shutil.copyfile(call.conf_path,
                        os.path.join(dump_dir, guid + '.ve.conf'))
    tree.add(guid, call.opt('name') or '', call.opt('description') or '')
    out.info('Storing %s' % tree.path)
    tree.save()
    out.info('Snapshot %s has been successfully created' % guid)
    return 0


def cmd_snapshot_switch(call):
    guid = _snapshot_id(call)
    if call.opt('skip-resume') and call.opt('must-resume'):
        raise Failure(E_SYNTAX, 'Invalid syntax: --skip-resume and '
                                '--must-resume are mutually exclusive')
    private = call.require_private()
    descriptor = _require_ploop(call, E_SWITCH_SNAPSHOT)
    tree = SnapshotTree(private)
    if tree.find(guid)[0] is None:
        raise Failure(E_SWITCH_SNAPSHOT, 'Unable to find snapshot by uuid %s'
                      % guid)
    dump = os.path.join(private, 'dump', guid)
    resume = os.path.exists(dump) and not call.opt('skip-resume')
    if call.opt('must-resume') and not resume:
        raise Failure(E_SWITCH_SNAPSHOT, 'Unable to resume: snapshot %s has '
                                         'no memory dump' % guid)
    out, kernel, ctid = call.out, call.kernel, call.ctid
    out.info('Switching to snapshot %s' % guid)
    if call.running():
        kernel.stop(ctid, fast=True)
    if call.mounted():
        call.umount()
    ploop_do(E_SWITCH_SNAPSHOT, ploop_lib().switch, descriptor, guid)
    saved_conf = os.path.join(private, 'dump', guid + '.ve.conf')
    if not call.opt('skip-config') and os.path.exists(saved_conf):
        shutil.copyfile(saved_conf, call.conf_path)
    tree.set_current(guid)
    tree.save()
    if resume:
        call.mount()
        kernel.restore(ctid, dump)
    out.info('Snapshot %s has been successfully switched' % guid)
    return 0


def cmd_snapshot_delete(call):
    guid = _snapshot_id(call)
    private = call.require_private()
    descriptor = _require_ploop(call, E_DELETE_SNAPSHOT)
    tree = SnapshotTree(private)
    if tree.find(guid)[0] is None:
        raise Failure(E_DELETE_SNAPSHOT, 'Unable to find snapshot by uuid %s'
                      % guid)
    call.out.info('Deleting snapshot %s' % guid)
    ploop_do(E_DELETE_SNAPSHOT, ploop_lib().delete, descriptor, guid,
             mounted=call.mounted())
    for leftover in (guid, guid + '.ve.conf'):
        path = os.path.join(private, 'dump', leftover)
        if os.path.exists(path):
            os.unlink(path)
    tree.remove(guid)
    call.out.info('Storing %s' % tree.path)
    tree.save()
    call.out.info('Snapshot %s has been successfully deleted' % guid)
    return 0


def cmd_snapshot_mount(call):
    guid = _snapshot_id(call)
    target = call.opt('target')
    if not target:
        raise Failure(E_SYNTAX, 'Invalid syntax: --target is missing')
    private = call.require_private()
    descriptor = _require_ploop(call, E_MOUNT_SNAPSHOT)
    if SnapshotTree(private).find(guid)[0] is None:
        raise Failure(E_MOUNT_SNAPSHOT, 'Unable to find snapshot by uuid %s'
                      % guid)
    ploop_command(E_MOUNT_SNAPSHOT, call.host,
                  ['mount', '-r', '-u', guid, '-m', target, descriptor.path])
    return 0


def cmd_snapshot_umount(call):
    guid = _snapshot_id(call)
    private = call.require_private()
    descriptor = _require_ploop(call, E_UMOUNT_SNAPSHOT)
    if SnapshotTree(private).find(guid)[0] is None:
        raise Failure(E_UMOUNT_SNAPSHOT, 'Unable to find snapshot by uuid %s'
                      % guid)
    ploop = ploop_lib()
    devices = [device for device, entry in ploop.devices(call.host)
               if entry['guid'] == guid and
               entry['descriptor'] == os.path.realpath(descriptor.path)]
    if not devices:
        raise Failure(E_UMOUNT_SNAPSHOT, 'Snapshot %s is not mounted' % guid)
    ploop_command(E_UMOUNT_SNAPSHOT, call.host, ['umount', '-d', devices[0]])
    return 0


def _snapshot_list_args(argv):
    """snapshot-list takes -H, -o LIST, --id UUID and -L."""
    spec = {'no-header': False, 'output': True, 'id': True, 'uuid': True,
            'list': False}
    short = {'-H': 'no-header', '-o': 'output', '-L': 'list'}
    expanded = []
    for arg in argv:
        if arg in short:
            expanded.append('--' + short[arg])
        elif arg.startswith('-o') and len(arg) > 2:
            expanded += ['--output', arg[2:]]
        else:
            expanded.append(arg)
    return getopt(expanded, spec)


def cmd_snapshot_list(call):
    if call.opt('list'):
        for field, (header, _) in SNAPSHOT_FIELDS.items():
            sys.stdout.write('%-15s %-15s\n' % (field, header))
        return 0
    fields = []
    for field in (call.opt('output') or
                  ','.join(DEFAULT_SNAPSHOT_FIELDS)).split(','):
        field = SNAPSHOT_ALIASES.get(field, field)
        if field not in SNAPSHOT_FIELDS:
            raise Failure(E_LIST_SNAPSHOT, 'Unknown field: %s' % field)
        fields.append(field)
    only = _snapshot_id(call, required=False)
    rows = []
    private = call.private
    if private and os.path.exists(os.path.join(private, SNAPSHOTS_XML)):
        for item, parent in SnapshotTree(private).items():
            if only and item.get('guid') != only:
                continue
            values = {'parent_uuid': parent, 'uuid': item.get('guid'),
                      'current': '*' if item.get('current') == 'yes' else '',
                      'date': item.findtext('DateTime') or '',
                      'name': item.findtext('Name') or '',
                      'desc': item.findtext('Description') or '',
                      'device': '', 'target': ''}
            rows.append(values)

    def line(values):
        cells = []
        for field in fields:
            width = SNAPSHOT_FIELDS[field][1]
            cells.append('%-*s' % (width, values[field][:width] if width
                                   else values[field]))
        return ' '.join(cells).rstrip()
    if not call.opt('no-header'):
        sys.stdout.write(line({f: SNAPSHOT_FIELDS[f][0]
                               for f in SNAPSHOT_FIELDS}) + '\n')
    for values in rows:
        sys.stdout.write(line(values) + '\n')
    return 0


# -- dispatch ---------------------------------------------------------------

class Command:
    """A vzctl command: handler, options, locking, option-error code."""

    def __init__(self, handler, spec=None, lock=True, parse_error=E_SYNTAX,
                 positional=False, check=None, parser=None):
        self.handler = handler
        self.spec = spec or {}
        self.lock = lock
        self.parse_error = parse_error
        self.positional = positional
        self.check = check
        self.parser = parser

    def parse(self, argv):
        if self.positional:
            return [], list(argv)
        try:
            options, positional = (self.parser or
                                   (lambda a: getopt(a, self.spec)))(argv)
        except Failure:
            raise Failure(self.parse_error)
        if positional:
            if self.parse_error == E_VALUE:
                sys.stdout.write('non-option ARGV-elements: %s \n'
                                 % ' '.join(positional))
            else:
                sys.stderr.write('Invalid extra arguments: %s\n'
                                 % ' '.join(positional))
            raise Failure(E_SYNTAX)
        if self.check:
            self.check(options)
        return options, []


_START = _startstop_spec(True, False)
_STOP = _startstop_spec(False, True)
_RESTART = _startstop_spec(True, True)
COMMANDS = {
    'create': Command(cmd_create, CREATE_SPEC, parse_error=E_VALUE),
    'start': Command(cmd_start, _START[0], check=_START[1]),
    'stop': Command(cmd_stop, _STOP[0], check=_STOP[1]),
    'restart': Command(cmd_restart, _RESTART[0], check=_RESTART[1]),
    'status': Command(cmd_status, lock=False),
    'mount': Command(cmd_mount),
    'umount': Command(cmd_umount),
    'destroy': Command(cmd_destroy),
    'delete': Command(cmd_destroy),
    'compact': Command(cmd_compact),
    'set': Command(cmd_set, SET_SPEC, parse_error=E_VALUE),
    'exec': Command(cmd_exec, lock=False, positional=True),
    'exec2': Command(cmd_exec2, lock=False, positional=True),
    'exec3': Command(cmd_exec3, lock=False, positional=True),
    'runscript': Command(cmd_runscript, positional=True),
    'enter': Command(cmd_enter, lock=False, positional=True),
    'console': Command(console.attach, lock=False, positional=True),
    'suspend': Command(cmd_chkpnt, CHKPNT_SPEC),
    'chkpnt': Command(cmd_chkpnt, CHKPNT_SPEC),
    'resume': Command(cmd_restore, RESTORE_SPEC),
    'restore': Command(cmd_restore, RESTORE_SPEC),
    'snapshot': Command(cmd_snapshot, SNAPSHOT_SPEC, parse_error=E_VALUE),
    'snapshot-switch': Command(cmd_snapshot_switch, SWITCH_SPEC,
                               parse_error=E_VALUE),
    'snapshot-delete': Command(cmd_snapshot_delete, ID_SPEC,
                               parse_error=E_VALUE),
    'snapshot-list': Command(cmd_snapshot_list, parser=_snapshot_list_args,
                             parse_error=E_LIST_SNAPSHOT),
    'snapshot-mount': Command(cmd_snapshot_mount, MOUNT_SPEC,
                              parse_error=E_VALUE),
    'snapshot-umount': Command(cmd_snapshot_umount, ID_SPEC,
                               parse_error=E_VALUE),
}
#: Commands that work without an existing ``<CTID>.conf``.
NO_CONFIG_NEEDED = ('create', 'status', 'set')


def _split(argv):
    """``(global flags, command, target, rest)`` of a vzctl command line."""
    args = list(argv)
    flags = []
    while args and args[0] in GLOBAL_FLAGS:
        flags.append(args.pop(0))
    command = args.pop(0) if args else None
    target = args.pop(0) if args else None
    return flags, command, target, args


def run(host, argv):
    flags, command, target, rest = _split(argv)
    if '--version' in flags:
        sys.stdout.write('vzctl version %s\n' % VERSION)
        return 0
    if command is None:
        sys.stderr.write(USAGE.format(version=VERSION))
        return E_SYNTAX
    if command == '--help':
        sys.stdout.write(USAGE.format(version=VERSION))
        return 0
    spec = COMMANDS.get(command)
    if spec is None:
        sys.stderr.write('Bad command: %s\n' % command)
        return E_SYNTAX
    if target is None:
        sys.stderr.write('CT ID missing\n')
        return E_VALUE
    ctid = host.resolve(target)
    if ctid is None:
        sys.stderr.write('Bad CT ID %s\n' % target)
        return E_VALUE
    quiet = '--quiet' in flags or command == 'status'
    out = hostfs.Output(host, 'vzctl', ctid, quiet)
    try:
        return _run_command(host, command, spec, ctid, target, rest, out,
                            skiplock='--skiplock' in flags)
    except hostfs.ToolError as exc:
        if exc.message:
            out.error(exc.message)
        return exc.code


def _run_command(host, command, spec, ctid, target, rest, out, skiplock):
    if not os.path.isfile(host.vz_conf_path):
        raise Failure(E_NOCONFIG, 'Unable to open %s: No such file or '
                                  'directory' % host.vz_conf_path)
    options, positional = spec.parse(rest)
    if ctid == 0 and command != 'set':
        sys.stderr.write('Only set actions are allowed for CT0\n')
        return E_VALUE
    if host.has_config(ctid):
        name = host.read_config(ctid).get('NAME')
        if target != str(ctid) and name and name != target:
            raise Failure(E_VALUE, 'Unable to find container by name %s'
                          % target)
    elif command not in NO_CONFIG_NEEDED:
        raise Failure(E_NOVECONFIG, 'Container config file does not exist')
    call = Call(host, ctid, out, kernels.for_host(host), options, positional)
    if not spec.lock or skiplock:
        return spec.handler(call)
    with hostfs.CTLock(host, ctid, command, say=out.info):
        return spec.handler(call)


def main(root, argv):
    """Entry point of the generated ``DIR/usr/sbin/vzctl`` wrapper."""
    host = hostfs.Host(root)
    _, command, target, _ = _split(argv)
    ctid = host.resolve(target) if target else None
    return hostfs.run_tool(host, 'vzctl', argv, run, command=command,
                           ctid=target if ctid is None else ctid)
