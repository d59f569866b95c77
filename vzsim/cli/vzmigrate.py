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

"""Simulated ``vzmigrate``: move a container to another simulated host.

Follows ``bin/vzmigrate`` of vzctl 4.x (reference 5.4): the same options,
checks, messages, exit codes and order of steps.  Where the real script
reaches the destination with ssh, this one works on another simulated host
tree named in ``DIR/sim/hosts.json``, a JSON object mapping destination
host names (as given on the command line) to host roots::

  {"node2": "/var/lib/nova-openvz/node2", "10.0.0.2": "../node2"}

Relative roots are taken from ``DIR``.  A destination that is not listed,
or whose root is not a simulated host, cannot be reached (exit 4, as when
ssh fails).  Containers are stopped, started, checkpointed and restored by
running each host's own ``usr/sbin/vzctl``, as the real script runs vzctl
locally and through ssh; the private area is copied the way rsync does it
(sparse files stay sparse).

Simulation limits: no CPT version, CPU or ipv6 module checks (the modelled
kernels are alike), and no vzquota (simfs quota steps are skipped).
"""

import errno
import json
import os
import shutil
import subprocess
import sys

from vzsim import conffile
from vzsim import hostfs
from vzsim.kernel import backends
from vzsim.kernel import base

# Exit codes of bin/vzmigrate.
E_USAGE = 1
E_STOPPED = 2
E_CANT_CONNECT = 4
E_COPY = 6
E_START = 7
E_STOP_SOURCE = 8
E_EXISTS = 9
E_NOEXIST = 10
E_IP_IN_USE = 12
E_OVZ_NOT_RUNNING = 14
E_APPLY_CONFIG = 15
E_UNSUP_PLOOP = 16
E_REMOTE_CONFIG = 19
E_LOCKED = 20

ACTION_SCRIPTS = ('start', 'stop', 'mount', 'umount', 'premount',
                  'postumount')
HOSTS_FILE = 'hosts.json'

USAGE = '''\
This program is used for container migration to another node.
Usage:
  vzmigrate [option ...] destination_address <CTID>
Options:
-r, --remove-area yes|no
\tWhether to remove container on source host after successful migration.
--ssh=<ssh options>
\tAdditional options that will be passed to ssh while establishing
\tconnection to destination host. Please be careful with options
\tpassed, DO NOT pass destination hostname.
--rsync=<rsync options>
\tAdditional options that will be passed to rsync.
--keep-dst
\tDo not clean synced destination container private area in case of some
\terror.
-c, --compact
\tCompact a container image before migration. Works for ploop only.
-s, --snapshot
\tCreate a container snapshot before migration. Works for ploop only.
--live
\tPerform live migration: instead of restarting a container, checkpoint
\tand restore are used, so there is no container downtime or service
\tinterruption.
--check-only, --dry-run
\tDo not perform actual migration, stop after preliminary checks.
-f, --nodeps[=<check>[,<check> ...]]
\tContinue migration, ignoring some or all preliminary check failures.
\tChecks: cpu, ipv6.
-v
\tVerbose mode. Multiple -v options increase the verbosity.
-t, --times
\tAt the end of live migration, output various timings.

Examples:
\tOnline migration of CT #101 to foo.com:
\t\tvzmigrate --live foo.com 101
\tMigration of CT #102 to foo.com with downtime:
\t\tvzmigrate foo.com 102
Notes:
\tThis program uses ssh as a transport layer. You need to put ssh
\tpublic key to destination node and be able to connect without
\tentering a password.
'''


class Failed(Exception):
    """A step failed: ``message`` (error lines) and the exit ``code``."""

    def __init__(self, code, *lines):
        super().__init__(code)
        self.code = code
        self.lines = lines


class Options:
    def __init__(self):
        self.live = False
        self.verbose = 0
        self.remove_area = True
        self.keep_dst = False
        self.compact = False
        self.snapshot = False
        self.check_only = False


def _bad_usage(message):
    # The real script prints this on stdout (cat ... 2>&1).
    sys.stdout.write('Invalid usage: %s\n\nFor command line syntax, please '
                     'check\n  vzmigrate --help\n  man vzmigrate\n' % message)
    return E_USAGE


