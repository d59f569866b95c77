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

"""The simulated host's tree, state files, tool harness and host init.

Formats come from openvz-reference.md (4.2, 4.6, 5.1, 5.2) and
from doc/source/contributor/design.rst (faults, latency, call log).
"""

import configparser
import os
import subprocess
import time

import fixtures
import testtools

from nova_openvz.privsep import vzconf
from tests import fixtures as sim_fixtures
from vzsim import hostfs
from vzsim import hostinit
from vzsim.kernel import backends
from vzsim.kernel import base
from vzsim.kernel import modelled
from vzsim.kernel import real as realkernel

LONG_MAX = vzconf.LONG_MAX


class HostTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # Host files, locks and faults as the modelled backend keeps them.
        self.fixture = self.useFixture(
            sim_fixtures.SimulatedHostFixture(kernel='modelled'))
        self.root = self.fixture.root
        self.host = hostfs.Host(self.root)

    def vzctl(self, *args):
        return self.fixture.vzctl(*args)

    def create(self, ctid=101, *args):
        rc, out, err = self.vzctl('create', ctid, '--layout', 'simfs', *args)
        self.assertEqual(0, rc, err)


class TestHost(HostTestCase):

    def test_paths_come_from_vz_conf(self):
        self.assertEqual(os.path.join(self.root, 'vz/lock'), self.host.lockdir)
        self.assertEqual(os.path.join(self.root, 'vz/dump'), self.host.dumpdir)
        self.assertEqual(os.path.join(self.root, 'vz/template'),
                         self.host.template_dir)
        self.assertEqual(os.path.join(self.root, 'etc/vz/conf'),
                         self.host.conf_dir)
        self.assertEqual(os.path.join(self.root, 'vz/private/101'),
                         self.host.ve_private(101))
        self.assertEqual(os.path.join(self.root, 'vz/root/7'),
                         self.host.ve_root(7))
        self.assertEqual(os.path.join(self.root, 'vz/lock/101.lck'),
                         self.host.lock_file(101))
        self.assertEqual(os.path.join(self.root, 'vz/dump/Dump.101'),
                         self.host.dump_file(101))

    def test_ctids_names_and_resolution(self):
        self.create(101, '--name', 'web')
        self.create(102)
        open(os.path.join(self.host.conf_dir, '103.conf.destroyed'),
             'w').close()
        self.assertEqual([101, 102], self.host.ctids())
        self.assertEqual(101, self.host.resolve('web'))
        self.assertEqual(102, self.host.resolve('102'))
        self.assertIsNone(self.host.resolve('nosuch'))
        self.assertIsNone(self.host.resolve('2147483645'))
        self.assertEqual('web', self.host.read_config(101)['NAME'])
        self.host.remove_name_links(101)
        self.assertIsNone(self.host.resolve('web'))

    def test_layout_is_detected_without_ve_layout(self):
        rc, _, err = self.vzctl('create', 101)
        self.assertEqual(0, rc, err)
        self.host.save_config(101, {}, remove={'VE_LAYOUT'})
        self.assertEqual('ploop', self.host.layout(101))
        self.create(102)
        self.host.save_config(102, {}, remove={'VE_LAYOUT'})
        self.assertEqual('simfs', self.host.layout(102))

    def test_runtime_defaults_and_round_trip(self):
        state = self.host.runtime(150)
        self.assertEqual(hostfs.RUNTIME_DEFAULTS, state)
        state.update(running=True, ips=['10.0.0.1'])
        self.host.save_runtime(150, state)
        self.assertEqual([150], self.host.running_ctids())
        self.assertEqual(['10.0.0.1'], self.host.runtime(150)['ips'])
        self.host.drop_runtime(150)
        self.assertEqual([], self.host.running_ctids())


