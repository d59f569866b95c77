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

"""``nova-openvz check``: is this host ready for the OpenVZ driver?

In the manner of ``nova-status upgrade check``: every check is a small
function returning ``(status, message, hint)``, the command prints one line
per check and exits with the worst status found:

* 0 -- every check passed,
* 1 -- warnings only (the driver starts, but something is worth a look),
* 2 -- at least one failure (nova-compute would not work with the driver).

The checks read what nova-compute reads: Nova's and the ``[openvz]``
options from the configuration files given, the host tools in
``[openvz] tools_dir``, ``[openvz] vz_conf`` and the kernel's files under
``[openvz] host_root``. A simulated host (``nova-openvz simulate init
DIR``) is checked the same way: its ``DIR/nova-openvz.conf`` points those
options into ``DIR``.
"""

import collections
import configparser
import glob
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

from oslo_config import cfg

from nova_openvz import conf as openvz_conf
from nova_openvz.privsep import hostpaths
from nova_openvz.privsep import vzconf

CONF = openvz_conf.CONF

PASS = 0
WARNING = 1
FAILURE = 2
STATUS_NAMES = {PASS: 'PASS', WARNING: 'WARNING', FAILURE: 'FAILURE'}

DRIVER = 'openvz.OpenVZDriver'
PRIVSEP_CONTEXT = 'nova_openvz.privsep.vz_pctxt'

#: Free space in the template cache below which a check fails or warns.
#: An OS template tarball is typically 100-500 MB, and vzctl unpacks a
#: container from it; a few must fit.
CACHE_FAILURE_BYTES = 1024 ** 3
CACHE_WARNING_BYTES = 5 * 1024 ** 3

#: vzctl gained ploop support in 4.0.
PLOOP_MIN_VZCTL = (4, 0)

VERSION_TIMEOUT = 30

Result = collections.namedtuple('Result', 'status message hint')

_VERSION_RE = re.compile(r'vzctl version (\d+)\.(\d+)(?:\.(\d+))?')


def _result(status, message, hint=''):
    return Result(status, message, hint)


def _executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _tool(name):
    return os.path.join(CONF.openvz.tools_dir, name)


def _host_config():
    """vz.conf's paths, read now (instance directories are not checked)."""
    return hostpaths.HostPaths(CONF.openvz.vz_conf, None)


# The checks, in the order they are printed ---------------------------------

def check_kernel():
    """The OpenVZ kernel's interfaces exist under host_root/proc."""
    proc = os.path.join(CONF.openvz.host_root, 'proc')
    proc_vz = os.path.join(proc, 'vz')
    veinfo = os.path.join(proc_vz, 'veinfo')
    if not os.path.isdir(proc_vz):
        return _result(
            FAILURE, '%s does not exist: the running kernel has no OpenVZ '
            'containers' % proc_vz,
            'boot an OpenVZ kernel (RHEL 6 based 2.6.32-042stab or OpenVZ 7 '
            'vzkernel); [openvz] host_root must name the root of that host '
            '("/" on a real one)')
    try:
        with open(veinfo) as f:
            lines = [line for line in f if line.strip()]
    except FileNotFoundError:
        return _result(
            FAILURE, '%s exists but %s does not' % (proc_vz, veinfo),
            'the vzmon module is not loaded: modprobe vzmon, or boot the '
            'OpenVZ kernel')
    except OSError as e:
        return _result(WARNING, 'cannot read %s: %s' % (veinfo, e),
                       'run the check as root, as nova-compute\'s '
                       'privileged helper runs')
    # The first line is the host itself (CT 0).
    running = max(0, len(lines) - 1)
    beancounters = os.path.join(proc, 'user_beancounters')
    if not os.path.exists(beancounters):
        return _result(
            WARNING, '%s present (%d containers running) but %s is missing'
            % (proc_vz, running, beancounters),
            'without user beancounters container memory limits are not '
            'accounted; load the OpenVZ kernel\'s vzmon/ubc support')
    return _result(PASS, '%s present, %d containers running'
                   % (proc_vz, running))