def _parse(argv):
    """``(Options, [host, ctid])`` or an exit code, as the script's loop."""
    options = Options()
    args = list(argv)
    if not args:
        sys.stdout.write(USAGE)
        return 0
    while args:
        arg = args[0]
        if arg in ('--live', '--online'):
            options.live = True
        elif arg in ('-v', '-vv', '-vvv', '-vvvv'):
            options.verbose += len(arg) - 1
        elif arg in ('-r', '--remove-area'):
            args.pop(0)
            value = args[0] if args else ''
            if value not in ('yes', 'no'):
                return _bad_usage('Bad argument for %s: %s' % (arg, value))
            options.remove_area = value == 'yes'
        elif arg == '--keep-dst':
            options.keep_dst = True
        elif arg in ('-c', '--compact'):
            options.compact = True
        elif arg in ('-s', '--snapshot'):
            options.snapshot = True
        elif arg in ('--check-only', '--dry-run'):
            options.check_only = True
        elif arg in ('-f', '--nodeps', '--times', '-t', '--ssh-mux'):
            pass   # checks the simulator does not make; timings
        elif arg.startswith(('-f=', '--nodeps=')):
            name, _, checks = arg.partition('=')
            for check in checks.split(','):
                if check not in ('cpu', 'cpu_check', 'ipv6', 'all'):
                    return _bad_usage('unknown %s argument: %s'
                                      % (name, check))
        elif arg.startswith(('--ssh=', '--rsync=')):
            pass   # transport options: no ssh or rsync here
        elif arg in ('-h', '--help', '--usage', '-?'):
            sys.stdout.write(USAGE)
            return 0
        else:
            break
        args.pop(0)
    if len(args) < 2:
        return _bad_usage('not enough parameters')
    if len(args) > 2:
        return _bad_usage('too many parameters')
    return options, args


# -- copying, as rsync -aHAX --sparse --------------------------------------

_CHUNK = 1 << 20


def _copy_sparse(source, destination):
    """Copy a file keeping its holes (ploop images are mostly holes)."""
    with open(source, 'rb') as fin, open(destination, 'wb') as fout:
        size = os.fstat(fin.fileno()).st_size
        for start, end in _data_ranges(fin.fileno(), size):
            position = start
            while position < end:
                chunk = os.pread(fin.fileno(), min(_CHUNK, end - position),
                                 position)
                if not chunk:
                    break
                if chunk.count(0) != len(chunk):
                    os.pwrite(fout.fileno(), chunk, position)
                position += len(chunk)
        fout.truncate(size)
    shutil.copystat(source, destination)