class TestProcFiles(testtools.TestCase):
    """Reference 5.1 and 5.2."""

    def test_veinfo_lists_venet_ips_in_reverse_order(self):
        state = dict(hostfs.RUNTIME_DEFAULTS, numproc=18,
                     ips=['10.0.0.1', '10.0.0.2', 'fe80::1'])
        lines = hostfs.render_veinfo([(101, state)]).splitlines()
        self.assertRegex(lines[0], r'^         0     0 +\d+$')
        self.assertEqual('       101     0    18' + ' %39s' % 'fe80::1' +
                         ' %15s' % '10.0.0.2' + ' %15s' % '10.0.0.1',
                         lines[1])

    def test_beancounters_format(self):
        ubc = hostfs.effective_ubc({'PHYSPAGES': '0:262144',
                                    'SWAPPAGES': '0:131072'})
        state = dict(hostfs.RUNTIME_DEFAULTS, running=True, numproc=3,
                     ubc={k: list(v) for k, v in ubc.items()})
        lines = hostfs.render_beancounters([(101, state)]).splitlines()
        self.assertEqual('Version: 2.5', lines[0])
        self.assertEqual(['uid', 'resource', 'held', 'maxheld', 'barrier',
                          'limit', 'failcnt'], lines[1].split())
        start = lines.index(next(ln for ln in lines
                                 if ln.lstrip().startswith('101:')))
        block = lines[start:start + len(hostfs.BEANCOUNTER_ROWS)]
        self.assertEqual(('%10s  %-12s %20d' % ('101:', 'kmemsize',
                                                3 * 65536)),
                         block[0][:45])
        self.assertEqual(list(hostfs.BEANCOUNTER_ROWS),
                         [ln.split()[-6] for ln in block])
        rows = {ln.split()[-6]: [int(x) for x in ln.split()[-5:]]
                for ln in block}
        self.assertEqual([3, 3, LONG_MAX, LONG_MAX, 0], rows['numproc'])
        self.assertEqual([0, 262144], rows['physpages'][2:4])
        self.assertEqual(3 * hostfs.PAGES_PER_PROCESS, rows['physpages'][0])

    def test_vestat_is_printed_as_a_64_bit_kernel_does(self):
        # Reference 5.3; the kernel's "%20u %20lu ..." and its header.
        state = dict(hostfs.RUNTIME_DEFAULTS, running=True,
                     start_time=1000.0, cpustat={
                         'user': 78, 'nice': 0, 'system': 1330,
                         'used_ns': 14080000000})
        hz = os.sysconf('SC_CLK_TCK')
        lines = hostfs.render_vestat([(101, state)], now=1010.0).split('\n')
        self.assertEqual('Version: 2.2', lines[0].rstrip())
        self.assertEqual(12 * 21 - 1, len(lines[0]))
        self.assertEqual(
            'VEID user nice system uptime idle strv uptime used maxlat '
            'totlat numsched'.split(), lines[1].split())
        self.assertEqual(12 * 21 - 1, len(lines[1]))
        self.assertEqual('%20d %20d %20d %20d %20d' % (
            101, 78, 0, 1330, 10 * hz), lines[2][:104])
        self.assertEqual(12 * 21 - 1, len(lines[2]))
        fields = [int(f) for f in lines[2].split()]
        self.assertEqual(10 * 10 ** 9, fields[7])        # cycles at 1 GHz
        self.assertEqual(14080000000, fields[8])
        self.assertEqual('', lines[3])                   # CT 0 has no line

    def test_libvirts_reading_of_vestat_finds_the_cpu_time(self):
        # What LV openvzGetProcessInfo does: "%d %llu %llu %llu" per line,
        # the header skipped because it does not scan.
        state = dict(hostfs.RUNTIME_DEFAULTS, running=True,
                     start_time=time.time(), cpustat={'user': 5, 'nice': 1,
                                                      'system': 4})
        found = None
        for line in hostfs.render_vestat([(101, dict(
                hostfs.RUNTIME_DEFAULTS)), (102, state)]).splitlines():
            fields = line.split()
            if len(fields) >= 4 and all(f.isdigit() for f in fields[:4]) \
                    and fields[0] == '102':
                found = sum(int(f) for f in fields[1:4])
        self.assertEqual(10, found)

    def test_vswap_derived_beancounters(self):
        ubc = hostfs.effective_ubc({'PHYSPAGES': '0:256M',
                                    'SWAPPAGES': '0:512M'})
        ram, swap = 65536, 131072
        self.assertEqual((0, ram), ubc['physpages'])
        self.assertEqual((ram, ram), ubc['lockedpages'])
        self.assertEqual((ram, LONG_MAX), ubc['oomguarpages'])
        self.assertEqual((ram + swap, LONG_MAX), ubc['vmguarpages'])
        self.assertEqual((LONG_MAX, LONG_MAX), ubc['privvmpages'])
        ubc = hostfs.effective_ubc({'PHYSPAGES': '0:256M',
                                    'SWAPPAGES': '0:512M',
                                    'VM_OVERCOMMIT': '1.5'})
        self.assertEqual(int((ram + swap) * 1.5), ubc['privvmpages'][0])

    def test_running_containers_appear_in_proc(self):
        # The modelled veinfo: the minimal template boots only there.
        fixture = self.useFixture(
            sim_fixtures.SimulatedHostFixture(kernel='modelled'))
        fixture.vzctl('create', 101, '--layout', 'simfs', '--ipadd',
                      '10.1.1.1')
        fixture.vzctl('start', 101)
        with open(fixture.path('proc/vz/veinfo')) as f:
            self.assertIn('       101     0     1        10.1.1.1\n',
                          f.read())
        with open(fixture.path('proc/user_beancounters')) as f:
            self.assertIn('\n      101:  kmemsize', f.read())