def check_tools():
    """vzctl and vzlist (and ploop for ploop containers) are executable."""
    layout = CONF.openvz.layout
    required = ['vzctl', 'vzlist'] + (['ploop'] if layout == 'ploop' else [])
    missing = [_tool(name) for name in required
               if not _executable(_tool(name))]
    if missing:
        return _result(
            FAILURE, '%s missing or not executable' % ', '.join(missing),
            'install the OpenVZ userland (vzctl, vzlist, ploop) matching '
            'the kernel, or point [openvz] tools_dir at it')
    if layout != 'ploop' and not _executable(_tool('ploop')):
        return _result(
            WARNING, 'vzctl and vzlist found in %s, ploop is not'
            % CONF.openvz.tools_dir,
            'flavors asking for openvz:layout=ploop and disk_format=ploop '
            'images will fail to boot; install ploop or keep every flavor '
            'on simfs and every image a template tarball')
    return _result(PASS, '%s found in %s'
                   % (', '.join(required), CONF.openvz.tools_dir))


def check_vzctl_version():
    """vzctl answers --version in a form the driver understands."""
    vzctl = _tool('vzctl')
    if not _executable(vzctl):
        return _result(FAILURE, 'cannot run %s --version: no such tool'
                       % vzctl, 'see the host tools check')
    try:
        proc = subprocess.run([vzctl, '--version'], capture_output=True,
                              text=True, timeout=VERSION_TIMEOUT,
                              check=False,
                              env={'LC_ALL': 'C',
                                   'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'})
    except (OSError, subprocess.TimeoutExpired) as e:
        return _result(FAILURE, '%s --version failed: %s' % (vzctl, e),
                       'run it by hand to see why')
    output = (proc.stdout + proc.stderr).strip()
    match = _VERSION_RE.search(output)
    if proc.returncode != 0 or not match:
        return _result(
            FAILURE, '%s --version exited %d and said %r'
            % (vzctl, proc.returncode, output[:200]),
            'the driver reads the version at start and refuses a vzctl '
            'that does not print "vzctl version X.Y[.Z]"')
    major, minor, micro = (int(part or 0) for part in match.groups())
    version = '%d.%d.%d' % (major, minor, micro)
    if CONF.openvz.layout == 'ploop' and (major, minor) < PLOOP_MIN_VZCTL:
        return _result(
            WARNING, 'vzctl %s has no ploop support' % version,
            'upgrade vzctl to 4.0 or later, or set [openvz] layout = simfs')
    return _result(PASS, 'vzctl %s (hypervisor_version %d)'
                   % (version, major * 1000000 + minor * 1000 + micro))


def check_vz_conf():
    """vz.conf sets the paths the driver needs and they exist."""
    host = _host_config()
    problems = host.problems()
    if not os.path.isfile(host.vz_conf_path):
        return _result(
            FAILURE, '; '.join(problems),
            'install vzctl\'s global config or point [openvz] vz_conf at it')
    for key in ('VE_PRIVATE', 'VE_ROOT'):
        value = host.values.get(key)
        if not value:
            continue
        parent = os.path.dirname(vzconf.expand_veid(value, 0))
        if not os.path.isdir(parent):
            problems.append('%s=%s: %s does not exist' % (key, value, parent))
    lockdir = host.values.get('LOCKDIR')
    if lockdir and not os.path.isdir(lockdir):
        problems.append('LOCKDIR=%s does not exist' % lockdir)
    if problems:
        return _result(
            FAILURE, '; '.join(problems),
            'fix %s (vzctl reads the same file) or create the directories '
            'it names' % host.vz_conf_path)
    dumpdir = host.dump_dir
    if not os.path.isdir(dumpdir):
        return _result(
            WARNING, '%s is usable but DUMPDIR %s does not exist'
            % (host.vz_conf_path, dumpdir),
            'create it: vzctl suspend and checkpoints write there')
    return _result(PASS, '%s: private %s, templates %s'
                   % (host.vz_conf_path, host.private_parent(),
                      host.template_cache_dir))


