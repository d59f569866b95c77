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

"""Host-tool calls and periodic-cycle cost of nova-openvz, on a simulated host.

Run from the source tree, in an environment with Nova installed::

    python tools/benchmark.py                   # N = 1000 containers
    python tools/benchmark.py --containers 200  # a smaller host
    python tools/benchmark.py --json            # machine-readable results

It lays out a fresh simulated OpenVZ host (``vzsim``) in a
temporary directory and drives :class:`nova_openvz.driver.OpenVZDriver`
directly, with Nova objects, in this process (privsep entrypoints run
in-process; only the Glance download is replaced: it writes the minimal OS
template).  Every host-tool call is seen at the driver's choke point,
``nova_openvz.hosttools.add_listener``, and cross-checked against the
simulated host's own log, ``DIR/sim/calls.log``.  It reports:

1. **Calls per operation**: the vzctl and vzlist calls of spawn, soft and
   hard reboot, power_off (with Nova's default clean-shutdown timeout),
   power_on, a resize and destroy.  The resize (more RAM, vCPUs and disk)
   is made twice, side by side: live, as the driver does it on the same
   host (``nova_openvz.resize.apply``), and with the stop, set, start a
   driver without live limits needs; the container is put back to its
   old flavor between the two, unmeasured.
2. **One periodic cycle at scale**: on a host with ``--small`` (100) and
   then ``--containers`` (1000) containers of Nova, the driver calls Nova's
   compute manager makes in one round of its periodic tasks --
   ``list_instances()``, ``get_num_instances()``, ``get_info(instance)`` for
   every instance (``_sync_power_states``), ``get_available_resource()`` and
   ``update_provider_tree()`` (``update_available_resource``) -- timed and
   with its vzlist calls counted, side by side with the naive pattern of
   the retired Rackspace driver: one ``vzlist -j <CTID>`` per container
   (what ``get_info(instance, use_cache=False)`` issues).  The driver's
   cycle is run three times (the median is reported); the naive one once.
   The exit code is 1 when the driver's cycle does not make the same number
   of vzlist calls at both sizes.

The containers are made with the real simulated ``vzctl create`` (with
``--name <uuid> --description <inventory.describe(uuid, name)>``, as the
driver creates them), several in parallel; every tenth is started.  Simulated
tools are Python processes, so one call costs about Python's start-up
(0.05-0.1 s): compare ratios and call counts, not absolute times.
"""

import argparse
import collections
import concurrent.futures
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from unittest import mock
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# futurist imports eventlet (unused here), which warns at import.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

IMAGE_ID = '7f3c6a52-2d1e-4b7e-9a0e-5b1f0c3d9e41'
OPERATIONS = ('spawn', 'reboot (soft)', 'reboot (hard)', 'power_off',
              'power_on', 'resize (live)', 'resize (restart)', 'destroy')
CACHED_REPEATS = 3
#: Every RUNNING_EVERY-th bulk container is started, for a mix of states.
RUNNING_EVERY = 10


def parse_options(argv=None):
    parser = argparse.ArgumentParser(
        description='Count host-tool calls and time a periodic cycle of '
                    'nova-openvz on a simulated OpenVZ host.')
    parser.add_argument('--containers', type=int, default=1000, metavar='N',
                        help='containers of the large host (default 1000)')
    parser.add_argument('--small', type=int, default=100, metavar='N',
                        help='containers of the small host measured first '
                             '(default 100)')
    parser.add_argument('--workers', type=int,
                        default=2 * (os.cpu_count() or 1),
                        help='parallel vzctl calls while creating the '
                             'containers (default: 2 per CPU)')
    parser.add_argument('--json', action='store_true',
                        help='print the results as JSON instead of tables')
    parser.add_argument('--keep', action='store_true',
                        help='keep the simulated host directory')
    options = parser.parse_args(argv)
    if options.containers < 1 or options.small < 1:
        parser.error('container counts must be positive')
    return options


def _progress(message):
    sys.stderr.write('[%7.1fs] %s\n' % (time.monotonic() - _STARTED,
                                        message))
    sys.stderr.flush()


_STARTED = time.monotonic()


# Setting up Nova and the driver ---------------------------------------------