class TestLock(HostTestCase):

    def test_stale_lock_is_removed_and_reported(self):
        dead = subprocess.Popen(['true'])
        dead.wait()
        lock_file = self.host.lock_file(101)
        with open(lock_file, 'w') as f:
            f.write('%d\nstarting\n' % dead.pid)
        said = []
        with hostfs.CTLock(self.host, 101, 'set', say=said.append):
            with open(lock_file) as f:
                self.assertEqual('%d\nset\n' % os.getpid(), f.read())
        self.assertEqual(['Removing stale lock file %s' % lock_file], said)
        self.assertFalse(os.path.exists(lock_file))

    def test_live_holder_raises_exit_code_9(self):
        holder = subprocess.Popen(['sleep', '30'])
        self.addCleanup(holder.wait)
        self.addCleanup(holder.kill)
        deadline = time.monotonic() + 5
        while (hostfs.CTLock._cmdline(holder.pid) != 'sleep 30' and
               time.monotonic() < deadline):
            time.sleep(0.01)   # until the child has exec'd
        with open(self.host.lock_file(101), 'w') as f:
            f.write('%d\n\n' % holder.pid)
        error = self.assertRaises(hostfs.ToolError,
                                  hostfs.CTLock(self.host, 101, '').acquire)
        self.assertEqual(9, error.code)
        self.assertEqual('Container already locked\nLocked by: pid %d, '
                         'cmdline sleep 30' % holder.pid, error.message)