def check_template_cache():
    """The OS template cache exists and has room for templates."""
    cache = _host_config().template_cache_dir
    if not os.path.isdir(cache):
        return _result(
            FAILURE, 'template cache %s does not exist' % cache,
            'create it (mkdir -p) or fix TEMPLATE in %s'
            % CONF.openvz.vz_conf)
    stat = os.statvfs(cache)
    free = stat.f_bavail * stat.f_frsize
    templates = len(glob.glob(os.path.join(cache, '*.tar*')))
    message = '%s: %.1f GiB free, %d templates cached' % (
        cache, free / 1024.0 ** 3, templates)
    hint = ('free space on that filesystem: Glance images are copied there '
            'before a container is created from them')
    if free < CACHE_FAILURE_BYTES:
        return _result(FAILURE, message, hint)
    if free < CACHE_WARNING_BYTES:
        return _result(WARNING, message, hint)
    return _result(PASS, message)


def check_host_facts():
    """libvirt answers for the host's CPUs and memory."""
    from nova_openvz import exception
    from nova_openvz import hostinfo
    uri = CONF.openvz.libvirt_uri
    try:
        facts = hostinfo.HostFacts(uri).get()
    except exception.HostNotReady as e:
        return _result(
            FAILURE, e.format_message(),
            'check [openvz] libvirt_uri; openvz:///system needs libvirt '
            'built with its OpenVZ driver')
    return _result(PASS, '%s: %d CPUs, %d MB, %s'
                   % (uri, facts['vcpus'], facts['memory_mb'], facts['arch']))


def _find_program(name):
    """A program as sudo would find it: absolute, on PATH, or by Python."""
    if os.path.isabs(name):
        return name if _executable(name) else None
    found = shutil.which(name)
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if _executable(beside) else None


def _rootwrap_filters(rootwrap_config):
    parser = configparser.ConfigParser(interpolation=None)
    if not parser.read(rootwrap_config):
        return None
    paths = parser.get('DEFAULT', 'filters_path', fallback='')
    texts = []
    for directory in (p.strip() for p in paths.split(',') if p.strip()):
        for path in sorted(glob.glob(os.path.join(directory, '*'))):
            try:
                with open(path) as f:
                    texts.append((path, f.read()))
            except OSError:
                continue
    return texts


def check_privsep():
    """nova-compute can start the driver's privileged helper."""
    from nova_openvz import privsep  # noqa: F401  (registers the section)
    helper_command = CONF.nova_openvz_privsep.helper_command
    if helper_command:
        words = shlex.split(helper_command)
        missing = [w for w in words
                   if (w == 'sudo' or w.endswith('privsep-helper')) and
                   not _find_program(w)]
        if missing:
            return _result(
                FAILURE, '[nova_openvz_privsep] helper_command runs %s, '
                'which is not found' % ', '.join(missing),
                'install oslo.privsep (privsep-helper) where the command '
                'names it')
        return _result(PASS, 'helper_command: %s --privsep_context %s'
                       % (helper_command, PRIVSEP_CONTEXT))
    helper = _find_program('privsep-helper')
    if not helper:
        return _result(
            FAILURE, 'privsep-helper not found on PATH or next to %s'
            % sys.executable,
            'install oslo.privsep into nova-compute\'s environment')
    if CONF.workarounds.disable_rootwrap:
        return _result(PASS, 'sudo privsep-helper --privsep_context %s '
                       '(%s; the sudoers rule must allow it)'
                       % (PRIVSEP_CONTEXT, helper))
    rootwrap_config = CONF.rootwrap_config
    filters = _rootwrap_filters(rootwrap_config)
    if filters is None:
        return _result(
            WARNING, 'cannot confirm the privileged helper: rootwrap '
            'config %s not found' % rootwrap_config,
            'nova-compute starts privsep-helper through nova-rootwrap unless '
            '[workarounds] disable_rootwrap is set; give the config files '
            'nova-compute reads (--config-file)')
    for path, text in filters:
        if PRIVSEP_CONTEXT in text:
            return _result(PASS, 'rootwrap filter %s allows %s'
                           % (path, PRIVSEP_CONTEXT))
    return _result(
        FAILURE, 'no rootwrap filter under the filters_path of %s allows '
        'privsep-helper --privsep_context %s'
        % (rootwrap_config, PRIVSEP_CONTEXT),
        'add the privsep-rootwrap-openvz filter shown in the install guide '
        'to /etc/nova/rootwrap.d/openvz.filters')


