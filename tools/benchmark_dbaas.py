#!/usr/bin/env python3
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

"""PostgreSQL in a container against the same on the host, side by side.

Run from the source tree, as root, on a machine where the simulated host
runs its real kernel backend, with PostgreSQL installed on the host
(bindep profile ``dbaas``)::

    python tools/benchmark_dbaas.py                    # all three parts
    python tools/benchmark_dbaas.py --seconds 10 --sizes 50 200
    python tools/benchmark_dbaas.py --json

It lays out a simulated OpenVZ host (``vzsim``, real kernel backend) in a
temporary directory and, in one run, prints one table of three parts:

1. **Throughput and fsync latency**: pgbench's TPC-B-like load (``--scale``,
   ``--clients``, ``--seconds``) and ``pg_test_fsync``'s one-8kB-write
   ``fdatasync`` test, on the host and inside a container from the
   PostgreSQL template (:mod:`nova_openvz.testing.dbaas`), each on ext4 in
   a loop-mounted image file on the same file system (the container's
   ploop root is one); the same PostgreSQL, the same settings, host and
   container runs alternating (``--repeats``, medians), and their ratio.
2. **Memory limit**: the same pgbench in the container with a generous
   limit (its peak is the working set), then with ``vzctl set --ram`` just
   above and just below it, and far below (under ``shared_buffers``): TPS,
   the ``physpages`` held/limit/failcnt an operator reads in the server's
   diagnostics (``ubc_physpages_failcnt``...), and what PostgreSQL's log
   says about processes the kernel killed (OOM).
3. **Spawn time against template size**: templates of ``--sizes`` MB (the
   busybox guest padded with incompressible data), each timed in the steps
   of a first boot on a host -- download (the stream to the host's disk
   with the hash check, as the driver's download does), unpack (``vzctl
   create``) and first start -- and a second boot from the same image,
   which the driver's template cache spares the download.

What the simulation measures: containers are real processes in
namespaces and cgroups on this machine's kernel, not an OpenVZ kernel, and
the download is a local file copy, not Glance over a network.  Compare
ratios, not absolute numbers; the machine may be shared.
"""

import argparse
import glob
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

CTID = 201
PORT = 5499
MiB = 1024 * 1024
PAGE = 4096


def parse_options(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--scale', type=int, default=10,
                        help='pgbench scale factor (default %(default)s)')
    parser.add_argument('--clients', type=int, default=2)
    parser.add_argument('--seconds', type=int, default=20,
                        help='each pgbench run (default %(default)s)')
    parser.add_argument('--repeats', type=int, default=2,
                        help='host/container pairs in part 1')
    parser.add_argument('--sizes', type=int, nargs='*',
                        default=[50, 200, 800],
                        help='template sizes in MB for part 3')
    parser.add_argument('--parts', type=int, nargs='*', default=[1, 2, 3])
    parser.add_argument('--dir', default='/var/tmp',
                        help='where the host and images go (a disk, not '
                             'tmpfs; default %(default)s)')
    parser.add_argument('--json', action='store_true')
    return parser.parse_args(argv)


def _progress(message):
    sys.stderr.write('[%s] %s\n' % (time.strftime('%H:%M:%S'), message))