class Bench(object):
    """The simulated host, a configured driver and call bookkeeping."""

    def __init__(self, root):
        from vzsim import hostinit

        self.root = root
        # Modelled: the benchmark measures the driver's calls, and its
        # minimal template does not boot on the real backend.
        self.paths = hostinit.init_host(root, kernel='modelled')
        self._configure()

        from nova import context as nova_context
        from nova import objects
        from nova.virt import fake

        from nova_openvz import driver as openvz_driver
        from nova_openvz import hosttools
        from nova_openvz import privsep

        objects.register_all()
        # The privileged entrypoints run in this process (we are root).
        privsep.vz_pctxt.client_mode = False
        self.context = nova_context.get_admin_context()
        self.calls = []
        hosttools.add_listener(self.calls.append)
        self.driver = openvz_driver.OpenVZDriver(fake.FakeVirtAPI())
        self.driver.init_host(self.conf.host)
        self.nodename = self.driver.get_available_nodes()[0]

    def _configure(self):
        from nova import config as nova_config
        from oslo_config import cfg

        from nova_openvz import conf as openvz_conf  # noqa: the options

        self.conf = cfg.CONF
        nova_config.parse_args(
            ['nova-openvz-benchmark'],
            default_config_files=[self.paths['nova_conf']],
            configure_db=False, init_rpc=False)
        state = os.path.join(self.root, 'nova-state')
        os.makedirs(state)
        self.conf.set_override('state_path', state)
        self.conf.set_override('lock_path', os.path.join(state, 'locks'),
                               group='oslo_concurrency')
        self.conf.set_override('image_staging_dir',
                               os.path.join(state, 'staging'),
                               group='openvz')
        # Only the calls of Nova's requests are measured, not the lifecycle
        # event poller's (one vzlist per interval, whatever the load).
        self.conf.set_override('lifecycle_event_interval', 0, group='openvz')

    # Tool calls, seen from both sides ------------------------------------

    def host_log_lines(self):
        try:
            with open(os.path.join(self.root, 'sim', 'calls.log')) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def measure(self, action):
        """Run ``action()``; return (seconds, driver calls, host calls)."""
        del self.calls[:]
        logged = len(self.host_log_lines())
        started = time.perf_counter()
        action()
        seconds = time.perf_counter() - started
        return seconds, list(self.calls), self.host_log_lines()[logged:]

    # Nova objects --------------------------------------------------------

    def flavor(self, name='m1.tiny', memory_mb=512, vcpus=1, root_gb=1):
        from nova import objects

        return objects.Flavor(
            id=1, flavorid='1', name=name, memory_mb=memory_mb,
            vcpus=vcpus, root_gb=root_gb, ephemeral_gb=0, swap=0,
            rxtx_factor=1.0, vcpu_weight=None, disabled=False,
            is_public=True, extra_specs={}, description=None)

    def instance(self, instance_uuid, hostname):
        from nova.tests.unit import fake_instance

        inst = fake_instance.fake_instance_obj(
            self.context, uuid=instance_uuid, hostname=hostname,
            flavor=self.flavor(), host=self.conf.host,
            node=self.nodename, config_drive='')
        inst.system_metadata = {}
        inst.info_cache = None
        inst.trusted_certs = None
        return inst

    def image_meta(self):
        from nova import objects

        return objects.ImageMeta.from_dict({
            'id': IMAGE_ID, 'name': 'nova-openvz-minimal',
            'disk_format': 'raw', 'container_format': 'bare',
            'properties': {}})


def _fake_glance_download(self, context, id_or_uri, data=None,
                          dest_path=None, trusted_certs=None):
    """Stand-in for ``nova.image.glance.API.download``: the OS template."""
    from vzsim import templates

    with open(dest_path, 'wb') as f:
        f.write(templates.minimal_template_bytes())


def _fake_glance_get(self, context, id_or_uri, *args, **kwargs):
    """Stand-in for ``nova.image.glance.API.get``: the template's record.

    It carries the template's real hash, so the driver's download check
    runs as it does against Glance.
    """
    import hashlib

    from vzsim import templates

    data = templates.minimal_template_bytes()
    return {'id': id_or_uri, 'disk_format': 'raw',
            'container_format': 'bare', 'size': len(data),
            'os_hash_algo': 'sha512',
            'os_hash_value': hashlib.sha512(data).hexdigest()}


# 1. Calls per operation -----------------------------------------------------

def _describe_call(call):
    """``vzctl start`` / ``vzlist -a`` / ``vzlist <CTID>`` for a ToolCall."""
    if call.tool == 'vzlist':
        return 'vzlist -a' if '-a' in call.argv else 'vzlist <CTID>'
    return '%s %s' % (call.tool, call.argv[0] if call.argv else '')