def check_compute_driver():
    """nova.conf selects this driver."""
    driver = CONF.compute_driver
    if driver != DRIVER:
        return _result(
            FAILURE, '[DEFAULT] compute_driver is %r' % (driver,),
            'set [DEFAULT] compute_driver = %s in the file nova-compute '
            'reads (nova-cpu.conf on devstack)' % DRIVER)
    return _result(PASS, '[DEFAULT] compute_driver = %s' % DRIVER)


def check_loading_shim():
    """Nova's loader finds the driver in nova.virt.openvz."""
    try:
        module = importlib.import_module('nova.virt.openvz')
        getattr(module, 'OpenVZDriver')
    except (ImportError, AttributeError) as e:
        return _result(
            FAILURE, 'nova.virt.openvz.OpenVZDriver cannot be loaded: %s'
            % e,
            'install nova-openvz as a regular (non-editable) package into '
            'nova-compute\'s Python environment')
    return _result(PASS, 'nova.virt.openvz.OpenVZDriver loads (%s)'
                   % os.path.dirname(module.__file__))


def check_openvz_options():
    """The [openvz] options are valid and describe one host."""
    problems = []
    for opt in openvz_conf.ALL_OPTS:
        try:
            getattr(CONF.openvz, opt.dest)
        except (ValueError, cfg.Error) as e:
            problems.append('%s: %s' % (opt.dest, e))
    if problems:
        return _result(FAILURE, '; '.join(problems),
                       'fix the [openvz] section (tox -e genconfig shows '
                       'every option)')
    for name in ('tools_dir', 'vz_conf', 'host_root'):
        value = getattr(CONF.openvz, name)
        if not os.path.isabs(value):
            problems.append('%s = %s is not an absolute path' % (name, value))
    if problems:
        return _result(FAILURE, '; '.join(problems),
                       'give absolute paths in [openvz]')
    root = os.path.abspath(CONF.openvz.host_root)
    outside = [name for name in ('tools_dir', 'vz_conf')
               if os.path.commonpath([root, os.path.abspath(
                   getattr(CONF.openvz, name))]) != root]
    if outside:
        return _result(
            WARNING, '%s outside host_root %s' % (', '.join(
                '%s = %s' % (n, getattr(CONF.openvz, n)) for n in outside),
                root),
            'tools, vz.conf and kernel files should belong to one host; '
            'set host_root to that host\'s root')
    return _result(PASS, 'host_root %s, layout %s, CT IDs from %d'
                   % (root, CONF.openvz.layout, CONF.openvz.min_ctid))


#: Seconds an ssh to a migration peer may take.
PEER_TIMEOUT = 10
#: Where a simulated host names its peers (vzsim.cli.vzmigrate).
SIM_PEERS = 'sim/hosts.json'


def _simulated_peers():
    """The peers a simulated host's vzmigrate reaches, or None if real."""
    path = os.path.join(CONF.openvz.host_root, SIM_PEERS)
    if not os.path.isdir(os.path.join(CONF.openvz.host_root, 'sim')):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            table = json.load(f)
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def _ssh_reaches(peer):
    """``(ok, why)``: root's key gets a shell on ``peer`` without a prompt.

    vzmigrate runs every step as ``ssh root@<peer>`` in batch mode
    (reference 5.4), so this is the same test.
    """
    if not shutil.which('ssh'):
        return False, 'no ssh client on this host'
    try:
        proc = subprocess.run(
            ['ssh', '-o', 'BatchMode=yes', '-o',
             'ConnectTimeout=%d' % PEER_TIMEOUT, 'root@' + peer, 'true'],
            capture_output=True, text=True, timeout=PEER_TIMEOUT * 2,
            check=False)
    except subprocess.TimeoutExpired:
        return False, 'ssh timed out'
    if proc.returncode != 0:
        return False, (proc.stderr.strip().splitlines() or
                       ['ssh exited %d' % proc.returncode])[-1]
    return True, ''