class TestFaultInjection(HostTestCase):
    """design.rst: DIR/sim/faults.json."""

    def test_a_fault_replaces_the_call(self):
        self.fixture.inject_fault('vzctl', command='create', call=1,
                                  exit_code=48,
                                  stderr='tar: Unexpected EOF in archive')
        rc, out, err = self.vzctl('create', 101, '--layout', 'simfs')
        self.assertEqual((48, '', 'tar: Unexpected EOF in archive\n'),
                         (rc, out, err))
        self.assertFalse(os.path.exists(self.host.conf_path(101)))
        self.create(101)    # the rule was for the first call only

    def test_call_number_counts_matching_calls(self):
        self.create(101)
        self.fixture.inject_fault('vzctl', command='status', call=2,
                                  exit_code=3, stdout='partial')
        self.assertEqual(0, self.vzctl('start', 101)[0])   # not matching
        self.assertEqual(0, self.vzctl('status', 101)[0])
        self.assertEqual((3, 'partial\n', ''), self.vzctl('status', 101))
        self.assertEqual(0, self.vzctl('status', 101)[0])

    def test_rules_without_call_match_every_time_and_ctid_restricts(self):
        self.create(101)
        self.create(102)
        self.fixture.inject_fault('vzctl', exit_code=9, ctid=102,
                                  stderr='Container already locked')
        for _ in range(2):
            self.assertEqual(9, self.vzctl('start', 102)[0])
        self.assertEqual(0, self.vzctl('start', 101)[0])

    def test_concurrent_calls_count_each_call_once(self):
        self.create(101)
        self.fixture.inject_fault('vzctl', command='status', call=4,
                                  exit_code=7)
        procs = [subprocess.Popen([os.path.join(self.fixture.tools_dir,
                                                'vzctl'), 'status', '101'],
                                  stdout=subprocess.DEVNULL)
                 for _ in range(8)]
        codes = sorted(p.wait() for p in procs)
        self.assertEqual([0] * 7 + [7], codes)


class TestLatencyAndCallLog(HostTestCase):
    """design.rst: DIR/sim/latency.json and DIR/sim/calls.log."""

    def test_every_call_is_logged(self):
        self.vzctl('status', 101)
        self.vzctl('start', 101)
        calls = self.fixture.calls()
        self.assertEqual([['status', '101'], ['start', '101']],
                         [c['argv'] for c in calls])
        self.assertEqual([0, 14], [c['exit_code'] for c in calls])
        for call in calls:
            self.assertEqual({'tool', 'argv', 'exit_code', 'seconds',
                              'ended'}, set(call))
            self.assertEqual('vzctl', call['tool'])

    def test_latency_most_specific_key_wins(self):
        self.fixture.set_latency('vzctl', 0.05)
        self.fixture.set_latency('vzctl status', 0.4)
        started = time.monotonic()
        self.vzctl('status', 101)
        self.assertGreaterEqual(time.monotonic() - started, 0.4)
        self.vzctl('mount', 101)
        seconds = [c['seconds'] for c in self.fixture.calls()]
        self.assertGreaterEqual(seconds[0], 0.4)
        self.assertGreaterEqual(seconds[1], 0.05)
        self.assertLess(seconds[1], 0.4)

    def test_faulted_calls_are_logged_with_their_code(self):
        self.fixture.inject_fault('vzctl', command='status', exit_code=5)
        self.vzctl('status', 101)
        self.assertEqual(5, self.fixture.calls()[-1]['exit_code'])


class TestKernelBackend(HostTestCase):

    def test_modelled_when_asked_for(self):
        self.assertEqual('modelled', backends.configured(self.host))
        self.assertIsInstance(backends.for_host(self.host),
                              modelled.ModelledKernel)

    def test_unknown_backend_is_reported(self):
        self.create(101)
        with open(os.path.join(self.host.sim_dir, 'kernel'), 'w') as f:
            f.write('bogus\n')
        rc, _, err = self.vzctl('start', 101)
        self.assertEqual(5, rc)
        self.assertIn("Unknown simulated kernel backend 'bogus'", err)

    def test_modelled_mount_shows_the_tree_at_ve_root(self):
        kernel = modelled.ModelledKernel(self.host)
        tree = self.useFixture(fixtures.TempDir()).path
        root = os.path.join(self.root, 'vz/root/150')
        os.makedirs(root)
        kernel.mount(150, tree, root)
        self.assertEqual(tree, os.readlink(root))
        self.assertTrue(kernel.is_mounted(150))
        kernel.umount(150, root)
        self.assertTrue(os.path.isdir(root) and not os.path.islink(root))
        open(os.path.join(root, 'stray'), 'w').close()
        error = self.assertRaises(base.KernelError, kernel.mount, 150,
                                  tree, root)
        self.assertEqual(50, error.code)


