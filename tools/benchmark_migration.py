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

"""Cost of moving a container between two simulated OpenVZ hosts.

Run from the source tree, as root::

    python tools/benchmark_migration.py                # 50 MB and 500 MB
    python tools/benchmark_migration.py --sizes 5 20   # smaller, faster
    python tools/benchmark_migration.py --json

It lays out two simulated hosts (``vzsim``, modelled kernel) in a
temporary directory, joined by the simulated vzmigrate's hosts map, and for
each size makes a container whose private area holds that many megabytes
of incompressible data (simfs layout: a file tree).  Side by side, in one
run, it times:

1. **Cold migration** (``vzmigrate``, container stopped) against a plain
   copy of the same private area (``cp -a``, and ``rsync -aHAX --sparse``
   when rsync is installed) on the same disk: the transfer's overhead.
2. **Live migration** (``vzmigrate --online -v``): the total time, and the
   downtime, from the moment vzmigrate says it suspends the container to
   the moment it says it cleans up after resuming it on the peer (its
   output lines are timestamped as they arrive).

Each figure is the median of ``--repeats`` runs; the container goes back
and forth between the two hosts.  What the simulation measures: its
vzmigrate copies the private area *while the container is suspended*
(real vzmigrate --online copies it once while the container runs and only
the changes while it is frozen), and both hosts share one disk, so the
copy is a local file copy, not rsync over ssh.  Simulated tools are Python
processes (0.05-0.1 s each): compare ratios, not absolute times.
"""

import argparse
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

HOSTS = ('bench-a', 'bench-b')
CTID = 101
TEMPLATE = 'debian-12-nova-bench'
#: The suspend and resume lines of ``vzmigrate --online -v``.
SUSPEND_LINE = 'Suspending container'
RESUMED_LINE = 'Cleaning up'


def parse_options(argv=None):
    parser = argparse.ArgumentParser(
        description='Cold and live migration cost on two simulated hosts.')
    parser.add_argument('--sizes', type=int, nargs='+', default=[50, 500],
                        metavar='MB', help='data in the container, in MB '
                                           '(default: 50 500)')
    parser.add_argument('--repeats', type=int, default=3,
                        help='runs of each measurement; the median is '
                             'reported (default: 3)')
    parser.add_argument('--json', action='store_true',
                        help='print the results as JSON')
    return parser.parse_args(argv)


class Host(object):
    """One simulated host: its tree and tools."""

    def __init__(self, root):
        from vzsim import hostinit
        from vzsim import templates

        self.root = root
        self.paths = hostinit.init_host(root, kernel='modelled')
        with open(os.path.join(self.paths['template_cache'],
                               TEMPLATE + '.tar.gz'), 'wb') as f:
            f.write(templates.minimal_template_bytes())

    def tool(self, *argv, check=True):
        proc = subprocess.run(
            [os.path.join(self.paths['tools_dir'], argv[0])] +
            [str(a) for a in argv[1:]],
            capture_output=True, text=True, check=False)
        if check and proc.returncode:
            raise RuntimeError('%s exited %d: %s' % (
                ' '.join(str(a) for a in argv), proc.returncode,
                (proc.stderr or proc.stdout).strip()))
        return proc

    def private(self, ctid):
        return os.path.join(self.root, 'vz', 'private', str(ctid))

    def has(self, ctid):
        return os.path.exists(os.path.join(self.root, 'etc', 'vz', 'conf',
                                           '%d.conf' % ctid))


def make_hosts(top):
    hosts = {name: Host(os.path.join(top, name)) for name in HOSTS}
    for name, host in hosts.items():
        peers = {other: hosts[other].root for other in HOSTS
                 if other != name}
        with open(os.path.join(host.root, 'sim', 'hosts.json'), 'w') as f:
            json.dump(peers, f)
    return hosts


def make_container(host, megabytes):
    host.tool('vzctl', 'create', CTID, '--ostemplate', TEMPLATE,
              '--layout', 'simfs', '--name', 'bench-%d' % megabytes)
    data = os.path.join(host.private(CTID), 'var', 'bench.dat')
    os.makedirs(os.path.dirname(data), exist_ok=True)
    chunk = 1024 * 1024
    with open(data, 'wb') as f:
        for _ in range(megabytes):
            f.write(os.urandom(chunk))
        f.flush()
        os.fsync(f.fileno())