def _count(calls, host_calls):
    by_tool = collections.Counter(c.tool for c in calls)
    host_by_tool = collections.Counter(c['tool'] for c in host_calls)
    return {
        'vzctl': by_tool['vzctl'],
        'vzlist': by_tool['vzlist'],
        'total': len(calls),
        'commands': [_describe_call(c) for c in calls],
        'vzctl_commands': [c.argv[0] for c in calls if c.tool == 'vzctl'],
        'host_log': dict(sorted(host_by_tool.items())),
    }


def _resize_with_restart(container, flavor):
    """The same resize as a driver without live limits: stop, set, start."""
    from nova_openvz import resources
    from nova_openvz import settings

    container.stop()
    container.configure(resources.limits(flavor),
                        settings.DiskSize(resources.root_gb(flavor)))
    container.start()


def measure_operations(bench):
    import nova.conf
    from nova.network import model as network_model
    from oslo_utils import uuidutils

    from nova_openvz import resize

    conf = nova.conf.CONF
    drv = bench.driver
    inst = bench.instance(uuidutils.generate_uuid(), 'bench-ops')
    image_meta = bench.image_meta()
    network_info = network_model.NetworkInfo()
    bigger = bench.flavor('m1.bigger', memory_mb=1024, vcpus=2, root_gb=2)

    def handle():
        return drv.listing.handle(inst.uuid, fresh=True)
    steps = [
        ('spawn', lambda: drv.spawn(bench.context, inst, image_meta, [],
                                    None, {}, network_info)),
        ('reboot (soft)', lambda: drv.reboot(bench.context, inst,
                                             network_info, 'SOFT')),
        ('reboot (hard)', lambda: drv.reboot(bench.context, inst,
                                             network_info, 'HARD')),
        # As the compute manager stops a server (clean shutdown).
        ('power_off', lambda: drv.power_off(
            inst, conf.shutdown_timeout,
            conf.compute.shutdown_retry_interval)),
        ('power_on', lambda: drv.power_on(bench.context, inst,
                                          network_info)),
        ('resize (live)', lambda: resize.apply(handle(), inst, bigger)),
        # Unmeasured: back to the old flavor, for the same change again.
        (None, lambda: resize.revert(handle(), inst)),
        ('resize (restart)', lambda: _resize_with_restart(handle(), bigger)),
        ('destroy', lambda: drv.destroy(bench.context, inst, network_info)),
    ]
    results = collections.OrderedDict()
    with mock.patch('nova.image.glance.API.download', _fake_glance_download), \
            mock.patch('nova.image.glance.API.get', _fake_glance_get):
        for name, action in steps:
            if name is None:
                action()
                continue
            seconds, calls, host_calls = bench.measure(action)
            results[name] = dict(_count(calls, host_calls),
                                 seconds=round(seconds, 3))
            _progress('%s: %s' % (name, ', '.join(results[name]['commands'])))
    from nova_openvz import images

    return results, images.template_name(image_meta)


# 2. The periodic cycle at scale -------------------------------------------