class TestHostInit(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # "simulate init DIR" with no --kernel, as a user runs it.
        self.fixture = self.useFixture(
            sim_fixtures.SimulatedHostFixture(kernel=None))
        self.root = self.fixture.root

    def test_vz_conf_and_samples(self):
        conf = vzconf.read(os.path.join(self.root, 'etc/vz/vz.conf'))
        self.assertEqual(os.path.join(self.root, 'vz/private/$VEID'),
                         conf['VE_PRIVATE'])
        self.assertEqual('vswap-256m', conf['CONFIGFILE'])
        self.assertEqual('ploop', conf['VE_LAYOUT'])
        self.assertEqual('centos-6-x86', conf['DEF_OSTEMPLATE'])
        sample = vzconf.read(os.path.join(
            self.root, 'etc/vz/conf/ve-vswap-1g.conf-sample'))
        self.assertEqual({'PHYSPAGES': '0:1G', 'SWAPPAGES': '0:2G',
                          'DISKSPACE': '2G:2.2G',
                          'DISKINODES': '131072:144179', 'QUOTATIME': '0',
                          'CPUUNITS': '1000', 'NETFILTER': 'stateless'},
                         sample)
        basic = vzconf.read(os.path.join(
            self.root, 'etc/vz/conf/ve-basic.conf-sample'))
        self.assertEqual('14372700:14790164', basic['KMEMSIZE'])

    def test_wrappers_and_driver_options(self):
        for tool in hostinit.TOOLS:
            path = os.path.join(self.root, 'usr/sbin', tool)
            self.assertTrue(os.access(path, os.X_OK), path)
        options = configparser.ConfigParser()
        options.read(os.path.join(self.root, 'nova-openvz.conf'))
        self.assertEqual('openvz.OpenVZDriver',
                         options['DEFAULT']['compute_driver'])
        self.assertEqual({'tools_dir': self.root + '/usr/sbin',
                          'vz_conf': self.root + '/etc/vz/vz.conf',
                          'host_root': self.root,
                          'libvirt_uri': 'test:///%s/libvirt-host.xml'
                          % self.root},
                         {key: value
                          for key, value in options['openvz'].items()
                          if key not in options.defaults()})

    def test_libvirt_host_describes_this_machine(self):
        try:
            import libvirt
        except ImportError:
            self.skipTest('libvirt-python is not installed')
        conn = libvirt.open('test:///%s/libvirt-host.xml' % self.root)
        self.addCleanup(conn.close)
        info = conn.getInfo()
        self.assertEqual(os.cpu_count(), info[2])
        with open('/proc/meminfo') as f:
            total_kb = int(f.readline().split()[1])
        self.assertEqual(total_kb // 1024, info[1])

    def test_auto_is_the_default_backend(self):
        host = hostfs.Host(self.root)
        self.assertFalse(os.path.exists(os.path.join(host.sim_dir, 'kernel')))
        self.assertEqual('auto', backends.configured(host))
        real, _ = realkernel.probe()
        self.assertIsInstance(backends.for_host(host),
                              realkernel.RealKernel if real else
                              modelled.ModelledKernel)

    def test_reinit_keeps_containers_and_edits(self):
        rc, _, err = self.fixture.vzctl('create', 101, '--layout', 'simfs')
        self.assertEqual(0, rc, err)
        vz_conf = os.path.join(self.root, 'etc/vz/vz.conf')
        vzconf.update(vz_conf, {'VE_LAYOUT': 'simfs'})
        paths = hostinit.init_host(self.root)
        self.assertEqual(os.path.join(self.root, 'nova-openvz.conf'),
                         paths['nova_conf'])
        self.assertEqual('simfs', vzconf.read(vz_conf)['VE_LAYOUT'])
        rc, out, _ = self.fixture.vzctl('status', 101)
        self.assertEqual('CTID 101 exist unmounted down\n', out)