def _data_ranges(fd, size):
    """``(start, end)`` of the data regions of a file.

    All of it when the filesystem cannot tell holes from data.
    """
    position = 0
    while position < size:
        try:
            start = os.lseek(fd, position, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno != errno.ENXIO:    # ENXIO: only a hole is left
                yield position, size
            return
        yield start, end
        position = end


def _sync_tree(source, destination):
    """Make ``destination`` a copy of the tree ``source``."""
    if os.path.lexists(destination):
        shutil.rmtree(destination)
    shutil.copytree(source, destination, symlinks=True,
                    copy_function=_copy_sparse)


# -- one side of the migration ---------------------------------------------

class Node:
    """A simulated host seen by vzmigrate: paths, state and its vzctl."""

    def __init__(self, root, verbose):
        self.host = hostfs.Host(root)
        self.verbose = verbose
        self.vzctl_path = self.host.path('usr/sbin/vzctl')

    def vzctl(self, *args, show=False):
        """Run this host's vzctl; its output shows when verbose (or show).

        Returns the exit code.
        """
        proc = subprocess.run([self.vzctl_path] + [str(a) for a in args],
                              capture_output=True, text=True, check=False)
        if show or self.verbose:
            sys.stdout.write(proc.stdout)
            sys.stderr.write(proc.stderr)
            sys.stdout.flush()
        return proc.returncode

    def expanded(self, key, ctid):
        value = self.host.vz_conf.get(key)
        return conffile.expand_veid(value, ctid) if value else None

    def running_ips(self):
        kernel = backends.for_host(self.host)
        return {ip.partition('/')[0] for ctid in self.host.running_ctids()
                for ip in kernel.ips(ctid)}


def _destinations(host):
    path = os.path.join(host.sim_dir, HOSTS_FILE)
    try:
        with open(path, encoding='utf-8') as f:
            table = json.load(f)
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def _connect(source, name, verbose):
    """The destination :class:`Node`, as a successful ``ssh root@name``."""
    root = _destinations(source.host).get(name)
    if isinstance(root, str):
        root = os.path.join(source.host.root, root)
        if os.access(os.path.join(root, 'usr/sbin/vzctl'), os.X_OK):
            return Node(root, verbose)
    raise Failed(E_CANT_CONNECT,
                 "Can't connect to destination address using public key",
                 'Please put your public key to destination node')


class Migration:
    """One run of vzmigrate; :meth:`run` returns the exit code."""

    def __init__(self, source, options, dest_name, ctid):
        self.source = source
        self.options = options
        self.dest_name = dest_name
        self.ctid = ctid
        self.dest = None
        self.undo = []      # rollback steps, most recent last

    def say(self, message):
        sys.stdout.write(message + '\n')
        sys.stdout.flush()

    def debug(self, message):
        if self.options.verbose:
            self.say('   ' + message)

    def run(self):
        source, ctid = self.source.host, self.ctid
        kernel = backends.for_host(source)
        if not source.exists(ctid):
            raise Failed(E_NOEXIST, "CT #%d doesn't exist" % ctid)
        running = kernel.is_running(ctid)
        mounted = kernel.is_mounted(ctid)
        suspended = (not running and
                     os.path.exists(source.dump_file(ctid)))
        if self.options.live and not running:
            raise Failed(E_STOPPED, "Can't perform live migration of a "
                                    "stopped container")
        self.say('%s %s of CT %d to %s' % (
            'Checking' if self.options.check_only else 'Starting',
            'live migration' if self.options.live else 'migration',
            ctid, self.dest_name))
        self.dest = dest = _connect(self.source, self.dest_name,
                                    self.options.verbose)
        self._check_destination(dest)
        private = source.ve_private(ctid)
        root = source.ve_root(ctid)
        remote_private = dest.expanded('VE_PRIVATE', ctid)
        remote_root = dest.expanded('VE_ROOT', ctid)
        if not remote_private or not remote_root:
            raise Failed(E_REMOTE_CONFIG,
                         'Failed to get remote VE_ROOT/VE_PRIVATE')
        if private != remote_private:
            self.say('Remote VE_PRIVATE path differs from local %d.conf'
                     % ctid)
            self.say('Using %s for syncing' % remote_private)
        if root != remote_root:
            self.say('Remote VE_ROOT path differs from local %d.conf' % ctid)
            self.say('Using %s for syncing' % remote_root)
        ploop = os.path.isfile(os.path.join(private, 'root.hdd',
                                            'DiskDescriptor.xml'))
        if ploop and not os.access(dest.host.path('usr/sbin/ploop'),
                                   os.X_OK):
            raise Failed(E_UNSUP_PLOOP, 'Destination node does not support '
                                        "ploop, can't migrate")
        self._check_ips(dest)
        if self.options.check_only:
            return 0

        self.say('Preparing remote node')
        self._copy_config(dest, remote_private, remote_root)
        if suspended:
            self.debug('Copying dump file')
            self._copy_file(source.dump_file(ctid), dest.host.dump_file(ctid))
        self.debug('Creating remote container root dir')
        os.makedirs(remote_root, exist_ok=True)
        self.undo.append(lambda: shutil.rmtree(remote_root, True))
        self.debug('Creating remote container private dir')
        if not self.options.keep_dst:
            self.undo.append(lambda: shutil.rmtree(remote_private, True))
        if ploop and self.options.compact:
            self.say('Compacting container image')
            if self.source.vzctl('--skiplock', 'compact', ctid):
                self.say("Error: Failed to compact container image")
        if ploop and self.options.snapshot:
            self.say('Creating a container snapshot')
            if self.source.vzctl('--skiplock', 'snapshot', ctid):
                self.say('Error: Failed to snapshot a container')
        self.say('Syncing private')
        if self.options.live:
            self._live(private, remote_private, ploop)
        else:
            self._offline(private, remote_private, ploop, running, mounted)
        self._finish()
        return 0

    # -- checks ----------------------------------------------------------

    def _check_destination(self, dest):
        if not os.path.isdir(dest.host.path('proc/vz')):
            raise Failed(E_OVZ_NOT_RUNNING,
                         'OpenVZ is not running on the target machine',
                         "Can't continue migration")
        if dest.host.exists(self.ctid):
            raise Failed(E_EXISTS, 'CT #%d already exists on destination '
                                   'node' % self.ctid)

    def _check_ips(self, dest):
        config = self.source.host.read_config(self.ctid)
        ips = {ip.partition('/')[0]
               for ip in (config.get('IP_ADDRESS') or '').split()}
        if ips:
            self.debug('Checking IPs on destination node: %s'
                       % ' '.join(sorted(ips)))
            if ips & dest.running_ips():
                raise Failed(E_IP_IN_USE, 'IP address(es) already in use on '
                                          'destination node')

    # -- preparing the destination ---------------------------------------

    def _copy_file(self, source, destination):
        """scp of one file; a failure exits 6 (copy failed)."""
        try:
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            shutil.copy2(source, destination)
        except OSError as exc:
            raise Failed(E_COPY, 'Failed to copy %s: %s' % (source, exc))
        self.undo.append(lambda: _remove(destination))

    def _copy_config(self, dest, remote_private, remote_root):
        ctid = self.ctid
        self.debug('Copying config file')
        self._copy_file(self.source.host.conf_path(ctid),
                        dest.host.conf_path(ctid))
        # Failing it as one to apply the config (exit 15): a copy left
        # with the source's paths would run from the source's area here,
        # where the hosts' trees differ.
        if dest.vzctl('set', ctid, '--private', remote_private, '--root',
                      remote_root, '--save'):
            raise Failed(E_APPLY_CONFIG, 'Failed to apply config on '
                                         'destination node')
        code = dest.vzctl('set', ctid, '--applyconfig_map', 'name', '--save')
        self.undo.append(lambda: dest.host.remove_name_links(ctid))
        # vzctl versions without --applyconfig_map answer 20 or 21.
        if code not in (0, 20, 21):
            raise Failed(E_APPLY_CONFIG, 'Failed to apply config on '
                                         'destination node')
        scripts = [self.source.host.conf_path(ctid, suffix)
                   for suffix in ACTION_SCRIPTS]
        scripts = [path for path in scripts if os.path.isfile(path)]
        if scripts:
            self.debug('Copying action scripts')
        for path in scripts:
            self._copy_file(path, os.path.join(dest.host.conf_dir,
                                               os.path.basename(path)))

    def _sync(self, private, remote_private):
        try:
            _sync_tree(private, remote_private)
        except (OSError, shutil.Error) as exc:
            raise Failed(E_COPY, 'Failed to sync container private areas: '
                                 '%s' % exc)

    # -- moving the container --------------------------------------------

    def _source_step(self, code, message, *args):
        if self.source.vzctl('--skiplock', *args):
            raise Failed(code, message)

    def _offline(self, private, remote_private, ploop, running, mounted):
        ctid = self.ctid
        if running:
            if ploop:
                self.say('Copying top ploop delta with CT stop')
                self._source_step(E_COPY, 'Failed to copy top ploop delta',
                                  'stop', ctid, '--skip-umount')
                self.undo.append(lambda: self.source.vzctl(
                    '--skiplock', 'start', ctid))
                self.say('Unmounting container')
                self._source_step(E_STOP_SOURCE, 'Failed to umount container',
                                  'umount', ctid)
            else:
                self.say('Stopping container')
                self._source_step(E_STOP_SOURCE, 'Failed to stop container',
                                  'stop', ctid)
                self.undo.append(lambda: self.source.vzctl(
                    '--skiplock', 'start', ctid))
        elif mounted:
            self.say('Unmounting container')
            self._source_step(E_STOP_SOURCE, 'Failed to umount container',
                              'umount', ctid)
            self.undo.append(lambda: self.source.vzctl(
                '--skiplock', 'mount', ctid))
        self._sync(private, remote_private)
        if running:
            self.say('Starting container')
            if self.dest.vzctl('start', ctid):
                raise Failed(E_START, 'Failed to start container')
        elif mounted:
            self.say('Mounting container')
            if self.dest.vzctl('mount', ctid):
                raise Failed(E_START, 'Failed to mount container')
        self.say('Cleaning up')

    def _live(self, private, remote_private, ploop):
        ctid = self.ctid
        self.say('Live migrating container...')
        self.debug('Suspending container')
        self._source_step(E_STOP_SOURCE, 'Failed to suspend container',
                          'chkpnt', ctid, '--suspend')
        self.undo.append(lambda: self.source.vzctl(
            '--skiplock', 'chkpnt', ctid, '--resume'))
        self._sync(private, remote_private)
        dumpfile = self.source.host.path('var/tmp/dump.%d' % ctid)
        remote_dumpfile = self.dest.host.path('var/tmp/dump.%d' % ctid)
        os.makedirs(os.path.dirname(dumpfile), exist_ok=True)
        self.debug('Dumping container')
        self._source_step(E_STOP_SOURCE, 'Failed to dump container',
                          'chkpnt', ctid, '--dump', '--dumpfile', dumpfile)
        self.undo.append(lambda: _remove(dumpfile))
        self._release_veth(dumpfile)
        self.debug('Copying dumpfile')
        self._copy_file(dumpfile, remote_dumpfile)
        self.debug('Undumping container')
        if self.dest.vzctl('restore', ctid, '--undump', '--dumpfile',
                           remote_dumpfile, '--skip_arpdetect'):
            raise Failed(E_START, 'Failed to undump container')
        self.debug('Resuming container')
        if self.dest.vzctl('restore', ctid, '--resume'):
            self.dest.vzctl('restore', ctid, '--kill')
            # The undump mounted it: unmounted, its root dir can go.
            self.dest.vzctl('umount', ctid)
            raise Failed(E_START, 'Failed to resume container')
        self.say('Cleaning up')
        self.debug('Killing container')
        self.source.vzctl('--skiplock', 'chkpnt', ctid, '--kill')
        self.source.vzctl('--skiplock', 'umount', ctid)
        self.debug('Removing dumpfiles')
        _remove(dumpfile)
        _remove(remote_dumpfile)

    def _release_veth(self, dumpfile):
        """The frozen source gives up its veth host ends to the peer.

        Not in real vzmigrate: two simulated hosts on one machine share its
        network stack, so the peer's host ends, named as the source's,
        could not be made while the source holds them (real hosts each
        have their own).  On failure they are made again, without the
        addresses the guest had set on its side.
        """
        ctid = self.ctid
        kernel = backends.for_host(self.source.host)
        names = base.read_dump(ctid, dumpfile).get('veth') or []
        if not names:
            return
        devices = [d for d in conffile.netif_devices(
            self.source.host.read_config(ctid).get('NETIF'))
            if d.get('host_ifname') in names]
        self.debug('Releasing veth devices %s' % ' '.join(names))
        kernel.del_veth(ctid, names)
        self.undo.append(lambda: kernel.add_veth(ctid, devices))

    def _finish(self):
        ctid = self.ctid
        self.undo = []
        if self.options.remove_area:
            self.debug('Destroying container')
            self.source.vzctl('--skiplock', 'destroy', ctid)
        else:
            # Keep the area; the config moves aside for a way back.
            conf = self.source.host.conf_path(ctid)
            os.replace(conf, conf + '.migrated')

    def rollback(self):
        """Undo what was done on both hosts, most recent step first."""
        while self.undo:
            try:
                self.undo.pop()()
            except OSError:
                pass


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _migrate(host, argv):
    parsed = _parse(argv)
    if not isinstance(parsed, tuple):
        return parsed
    options, (dest_name, target) = parsed
    source = Node(host.root, options.verbose)
    ctid = hostfs.parse_ctid(target) if target.isdigit() else (
        host.ctid_by_name(target))
    if ctid is None:
        # The script asks vzlist, which prints this.
        sys.stderr.write('CT ID %s is invalid.\n' % target)
        return E_NOEXIST
    if not os.access(host.vz_conf_path, os.R_OK):
        return _error(E_NOEXIST, "Can't read global config file %s"
                      % host.vz_conf_path)
    try:
        lock = hostfs.CTLock(host, ctid, 'migrating')
        lock.acquire()
    except hostfs.ToolError as exc:
        return _error(E_LOCKED, 'CT %d already locked' % ctid,
                      *exc.message.splitlines())
    sys.stdout.write('Locked CT %d\n' % ctid)
    migration = Migration(source, options, dest_name, ctid)
    try:
        return migration.run()
    except Failed as exc:
        migration.rollback()
        return _error(exc.code, *exc.lines)
    finally:
        lock.release()


def _error(code, *lines):
    sys.stdout.flush()
    sys.stderr.write(''.join('Error: %s\n' % line for line in lines))
    return code


def main(root, argv):
    """Run ``vzmigrate argv`` from the simulated host in ``root``."""
    host = hostfs.Host(root)
    target = next((arg for arg in reversed(argv)
                   if not arg.startswith('-')), None)
    ctid = host.resolve(target) if target else None
    return hostfs.run_tool(host, 'vzmigrate', argv, _migrate,
                           ctid=ctid if ctid is not None else target)
