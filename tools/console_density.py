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

"""Host memory and descriptors the driver keeps per container's console.

Run as root from the source tree, in an environment with Nova installed::

    python tools/console_density.py                 # 10 and 200 consoles
    python tools/console_density.py --sizes 10,500  # other host sizes
    python tools/console_density.py --json          # machine-readable

It lays out a fresh simulated OpenVZ host (``nova-openvz simulate init
--kernel modelled``) in a temporary directory, gives it as many container
configs as the largest size asks (``vzctl set <CTID> --save``: a console
needs no more), and attaches their consoles through the driver's own
console module (:mod:`nova_openvz.console`; privileged entrypoints run in
this process), as spawn does, one size after the other, side by side in
one run.  Every console then prints one line, so that each log file is
open, and at each size it reports:

* the console agent (the driver's one helper process per host): resident
  (RSS) and proportional (PSS) memory, descriptors, threads;
* every other host process the driver keeps per container -- the host's
  ``vzctl console`` sessions, which on the simulated host are Python
  programs (their figures are the simulator's, not a real host's C vzctl);
* the growth per container between the smallest and the largest size;
* the agent's descriptors again once it also serves each console's TCP
  port for Nova's serial console.

Memory is read from ``/proc/<pid>/status`` and ``smaps_rollup``.  The exit
code is 1 when the agent grows by more than ``--goal-kib`` (1024 KiB) per
container.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# futurist imports eventlet (unused here), which warns at import.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

FIRST_CTID = 1001
SERIAL_PORTS = (31000, 32000)


def parse_options(argv=None):
    parser = argparse.ArgumentParser(
        description='Measure the host memory and descriptors nova-openvz '
                    'keeps per container console, on a simulated host.')
    parser.add_argument('--sizes', default='10,200',
                        help='numbers of consoles attached, in order '
                             '(default 10,200)')
    parser.add_argument('--workers', type=int, default=4,
                        help='parallel attaches and vzctl calls (default 4)')
    parser.add_argument('--goal-kib', type=int, default=1024,
                        help='most the agent may grow per container')
    parser.add_argument('--json', action='store_true',
                        help='print the results as JSON instead of tables')
    options = parser.parse_args(argv)
    options.sizes = [int(n) for n in options.sizes.split(',')]
    if sorted(options.sizes) != options.sizes or options.sizes[0] < 1:
        parser.error('--sizes must be positive and increasing')
    return options


_STARTED = time.monotonic()


def _progress(message):
    sys.stderr.write('[%7.1fs] %s\n' % (time.monotonic() - _STARTED,
                                        message))
    sys.stderr.flush()


# /proc ---------------------------------------------------------------------

def _status(pid):
    """``VmRSS`` (KiB) and ``Threads`` of a process."""
    values = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            key, _, value = line.partition(':')
            if key in ('VmRSS', 'Threads'):
                values[key] = int(value.split()[0])
    return values


def _pss(pid):
    """Proportional set size in KiB (shared pages split among sharers)."""
    with open('/proc/%d/smaps_rollup' % pid) as f:
        for line in f:
            if line.startswith('Pss:'):
                return int(line.split()[1])
    return 0


def _fds(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


def process(pid):
    status = _status(pid)
    return {'pid': pid, 'rss_kib': status['VmRSS'], 'pss_kib': _pss(pid),
            'fds': _fds(pid), 'threads': status['Threads']}


# The host and the driver ---------------------------------------------------

class Host(object):

    def __init__(self, root, workers):
        self.root = root
        self.workers = workers
        subprocess.run([sys.executable, '-m', 'nova_openvz.cmd.cli',
                        'simulate', 'init', '--kernel', 'modelled', root],
                       check=True, capture_output=True)
        from nova import config as nova_config
        from nova import objects
        from oslo_config import cfg

        from nova_openvz import conf as openvz_conf  # noqa: the options
        from nova_openvz import privsep

        self.conf = cfg.CONF
        nova_config.parse_args(
            ['nova-openvz-console-density'],
            default_config_files=[os.path.join(root, 'nova-openvz.conf')],
            configure_db=False, init_rpc=False)
        state = os.path.join(root, 'nova-state')
        self.conf.set_override('state_path', state)
        self.conf.set_override('instances_path',
                               os.path.join(state, 'instances'))
        self.conf.set_override('lock_path', os.path.join(state, 'locks'),
                               group='oslo_concurrency')
        self.conf.set_override('enabled', True, group='serial_console')
        self.conf.set_override('port_range', '%d:%d' % SERIAL_PORTS,
                               group='serial_console')
        objects.register_all()
        # The privileged entrypoints run in this process (we are root).
        privsep.vz_pctxt.client_mode = False
        self.instances = []
        self.uuids = {}    # CT ID: the instance UUID its config names

    def vzctl(self, *argv):
        proc = subprocess.run(
            [os.path.join(self.root, 'usr', 'sbin', 'vzctl')] +
            [str(a) for a in argv], capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError('vzctl %s: %s' % (' '.join(map(str, argv)),
                                                 proc.stderr))

    def make_containers(self, count):
        """Container configs of Nova's, which is all a console needs.

        Each names its instance as spawn's do (NAME and DESCRIPTION): the
        privileged side attaches consoles of Nova's containers only.
        """
        self.uuids = {ctid: str(uuid.uuid4())
                      for ctid in range(FIRST_CTID, FIRST_CTID + count)}
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(lambda ctid: self.vzctl(
                'set', ctid, '--save', '--hostname', 'ct%d' % ctid,
                '--name', self.uuids[ctid],
                '--description', 'nova-instance=' + self.uuids[ctid]),
                self.uuids))

    def attach(self, count):
        """Attach consoles until ``count`` are attached, as spawn does."""
        from nova import objects

        from nova_openvz import console
        from nova_openvz import container

        ctids = [FIRST_CTID + len(self.instances) + n
                 for n in range(count - len(self.instances))]
        new = [(objects.Instance(uuid=self.uuids[ctid]), ctid)
               for ctid in ctids]
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(lambda pair: console.attach(
                pair[0], container.Container(pair[1])), new))
        self.instances += new
        # One line on every console, so that every log file is open.
        for instance, ctid in new:
            with open(os.path.join(self.root, 'var', 'lib', 'vzsim',
                                   '%d.console' % ctid), 'ab') as f:
                f.write(b'nova-openvz console density: CT %d\n' % ctid)
        deadline = time.monotonic() + 60 + count
        for instance, _ in new:
            log = os.path.join(console.directory(instance), 'console.log')
            while not os.path.exists(log):
                if time.monotonic() > deadline:
                    raise RuntimeError('%s was never written' % log)
                time.sleep(0.05)

    def serve_all(self):
        from nova_openvz import console
        from nova_openvz import container

        for instance, ctid in self.instances:
            console.serial(instance, container.Container(ctid))

    def agent(self):
        from nova_openvz.privsep import console as priv_console

        return priv_console.console_agent_status()

    def remove_all(self):
        from nova_openvz import console

        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(lambda pair: console.remove(pair[0]),
                          self.instances))


def measure(host):
    status = host.agent()
    # The agent closes its end of this status request's connection when
    # it reads the end: let it, so that the count is of its own fds.
    time.sleep(0.5)
    agent = process(status['pid'])
    sessions = [process(s['pid']) for s in status['sessions']]
    return {
        'consoles': len(status['sessions']),
        'agent': agent,
        'vzctl_console': {
            'processes': len(sessions),
            'rss_kib': sum(p['rss_kib'] for p in sessions),
            'pss_kib': sum(p['pss_kib'] for p in sessions),
            'fds': sum(p['fds'] for p in sessions),
        },
    }


def run(options):
    root = tempfile.mkdtemp(prefix='nova-openvz-console-density-')
    host = None
    try:
        host = Host(root, options.workers)
        _progress('simulated host in %s' % root)
        host.make_containers(options.sizes[-1])
        _progress('%d container configs' % options.sizes[-1])
        sizes = []
        for size in options.sizes:
            host.attach(size)
            time.sleep(1)    # let the sessions settle
            sizes.append(measure(host))
            _progress('%d consoles attached and logging' % size)
        host.serve_all()
        served = measure(host)
        _progress('%d consoles also served on TCP ports' % served['consoles'])
        return report(options, sizes, served)
    finally:
        if host is not None:
            host.remove_all()
            status = host.agent()
            if status is not None:
                os.kill(status['pid'], 15)
        shutil.rmtree(root, ignore_errors=True)


def report(options, sizes, served):
    first, last = sizes[0], sizes[-1]
    added = last['consoles'] - first['consoles']

    def growth(key):
        if not added:
            return None
        return (last['agent'][key] - first['agent'][key]) / added

    result = {
        'sizes': sizes,
        'served': served,
        'agent_per_console': {
            'rss_kib': growth('rss_kib'), 'pss_kib': growth('pss_kib'),
            'fds': growth('fds')},
        'serial_fds_per_console': (served['agent']['fds'] -
                                   last['agent']['fds']) / last['consoles'],
        'vzctl_console_per_console': {
            key: last['vzctl_console'][key] / last['consoles']
            for key in ('rss_kib', 'pss_kib', 'fds')},
        'goal_kib': options.goal_kib,
    }
    worst = max(v for v in (result['agent_per_console']['rss_kib'],
                            result['agent_per_console']['pss_kib'])
                if v is not None) if added else 0
    result['within_goal'] = worst <= options.goal_kib
    return result


def print_tables(result):
    print('Console agent (one per host) and vzctl console sessions')
    print()
    print('%8s  %9s  %9s  %6s  %7s  %14s  %14s  %9s' % (
        'consoles', 'agent RSS', 'agent PSS', 'fds', 'threads',
        'vzctl procs', 'vzctl RSS', 'vzctl fds'))
    for size in result['sizes'] + [result['served']]:
        agent, vzctl = size['agent'], size['vzctl_console']
        print('%8d  %6.1f MiB  %6.1f MiB  %6d  %7d  %14d  %10.1f MiB  %9d' % (
            size['consoles'], agent['rss_kib'] / 1024.0,
            agent['pss_kib'] / 1024.0, agent['fds'], agent['threads'],
            vzctl['processes'], vzctl['rss_kib'] / 1024.0, vzctl['fds']))
    print('(last row: the same consoles, each also served on a TCP port)')
    print()
    per = result['agent_per_console']
    if per['rss_kib'] is not None:
        print('agent growth per console: %.1f KiB RSS, %.1f KiB PSS, '
              '%.1f fds (goal: at most %d KiB)' % (
                  per['rss_kib'], per['pss_kib'], per['fds'],
                  result['goal_kib']))
    print('serving a TCP port: %.1f more fds per console'
          % result['serial_fds_per_console'])
    vzctl = result['vzctl_console_per_console']
    print('simulated vzctl console per console: %.1f MiB RSS, %.1f MiB PSS, '
          '%.1f fds (the simulator\'s Python tool, not a real host\'s C '
          'vzctl)' % (vzctl['rss_kib'] / 1024.0, vzctl['pss_kib'] / 1024.0,
                      vzctl['fds']))


def main(argv=None):
    options = parse_options(argv)
    if os.geteuid() != 0:
        sys.exit('run as root: the console agent is root\'s')
    result = run(options)
    if options.json:
        print(json.dumps(result, indent=2))
    else:
        print_tables(result)
    return 0 if result['within_goal'] else 1


if __name__ == '__main__':
    sys.exit(main())