def run(argv, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if proc.returncode:
        raise RuntimeError('%s: exit %d: %s%s' % (
            ' '.join(argv)[:200], proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


def pg_bin():
    return sorted(glob.glob('/usr/lib/postgresql/*/bin'))[-1]


# PostgreSQL, the same commands on the host and in the container ------------

def _quoted(text):
    """``text`` to go inside the single quotes of ``su -c '...'``."""
    return text.replace("'", "'\"'\"'")


def postgres_script(directory, bindir, action, scale=1, clients=1,
                    seconds=1):
    """A shell command that does ``action`` with a cluster in ``directory``.

    The cluster listens on a Unix socket in ``directory`` only; its
    settings are initdb's defaults (``shared_buffers`` 128 MB), the same
    on both sides.
    """
    data = directory + '/data'
    as_pg = "su postgres -s /bin/sh -c '%s'"
    commands = {
        'init': ('mkdir -p {d} && chown postgres {d} && ' + as_pg % (
            '{b}/initdb -A trust -D {data} >/dev/null && '
            '{b}/pg_ctl -D {data} -l {d}/log -w '
            '-o "-k {d} -p {port} -c listen_addresses=" start >/dev/null && '
            '{b}/pgbench -h {d} -p {port} -i -q -s {scale} postgres '
            '2>/dev/null')),
        'pgbench': as_pg % ('{b}/pgbench -h {d} -p {port} -n -c {clients} '
                            '-j 1 -T {seconds} postgres'),
        # Fill shared_buffers with the accounts table: memory the kernel
        # cannot reclaim without swap, the database's real working set.
        'prewarm': as_pg % ('{b}/psql -h {d} -p {port} -Atq -d postgres -c '
                            '"CREATE EXTENSION IF NOT EXISTS pg_prewarm" -c '
                            '"SELECT pg_prewarm(%s)"' % _quoted(
                                "'pgbench_accounts'")),
        'fsync': as_pg % '{b}/pg_test_fsync -s 2 -f {d}/fsync.test',
        'restart': as_pg % ('{b}/pg_ctl -D {data} -l {d}/log -w -m fast '
                            '-o "-k {d} -p {port} -c listen_addresses=" '
                            'restart >/dev/null'),
        'stop': as_pg % '{b}/pg_ctl -D {data} -w -m fast stop >/dev/null',
        'log': 'cat {d}/log',
    }
    return commands[action].format(d=directory, data=data, b=bindir,
                                   port=PORT, scale=scale, clients=clients,
                                   seconds=seconds)


def tps(output):
    for line in output.splitlines():
        if line.startswith('tps = '):
            return float(line.split()[2])
    raise RuntimeError('no tps in pgbench output: %s' % output)


def failed(output):
    for line in output.splitlines():
        if line.startswith('number of failed transactions:'):
            return int(line.split(':')[1].split()[0])
    return None


def fdatasync_usecs(output):
    """usecs/op of the first fdatasync test (one 8kB write)."""
    for line in output.splitlines():
        if line.strip().startswith('fdatasync'):
            return float(line.split()[-2])
    raise RuntimeError('no fdatasync in pg_test_fsync output: %s' % output)


# The two sides ----------------------------------------------------------

class HostSide(object):
    """PostgreSQL on this machine, on ext4 in a loop-mounted image file."""

    name = 'host'

    def __init__(self, workdir, size_mb):
        self.image = os.path.join(workdir, 'host-disk.img')
        self.mnt = os.path.join(workdir, 'host-disk')
        with open(self.image, 'wb') as f:
            f.truncate(size_mb * MiB)
        run(['mkfs.ext4', '-q', '-F', self.image])
        os.makedirs(self.mnt)
        self.loop = run(['losetup', '--find', '--show',
                         self.image]).strip()
        run(['mount', self.loop, self.mnt])
        self.directory = self.mnt + '/pg'

    def sh(self, command, check=True):
        proc = subprocess.run(['sh', '-c', command], capture_output=True,
                              text=True)
        if check and proc.returncode:
            raise RuntimeError('host: %s: %s%s' % (command, proc.stdout,
                                                   proc.stderr))
        return proc.stdout

    def close(self):
        subprocess.run(['umount', self.mnt], capture_output=True)
        subprocess.run(['losetup', '--detach', self.loop],
                       capture_output=True)


class ContainerSide(object):
    """PostgreSQL inside a container of the simulated host."""

    name = 'container'

    def __init__(self, host, ctid, template, size_mb, ram_mb):
        self.host, self.ctid = host, ctid
        host.vzctl('create', ctid, '--ostemplate', template, '--layout',
                   'ploop', '--diskspace', '%dM' % size_mb)
        host.vzctl('set', ctid, '--save', '--ram', '%dM' % ram_mb,
                   '--swap', '0', '--cpus', str(os.cpu_count()))
        host.vzctl('start', ctid, '--wait')
        self.directory = '/srv/pg'

    def sh(self, command, check=True):
        code, out, err = self.host.exec2(self.ctid, command)
        if check and code:
            raise RuntimeError('CT %d: %s: %s%s' % (self.ctid, command, out,
                                                    err))
        return out

    def ubc(self):
        from nova_openvz import diagnostics
        records = json.loads(self.host.tool('vzlist', '-j', self.ctid))
        return diagnostics.beancounters(records[0])['physpages']

    def close(self):
        self.host.tool('vzctl', 'stop', self.ctid, '--fast', check=False)
        self.host.tool('vzctl', 'destroy', self.ctid, check=False)


class SimulatedHost(object):

    def __init__(self, root):
        from vzsim import hostinit
        self.root = root
        self.paths = hostinit.init_host(root, kernel='real')
        self.tools = self.paths['tools_dir']
        self.cache = self.paths['template_cache']

    def tool(self, name, *args, check=True):
        proc = subprocess.run([os.path.join(self.tools, name)] +
                              [str(a) for a in args], capture_output=True,
                              text=True)
        if check and proc.returncode:
            raise RuntimeError('%s %s: exit %d: %s%s' % (
                name, args[0], proc.returncode, proc.stdout, proc.stderr))
        return proc.stdout

    def vzctl(self, *args):
        return self.tool('vzctl', *args)

    def exec2(self, ctid, command):
        proc = subprocess.run([os.path.join(self.tools, 'vzctl'), 'exec2',
                               str(ctid), command], capture_output=True,
                              text=True)
        return proc.returncode, proc.stdout, proc.stderr

    def clean(self):
        subprocess.run([sys.executable, '-m', 'nova_openvz.testing.cleanhost',
                        self.root], capture_output=True)


# 1. Throughput and fsync ----------------------------------------------------

def compare_io(options, host_side, ct_side, bindir):
    results = {}
    for side in (host_side, ct_side):
        _progress('%s: initdb and pgbench -i -s %d'
                  % (side.name, options.scale))
        side.sh(postgres_script(side.directory, bindir, 'init',
                                scale=options.scale))
    for _ in range(options.repeats):
        for side in (host_side, ct_side):
            _progress('%s: pgbench %d s, pg_test_fsync' % (side.name,
                                                           options.seconds))
            out = side.sh(postgres_script(
                side.directory, bindir, 'pgbench', clients=options.clients,
                seconds=options.seconds))
            fsync = side.sh(postgres_script(side.directory, bindir, 'fsync'))
            entry = results.setdefault(side.name, {'tps': [], 'fsync': []})
            entry['tps'].append(tps(out))
            entry['fsync'].append(fdatasync_usecs(fsync))
    host_side.sh(postgres_script(host_side.directory, bindir, 'stop'))
    summary = {name: {'tps': statistics.median(v['tps']),
                      'fsync_usecs': statistics.median(v['fsync']),
                      'runs': v}
               for name, v in results.items()}
    summary['ratio'] = {
        'tps': summary['container']['tps'] / summary['host']['tps'],
        # Latency: host / container, so 1.0 is "as fast" here too.
        'fsync': summary['host']['fsync_usecs'] /
        summary['container']['fsync_usecs']}
    return summary


# 2. Memory limit --------------------------------------------------------

def memory_limits(options, host, ct_side, bindir):
    """pgbench at limits around the working set, as diagnostics show it."""
    rows = []

    def one(label, ram_mb):
        if ram_mb:
            try:
                host.vzctl('set', ct_side.ctid, '--save', '--ram',
                           '%dM' % ram_mb, '--swap', '0')
            except RuntimeError as exc:
                # cgroup v1 refuses a limit under what cannot be reclaimed.
                rows.append({'limit': label, 'ram_mb': ram_mb,
                             'refused': str(exc).splitlines()[0]})
                return None
        ct_side.sh(postgres_script(ct_side.directory, bindir, 'restart'),
                   check=False)
        ct_side.sh(postgres_script(ct_side.directory, bindir, 'prewarm'),
                   check=False)
        before = ct_side.ubc()
        log_before = len(ct_side.sh(postgres_script(ct_side.directory,
                                                    bindir, 'log')))
        out = ct_side.sh(postgres_script(
            ct_side.directory, bindir, 'pgbench', clients=options.clients,
            seconds=options.seconds), check=False)
        after = ct_side.ubc()
        log = ct_side.sh(postgres_script(ct_side.directory, bindir, 'log'),
                         check=False)[log_before:]
        try:
            rate = tps(out)
        except RuntimeError:
            rate = 0.0
        rows.append({
            'limit': label, 'ram_mb': ram_mb or None, 'tps': rate,
            'failed_transactions': failed(out),
            'aborted': 'aborted' in out,
            'physpages_held_mb': after['held'] * PAGE // MiB,
            'physpages_maxheld_mb': after['maxheld'] * PAGE // MiB,
            # Cumulative, as diagnostics show it (ubc_physpages_failcnt).
            'physpages_failcnt': after['failcnt'],
            'failcnt_during_run': after['failcnt'] - before['failcnt'],
            'oom_killed': log.count('terminated by signal 9')})
        return after

    peak = one('generous (2 GB)', 0)['maxheld'] * PAGE // MiB
    _progress('working set: %d MB' % peak)
    one('just above (+20%)', int(peak * 1.2))
    one('just below (-20%)', int(peak * 0.8))
    one('below shared_buffers', 96)
    host.vzctl('set', ct_side.ctid, '--save', '--ram', '2048M')
    return {'working_set_mb': peak, 'runs': rows}


# 3. Spawn time against template size ------------------------------------

def padded_template(path, size_mb):
    """The busybox guest plus ``size_mb`` MB of incompressible data."""
    from vzsim import templates
    base = os.path.join(os.path.dirname(path), 'base.tar.gz')
    with open(base, 'wb') as f:
        f.write(templates.busybox_template_bytes())
    staging = tempfile.mkdtemp(dir=os.path.dirname(path))
    try:
        run(['tar', '-xzf', base, '-C', staging])
        with open(os.path.join(staging, 'var', 'padding'), 'wb') as f:
            for _ in range(size_mb):
                f.write(os.urandom(MiB))
        run(['tar', '--numeric-owner', '-cf', path[:-3], '-C', staging,
             '.'])
        run(['gzip', '-1', '-f', path[:-3]])
    finally:
        shutil.rmtree(staging)
        os.unlink(base)
    return path


def download(source, target):
    """What the driver's download costs: stream to disk, check the hash."""
    digest = hashlib.sha512()
    with open(source, 'rb') as src, open(target + '.part', 'wb') as dst:
        for chunk in iter(lambda: src.read(MiB), b''):
            digest.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(target + '.part', target)
    return digest.hexdigest()


def spawn_times(options, host, workdir):
    rows = []
    for index, size in enumerate(options.sizes):
        _progress('template of %d MB' % size)
        name = 'padded-%d' % size
        source = padded_template(os.path.join(workdir, name + '.tar.gz'),
                                 size)
        row = {'size_mb': size,
               'tarball_mb': os.path.getsize(source) // MiB}
        disk = '%dM' % (2 * size + 512)
        for boot, ctid in (('first', 300 + 2 * index),
                           ('repeat', 301 + 2 * index)):
            cached = os.path.join(host.cache, name + '.tar.gz')
            started = time.monotonic()
            if not os.path.exists(cached):
                download(source, cached)
            downloaded = time.monotonic()
            host.vzctl('create', ctid, '--ostemplate', name, '--layout',
                       'ploop', '--diskspace', disk)
            created = time.monotonic()
            host.vzctl('start', ctid, '--wait')
            started_ct = time.monotonic()
            row[boot] = {'download': downloaded - started,
                         'unpack': created - downloaded,
                         'start': started_ct - created,
                         'total': started_ct - started}
            host.tool('vzctl', 'stop', ctid, '--fast', check=False)
            host.tool('vzctl', 'destroy', ctid, check=False)
        os.unlink(source)
        os.unlink(os.path.join(host.cache, name + '.tar.gz'))
        rows.append(row)
    return rows


# Output -----------------------------------------------------------------

def print_table(results, out=sys.stdout):
    out.write('nova-openvz DBaaS benchmark (PostgreSQL %s, pgbench scale '
              '%d, %d clients, %d s runs)\n\n' % (
                  results['postgresql'], results['scale'],
                  results['clients'], results['seconds']))
    io = results.get('io')
    if io:
        out.write('1. Throughput and fsync, same kind of disk '
                  '(ext4 on a loop-mounted image)\n')
        out.write('   %-22s %12s %12s %8s\n'
                  % ('', 'host', 'container', 'ratio'))
        out.write('   %-22s %12.0f %12.0f %8.2f\n' % (
            'pgbench TPS', io['host']['tps'], io['container']['tps'],
            io['ratio']['tps']))
        out.write('   %-22s %12.0f %12.0f %8.2f\n\n' % (
            'fdatasync usecs/op', io['host']['fsync_usecs'],
            io['container']['fsync_usecs'], io['ratio']['fsync']))
    memory = results.get('memory')
    if memory:
        out.write('2. Memory limit (working set: %d MB peak with a '
                  'generous limit)\n' % memory['working_set_mb'])
        out.write('   %-22s %7s %7s %9s %9s %8s %4s\n' % (
            'limit', 'RAM MB', 'TPS', 'held MB', 'failcnt', 'failed',
            'OOM'))
        for row in memory['runs']:
            if 'refused' in row:
                out.write('   %-22s %7s  refused: %s\n' % (
                    row['limit'], row['ram_mb'], row['refused'][-60:]))
                continue
            out.write('   %-22s %7s %7.0f %9d %9d %8s %4d\n' % (
                row['limit'], row['ram_mb'] or '2048', row['tps'],
                row['physpages_held_mb'], row['physpages_failcnt'],
                'aborted' if row['aborted'] else row['failed_transactions'],
                row['oom_killed']))
        out.write('\n')
    spawn = results.get('spawn')
    if spawn:
        out.write('3. Spawn time (s) against template size\n')
        out.write('   %-8s %8s | %9s %7s %6s %6s | %6s %7s %6s\n' % (
            'template', 'tarball', 'download', 'unpack', 'start', 'total',
            'again', 'unpack', 'start'))
        for row in spawn:
            first, again = row['first'], row['repeat']
            out.write('   %5d MB %5d MB | %9.1f %7.1f %6.1f %6.1f | %6.1f '
                      '%7.1f %6.1f\n' % (
                          row['size_mb'], row['tarball_mb'],
                          first['download'], first['unpack'],
                          first['start'], first['total'], again['total'],
                          again['unpack'], again['start']))


def main(argv=None):
    options = parse_options(argv)
    if os.geteuid() != 0:
        sys.exit('needs root (the real kernel backend, loop devices)')
    bindir = pg_bin()
    workdir = tempfile.mkdtemp(prefix='nova-openvz-dbaas-', dir=options.dir)
    os.chmod(workdir, 0o755)   # the host's postgres user reaches its disk
    host = host_side = ct_side = None
    results = {'postgresql': run([bindir + '/postgres', '--version']).split()
               [-1], 'scale': options.scale, 'clients': options.clients,
               'seconds': options.seconds}
    try:
        host = SimulatedHost(os.path.join(workdir, 'vzhost'))
        if {1, 2} & set(options.parts):
            from nova_openvz.testing import dbaas
            _progress('PostgreSQL template (built once, then cached)')
            os.symlink(dbaas.template(), os.path.join(
                host.cache, dbaas.TEMPLATE + '.tar.gz'))
            size_mb = max(2048, options.scale * 64 + 1024)
            ct_side = ContainerSide(host, CTID, dbaas.TEMPLATE,
                                    size_mb + 1024, 2048)
            if 1 in options.parts:
                host_side = HostSide(workdir, size_mb)
                results['io'] = compare_io(options, host_side, ct_side,
                                           bindir)
            else:
                ct_side.sh(postgres_script(ct_side.directory, bindir,
                                           'init', scale=options.scale))
            if 2 in options.parts:
                results['memory'] = memory_limits(options, host, ct_side,
                                                  bindir)
            ct_side.close()
            ct_side = None
        if 3 in options.parts:
            results['spawn'] = spawn_times(options, host, workdir)
    finally:
        for side in (ct_side, host_side):
            if side:
                side.close()
        if host:
            host.clean()
        shutil.rmtree(workdir, ignore_errors=True)
    if options.json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write('\n')
    else:
        print_table(results)
    return 0


if __name__ == '__main__':
    sys.exit(main())