def _run_tool(tools_dir, *argv):
    proc = subprocess.run([os.path.join(tools_dir, argv[0])] +
                          [str(a) for a in argv[1:]],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError('%s exited %d: %s' % (
            ' '.join(str(a) for a in argv[:3]), proc.returncode,
            (proc.stderr or proc.stdout).strip()))


def populate(bench, template, start, count, workers):
    """Create ``count`` Nova containers from CTID ``start`` with vzctl.

    Each is one real ``vzctl create`` carrying the NAME and DESCRIPTION the
    driver gives its containers; every RUNNING_EVERY-th is started too.
    Returns ``[(ctid, instance_uuid)]``.
    """
    from nova_openvz import inventory
    from nova_openvz import resources
    from nova_openvz import settings
    from nova_openvz import vz4
    from oslo_utils import uuidutils

    tools_dir = bench.paths['tools_dir']
    flavor = bench.flavor()
    made = [(start + i, uuidutils.generate_uuid()) for i in range(count)]

    def create(item):
        ctid, instance_uuid = item
        _run_tool(tools_dir, 'vzctl', *vz4.create(
            ctid, template, resources.disk(flavor), settings.Identity(
                instance_uuid, inventory.describe(
                    instance_uuid, 'instance-%08x' % ctid),
                'bulk-%d' % ctid)))
        if ctid % RUNNING_EVERY == 0:
            _run_tool(tools_dir, 'vzctl', 'start', ctid)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for done, _ in enumerate(pool.map(create, made), 1):
            if done % 100 == 0:
                _progress('  %d/%d containers created' % (done, count))
    return made


def periodic_cycle(bench, instances, use_cache):
    """What one round of the compute manager's periodic tasks asks."""
    from nova.compute import provider_tree
    from oslo_utils import uuidutils

    drv = bench.driver
    tree = provider_tree.ProviderTree()
    tree.new_root(bench.nodename, uuidutils.generate_uuid())
    # The listing of the previous round has long expired (periodic tasks run
    # every 60 s or more, the listing lives [openvz]state_cache_seconds).
    drv.listing.invalidate()

    def cycle():
        names = drv.list_instances()
        drv.get_num_instances()
        states = collections.Counter(
            drv.get_info(inst, use_cache=use_cache).state
            for inst in instances)
        drv.get_available_resource(bench.nodename)
        drv.update_provider_tree(tree, bench.nodename)
        cycle.names, cycle.states = names, states

    seconds, calls, host_calls = bench.measure(cycle)
    if len(cycle.names) != len(instances):
        raise RuntimeError('list_instances found %d of %d instances'
                           % (len(cycle.names), len(instances)))
    return {'seconds': seconds,
            'vzlist': sum(1 for c in calls if c.tool == 'vzlist'),
            'vzlist_all': sum(1 for c in calls
                              if c.tool == 'vzlist' and '-a' in c.argv),
            'vzctl': sum(1 for c in calls if c.tool == 'vzctl'),
            'host_log_vzlist': sum(1 for c in host_calls
                                   if c['tool'] == 'vzlist'),
            'states': dict(cycle.states)}


def measure_cycle(bench, instances):
    cached = [periodic_cycle(bench, instances, use_cache=True)
              for _ in range(CACHED_REPEATS)]
    naive = periodic_cycle(bench, instances, use_cache=False)
    cached_seconds = statistics.median(r['seconds'] for r in cached)
    counts = sorted({r['vzlist'] for r in cached})
    return {
        'containers': len(instances),
        'running': cached[0]['states'].get(1, 0),
        'listing': {
            'seconds': round(cached_seconds, 3),
            'seconds_each': [round(r['seconds'], 3) for r in cached],
            'vzlist_calls': counts[0] if len(counts) == 1 else counts,
            'vzlist_all_calls': cached[0]['vzlist_all'],
            'vzctl_calls': cached[0]['vzctl'],
            'host_log_vzlist_calls': cached[0]['host_log_vzlist'],
        },
        'naive': {
            'seconds': round(naive['seconds'], 3),
            'vzlist_calls': naive['vzlist'],
            'vzlist_all_calls': naive['vzlist_all'],
            'vzctl_calls': naive['vzctl'],
            'host_log_vzlist_calls': naive['host_log_vzlist'],
        },
        'time_ratio': round(naive['seconds'] / cached_seconds, 1),
        'call_ratio': round(naive['vzlist'] / max(counts[0], 1), 1),
    }


# Output ----------------------------------------------------------------------

def print_tables(results):
    out = sys.stdout
    machine = results['machine']
    out.write('nova-openvz benchmark on a simulated OpenVZ host\n')
    out.write('machine: %s, %d CPUs, Python %s, nova %s\n\n' % (
        machine['platform'], machine['cpus'], machine['python'],
        machine['nova']))

    out.write('1. Host-tool calls per driver operation\n\n')
    row = '%-15s %6s %7s %6s %8s  %s\n'
    out.write(row % ('operation', 'vzctl', 'vzlist', 'total', 'seconds',
                     'calls in order'))
    out.write(row % ('-' * 15, '-' * 6, '-' * 7, '-' * 6, '-' * 8,
                     '-' * 40))
    for name, op in results['operations'].items():
        out.write(row % (name, op['vzctl'], op['vzlist'], op['total'],
                         '%.2f' % op['seconds'], ', '.join(op['commands'])))
    resize = results['resize']
    out.write('\nresize, same change side by side: live %.2f s (the guest '
              'keeps running), stop/set/start %.2f s (the guest is down '
              'throughout): %sx\n\n' % (
                  resize['live_seconds'], resize['restart_seconds'],
                  resize['restart_over_live']))

    out.write('2. One periodic cycle (list_instances, get_num_instances, '
              'get_info x N,\n   get_available_resource, '
              'update_provider_tree)\n\n')
    row = '%6s  %-26s %7s %8s %8s %9s\n'
    out.write(row % ('N', 'variant', 'vzlist', '-a -j', '<CTID>',
                     'seconds'))
    out.write(row % ('-' * 6, '-' * 26, '-' * 7, '-' * 8, '-' * 8, '-' * 9))
    for cycle in results['cycles']:
        for label, key in (('driver (listing)', 'listing'),
                           ('naive (vzlist per CT)', 'naive')):
            variant = cycle[key]
            total = variant['vzlist_calls']
            listings = variant['vzlist_all_calls']
            out.write(row % (cycle['containers'] if key == 'listing' else '',
                             label, total, listings,
                             total - listings if isinstance(total, int)
                             else '?',
                             '%.3f' % variant['seconds']))
        out.write(row % ('', 'naive / driver', '%.0fx' % cycle['call_ratio'],
                         '', '', '%.1fx' % cycle['time_ratio']))
    out.write('\nvzlist calls per driver cycle: %s -> %s\n' % (
        ', '.join('%d at N=%d' % (c['listing']['vzlist_calls'],
                                  c['containers'])
                  for c in results['cycles']),
        'constant' if results['listing_calls_constant'] else 'NOT constant'))
    out.write('containers: %s; driver cycle: median of %d runs, naive: '
              'one run\n' % (results['populate']['how'], CACHED_REPEATS))
    out.write('benchmark took %.0f s (creating containers: %.0f s)\n' % (
        results['total_seconds'], results['populate']['seconds']))


def main(argv=None):
    options = parse_options(argv)
    root = tempfile.mkdtemp(prefix='nova-openvz-bench-')
    try:
        return run(options, root)
    finally:
        if options.keep:
            sys.stderr.write('simulated host kept in %s\n' % root)
        else:
            shutil.rmtree(root, ignore_errors=True)


def run(options, root):
    _progress('simulated host in %s' % root)
    bench = Bench(root)
    import nova.version

    results = {
        'machine': {'platform': platform.platform(),
                    'cpus': os.cpu_count(),
                    'python': platform.python_version(),
                    'nova': nova.version.version_string()},
        'host': root if options.keep else None,
    }
    operations, template = measure_operations(bench)
    results['operations'] = operations
    live = operations['resize (live)']['seconds']
    restart = operations['resize (restart)']['seconds']
    # Measured side by side in this run: compare the ratio, not seconds.
    results['resize'] = {
        'live_seconds': live, 'restart_seconds': restart,
        'restart_over_live': round(restart / live, 2) if live else None,
        # The guest is down for the whole stop/set/start; never when live.
        'guest_down_seconds': {'live': 0.0, 'restart': restart}}

    sizes = sorted({min(options.small, options.containers),
                    options.containers})
    made = []
    populate_seconds = 0.0
    cycles = []
    for size in sizes:
        _progress('creating containers %d..%d' % (len(made) + 1, size))
        started = time.monotonic()
        made += populate(bench, template, 1001 + len(made),
                         size - len(made), options.workers)
        populate_seconds += time.monotonic() - started
        instances = [bench.instance(u, 'bulk-%d' % c) for c, u in made]
        _progress('periodic cycle at N=%d' % size)
        cycles.append(measure_cycle(bench, instances))
        _progress('  driver %.3fs / %s vzlist, naive %.3fs / %d vzlist' % (
            cycles[-1]['listing']['seconds'],
            cycles[-1]['listing']['vzlist_calls'],
            cycles[-1]['naive']['seconds'],
            cycles[-1]['naive']['vzlist_calls']))
    results['cycles'] = cycles
    results['listing_calls_constant'] = len(
        {json.dumps(c['listing']['vzlist_calls']) for c in cycles}) == 1
    results['populate'] = {
        'how': 'real vzctl create --name --description, %d in parallel'
               % options.workers,
        'seconds': round(populate_seconds, 1),
        'running_every': RUNNING_EVERY}
    results['total_seconds'] = round(time.monotonic() - _STARTED, 1)
    if options.json:
        json.dump(results, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write('\n')
    else:
        print_tables(results)
    # A driver cycle whose vzlist calls grow with N is a regression.
    return 0 if results['listing_calls_constant'] else 1


if __name__ == '__main__':
    sys.exit(main())