def _timed(argv):
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - started


def plain_copies(host, scratch):
    """Seconds of ``cp -a`` (and rsync) of the container's private area."""
    results = {}
    commands = {'cp -a': ['cp', '-a']}
    if shutil.which('rsync'):
        commands['rsync -aHAX --sparse'] = ['rsync', '-aHAX', '--sparse']
    for label, command in commands.items():
        target = os.path.join(scratch, 'copy')
        results[label] = _timed(command + [host.private(CTID) + '/',
                                           target + '/'])
        shutil.rmtree(target)
    return results


def vzmigrate(source, dest_name, online):
    """Total seconds of one vzmigrate, and its downtime when ``online``."""
    argv = [os.path.join(source.paths['tools_dir'], 'vzmigrate'), '-v',
            '-r', 'yes']
    if online:
        argv.append('--online')
    argv += [dest_name, str(CTID)]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    suspended = resumed = None
    for line in proc.stdout:
        now = time.perf_counter()
        if SUSPEND_LINE in line and suspended is None:
            suspended = now
        elif RESUMED_LINE in line and suspended is not None and \
                resumed is None:
            resumed = now
    err = proc.stderr.read()
    if proc.wait():
        raise RuntimeError('vzmigrate exited %d: %s'
                           % (proc.returncode, err.strip()))
    total = time.perf_counter() - started
    downtime = resumed - suspended if online and resumed else None
    return total, downtime


def measure(hosts, megabytes, repeats, scratch):
    """The figures for one size; the container ends where it started."""
    a, b = hosts[HOSTS[0]], hosts[HOSTS[1]]
    make_container(a, megabytes)
    copies = {}
    cold, live, downtime = [], [], []
    for _ in range(repeats):
        for label, seconds in plain_copies(a, scratch).items():
            copies.setdefault(label, []).append(seconds)
        # There and back: each leg is one cold move.
        for source, dest in ((a, HOSTS[1]), (b, HOSTS[0])):
            cold.append(vzmigrate(source, dest, online=False)[0])
    a.tool('vzctl', 'start', CTID)
    for _ in range(repeats):
        for source, dest in ((a, HOSTS[1]), (b, HOSTS[0])):
            total, down = vzmigrate(source, dest, online=True)
            live.append(total)
            downtime.append(down)
    a.tool('vzctl', 'stop', CTID, '--fast')
    a.tool('vzctl', 'destroy', CTID)
    median = statistics.median
    copy = {label: median(values) for label, values in copies.items()}
    return {
        'megabytes': megabytes,
        'plain_copy_seconds': copy,
        'cold_seconds': median(cold),
        'cold_over_cp': median(cold) / copy['cp -a'],
        'live_seconds': median(live),
        'live_downtime_seconds': median(downtime),
        'downtime_share_of_live': median(downtime) / median(live),
    }


def print_table(results):
    print('Moving a container between two simulated hosts (median of %d)'
          % results['repeats'])
    print()
    print('%8s %10s %10s %10s %8s %10s %10s %9s' % (
        'data MB', 'cp -a s', 'rsync s', 'cold s', 'cold/cp', 'live s',
        'down s', 'down/live'))
    for row in results['sizes']:
        rsync = row['plain_copy_seconds'].get('rsync -aHAX --sparse')
        print('%8d %10.2f %10s %10.2f %8.2f %10.2f %10.2f %9.2f' % (
            row['megabytes'], row['plain_copy_seconds']['cp -a'],
            '%.2f' % rsync if rsync is not None else '-',
            row['cold_seconds'], row['cold_over_cp'], row['live_seconds'],
            row['live_downtime_seconds'], row['downtime_share_of_live']))


def main(argv=None):
    options = parse_options(argv)
    top = tempfile.mkdtemp(prefix='nova-openvz-migration-bench-')
    try:
        hosts = make_hosts(top)
        scratch = os.path.join(top, 'scratch')
        os.makedirs(scratch)
        results = {'repeats': options.repeats, 'sizes': [
            measure(hosts, megabytes, options.repeats, scratch)
            for megabytes in options.sizes]}
    finally:
        shutil.rmtree(top, ignore_errors=True)
    if options.json:
        print(json.dumps(results, indent=2, sort_keys=True))
    else:
        print_table(results)
    return 0


if __name__ == '__main__':
    sys.exit(main())
