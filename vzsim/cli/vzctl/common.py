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

"""What every vzctl command shares.

Exit codes, option and value parsing, the per-call context :class:`Call`
(mount and umount with their action scripts) and the way to the ploop
library.
"""

import os
import sys

from vzsim import conffile
from vzsim import hostfs


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


# -- small value parsers (each raises conffile.FormatError on bad input) ------

def yes_no(text):
    if text not in ('yes', 'no'):
        raise conffile.FormatError(text)
    return text


def uint(text):
    if not text.isdigit():
        raise conffile.FormatError(text)
    return str(int(text))


def ranged(low, high):
    def parse(text):
        if not text.isdigit() or not low <= int(text) <= high:
            raise conffile.FormatError(text)
        return str(int(text))
    return parse


def choice(*allowed):
    def parse(text):
        if text not in allowed:
            raise conffile.FormatError(text)
        return text
    return parse


def raw_text(text):
    return text


def decimal(text):
    try:
        value = float(text)
    except ValueError:
        raise conffile.FormatError(text)
    if value < 0:
        raise conffile.FormatError(text)
    return text


def ubc_value(param):
    def parse(text):
        return conffile.format_ubc(*conffile.parse_ubc(param, text))
    return parse


def vswap_value(text):
    """--ram/--swap: bytes (suffixes allowed) to ``0:<pages>``."""
    if text == 'unlimited':
        return '0:unlimited'
    pages = -(-conffile.parse_size(text) // conffile.PAGE_SIZE)
    return '0:%d' % pages


def diskspace_value(text):
    return conffile.format_diskspace(*conffile.parse_diskspace(text))


def diskinodes_value(text):
    parts = text.split(':')
    if len(parts) > 2 or not all(p.isdigit() for p in parts):
        raise conffile.FormatError(text)
    return '%d:%d' % (int(parts[0]), int(parts[-1]))


def cpulimit_value(text):
    if text.endswith('%'):
        percent = text[:-1]
        if not percent.isdigit() or int(percent) > 100:
            raise conffile.FormatError(text)
        return str(int(percent) * (os.cpu_count() or 1))
    return uint(text)


def cpu_list(text):
    """``all`` or a list like ``0,2-3`` (CPUMASK/NODEMASK)."""
    if text in ('all', 'auto'):
        return text
    for part in text.split(','):
        bounds = part.split('-')
        if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
            raise conffile.FormatError(text)
        if len(bounds) == 2 and int(bounds[0]) > int(bounds[1]):
            raise conffile.FormatError(text)
    return text


def iolimit_value(text):
    """IOLIMIT: MB/s by default on the command line, bytes/s in config."""
    return str(conffile.parse_size(text, unit=1024 * 1024))


def ip_value(text):
    """Canonical ``addr[/mask]``; None for the ignored 0.0.0.0 and ::."""
    import ipaddress
    address, slash, mask = text.partition('/')
    try:
        parsed = ipaddress.ip_address(address)
        if slash:
            ipaddress.ip_network('%s/%s' % (parsed, mask), strict=False)
    except ValueError:
        raise conffile.FormatError(text)
    if parsed.is_unspecified:
        return None
    return parsed.compressed + (slash + mask if slash else '')


def ip_address(entry):
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
    """The ploop back end (imported only by ploop work: it costs time)."""
    from vzsim.kernel import ploop
    return ploop


def ploop_do(error_code, function, *args, **kwargs):
    """Call a ploop library function; its errors exit ``error_code``."""
    try:
        return function(*args, **kwargs)
    except hostfs.ToolError as exc:
        raise Failure(error_code, exc.message)


def ploop_command(error_code, host, argv):
    """Do ``ploop <argv>`` in-process, as vzctl does through libploop."""
    from vzsim.cli import ploop
    ploop_do(error_code, ploop.run, host, argv)