def check_migration_peers():
    """Root reaches each configured migration peer as vzmigrate needs."""
    peers = CONF.openvz.migration_peers
    if not peers:
        return _result(PASS, 'no [openvz] migration_peers configured: not '
                             'checked')
    simulated = _simulated_peers()
    failed = []
    for peer in peers:
        if simulated is not None:
            root = simulated.get(peer)
            if not isinstance(root, str) or not os.path.isdir(
                    os.path.join(CONF.openvz.host_root, root)):
                failed.append('%s: not in %s' % (peer, SIM_PEERS))
            continue
        ok, why = _ssh_reaches(peer)
        if not ok:
            failed.append('%s: %s' % (peer, why))
    if failed:
        return _result(
            FAILURE, 'cannot reach %s' % '; '.join(failed),
            'give root a key every peer accepts without a password and '
            'known host keys (ssh-copy-id root@<peer>); on a simulated host '
            'name the peer in DIR/%s' % SIM_PEERS)
    return _result(PASS, 'root reaches %s' % ', '.join(peers))


CHECKS = (
    ('[openvz] options', check_openvz_options),
    ('compute_driver', check_compute_driver),
    ('Nova loads the driver', check_loading_shim),
    ('OpenVZ kernel', check_kernel),
    ('Host tools', check_tools),
    ('vzctl version', check_vzctl_version),
    ('vz.conf', check_vz_conf),
    ('Template cache', check_template_cache),
    ('Host facts', check_host_facts),
    ('Privsep helper', check_privsep),
    ('Migration peers', check_migration_peers),
)


def run_checks(checks=CHECKS):
    """Run every check; return ``[(name, Result)]``."""
    results = []
    for name, check in checks:
        try:
            result = Result(*check())
        except (cfg.Error, ValueError) as e:
            result = _result(FAILURE, 'cannot read the options it needs: %s'
                             % e, 'fix the configuration (see the [openvz] '
                             'options check)')
        except OSError as e:
            result = _result(FAILURE, 'cannot read a host file: %s' % e,
                             'run the check as root, as the privileged '
                             'helper runs')
        except Exception as e:  # a check must never hide the others
            result = _result(FAILURE, 'the check itself failed: %s: %s'
                             % (type(e).__name__, e),
                             'report this as a bug of nova-openvz')
        results.append((name, result))
    return results


def format_line(name, result):
    line = '%-7s  %s: %s' % (STATUS_NAMES[result.status], name,
                             result.message)
    if result.hint and result.status != PASS:
        line += ' (hint: %s)' % result.hint
    return line


def exit_code(results):
    return max([result.status for _name, result in results] or [PASS])


def report(results, out=None):
    out = out or sys.stdout
    for name, result in results:
        out.write(format_line(name, result) + '\n')
    counts = collections.Counter(r.status for _n, r in results)
    out.write('%d passed, %d warnings, %d failures\n'
              % (counts[PASS], counts[WARNING], counts[FAILURE]))
    return exit_code(results)


def load_config(config_files=(), config_dir=None):
    """Parse Nova's configuration as nova-compute would."""
    import nova.conf  # noqa: F401  (registers Nova's own options)
    args = []
    for path in config_files:
        args += ['--config-file', path]
    if config_dir:
        args += ['--config-dir', config_dir]
    CONF(args, project='nova')


def main(config_files=(), config_dir=None, out=None):
    try:
        load_config(config_files, config_dir)
    except cfg.Error as e:
        (out or sys.stdout).write('FAILURE  configuration: %s\n' % e)
        return FAILURE
    return report(run_checks(), out)
