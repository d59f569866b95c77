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

"""The real kernel backend: containers as namespaced, cgroup-limited trees.

Everything is checked from where it shows: inside running containers
through the real ``vzctl exec``, in the cgroup files and on the host.
The tests need root and the kernel features the backend probes for; they
skip with the reason otherwise.  Each test removes what it made even when
it fails: processes, mounts, loop devices, network devices, cgroups.

Network traffic stays inside the containers' namespaces and a bridge the
test creates, with addresses in 10.213.0.0/16.
"""

import concurrent.futures
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import tarfile
import time

import fixtures
import testtools

from tests import fixtures as sim_fixtures
from vzsim import hostfs
from vzsim.kernel import backends
from vzsim.kernel import cgroups
from vzsim.kernel import ploop
from vzsim.kernel import real as realkernel
from vzsim import templates

REAL, WHY = realkernel.probe()
TEMPLATE = 'busybox-test'
MB = 1024 * 1024
_template_bytes = []


def busybox_template():
    if not _template_bytes:
        _template_bytes.append(templates.busybox_template_bytes())
    return _template_bytes[0]


def ctid_base():
    """The first CTID of this test process.

    Parallel workers must not share veth names: they are global.
    """
    return 100000 + os.getpid() % 100000 * 20


def namespaces_of(pid):
    found = set()
    for kind in realkernel.NAMESPACES:
        try:
            found.add(os.readlink('/proc/%d/ns/%s' % (pid, kind)))
        except OSError:
            pass
    return found


def started_at(pid):
    """When ``pid`` started, in clock ticks since boot (None if gone)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            # The command name may hold spaces and parentheses: split
            # after its closing one. starttime is field 22.
            return int(f.read().rsplit(')', 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def namespace_holders(namespaces, ours, before):
    """Processes in any of ``namespaces``.

    The kernel reuses the numbers of dead namespaces, so a process of
    another simulated host, or any process started after ``before`` (clock
    ticks since boot) outside every simulated container, may hold a number
    that was ours without holding our namespace: those do not count.
    """
    holders = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or not namespaces_of(int(entry)) & namespaces:
            continue
        try:
            with open('/proc/%s/cgroup' % entry) as f:
                text = f.read()
        except OSError:
            continue
        if ours in text:
            holders.append(int(entry))
        elif 'vzsim-' not in text:
            start = started_at(int(entry))
            if start is not None and start <= before:
                holders.append(int(entry))
    return holders


def clock_ticks():
    """Now, in the clock ticks since boot /proc/<pid>/stat counts in."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME)
               * os.sysconf('SC_CLK_TCK'))


class RealKernelTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        if not REAL:
            self.skipTest('real kernel backend unavailable: %s' % WHY)
        if not os.access(templates.BUSYBOX, os.X_OK):
            self.skipTest('no %s (Debian busybox-static) for the guest'
                          % templates.BUSYBOX)
        self.host = self.useFixture(
            sim_fixtures.SimulatedHostFixture(kernel='real'))
        with open(self.host.path('vz/template/cache/%s.tar.gz' % TEMPLATE),
                  'wb') as f:
            f.write(busybox_template())
        self.sim = hostfs.Host(self.host.root)
        self.ctids = []
        self.bridges = []
        self.namespaces = set()
        self.addCleanup(self.force_cleanup)

    # -- helpers -------------------------------------------------------------

    def vzctl(self, *args, expect=0):
        rc, out, err = self.host.vzctl(*args)
        if expect is not None:
            self.assertEqual(expect, rc, 'vzctl %s exited %s\nstdout: %s\n'
                             'stderr: %s' % (' '.join(map(str, args)), rc,
                                             out, err))
        return out, err

    def create(self, n=0, layout='simfs', *args):
        ctid = ctid_base() + n
        self.ctids.append(ctid)
        extra = ['--diskspace', '128M'] if layout == 'ploop' else []
        self.vzctl('create', ctid, '--ostemplate', TEMPLATE, '--layout',
                   layout, '--hostname', 'ct%d' % n, *(extra + list(args)))
        return ctid

    def start(self, ctid):
        self.vzctl('start', ctid)
        self.namespaces |= namespaces_of(self.init_pid(ctid))

    def init_pid(self, ctid):
        return realkernel.RealKernel(self.sim).init_pid(ctid)

    def inside(self, ctid, command, expect=0):
        """``vzctl exec2``: the command's output inside the container."""
        rc, out, err = self.host.vzctl('exec2', ctid, command)
        if expect is not None:
            self.assertEqual(expect, rc, '%r inside CT %d exited %d: %s%s'
                             % (command, ctid, rc, out, err))
        return out.strip()

    def wait_for(self, check, timeout=10, what='condition'):
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                self.fail('timed out waiting for %s' % what)
            time.sleep(0.1)

    def booted(self, ctid):
        """Wait until the guest's boot script has run."""
        def done():
            try:
                with open(self.host.path('var/lib/vzsim/%d.console'
                                         % ctid)) as f:
                    return 'is up' in f.read()
            except FileNotFoundError:
                return False
        self.wait_for(done, what='CT %d to boot' % ctid)

    def group(self, ctid):
        return realkernel.RealKernel(self.sim).group(ctid)

    def destroy(self, *ctids):
        for ctid in ctids:
            self.vzctl('stop', ctid, '--fast')
            self.vzctl('destroy', ctid)

    def bridge(self):
        name = 'vzsb%d' % (os.getpid() % 100000)
        subprocess.run(['ip', 'link', 'add', name, 'type', 'bridge'],
                       check=True)
        self.bridges.append(name)
        subprocess.run(['ip', 'link', 'set', name, 'up'], check=True)
        return name

    def assertNothingLeft(self):
        # The kernel frees a dead container's last references (its mount
        # namespace, hence the loop device) asynchronously: give it time.
        nothing = {'cgroups': [], 'mounts': [], 'loops': [], 'links': [],
                   'processes': []}
        before = clock_ticks()
        ours = realkernel.group_prefix(self.sim)

        def left():
            return (realkernel.leftovers(self.sim, self.ctids),
                    namespace_holders(self.namespaces, ours, before))
        deadline = time.monotonic() + 10
        found = left()
        while found != (nothing, []) and time.monotonic() < deadline:
            time.sleep(0.1)
            found = left()
        self.assertEqual((nothing, []), found)

    def force_cleanup(self):
        """Remove whatever the test left, whatever state it is in."""
        for ctid in self.ctids:
            self.host.vzctl('stop', ctid, '--fast')
            self.host.vzctl('umount', ctid)
        realkernel.clean(self.sim, self.ctids)
        for name in self.bridges:
            subprocess.run(['ip', 'link', 'del', name], check=False)


class TestLifecycle(RealKernelTestCase):

    def test_start_runs_init_as_pid_1_in_its_own_namespaces(self):
        ctid = self.create()
        self.start(ctid)
        self.assertEqual('CTID %d exist mounted running\n' % ctid,
                         self.vzctl('status', ctid)[0])
        pid = self.init_pid(ctid)
        with open('/proc/%d/comm' % pid) as f:
            self.assertEqual('init', f.read().strip())
        self.assertTrue(namespaces_of(pid).isdisjoint(
            namespaces_of(os.getpid())))
        self.assertEqual('init', self.inside(ctid, 'cat /proc/1/comm'))
        with open('/proc/%d/cgroup' % pid) as f:
            self.assertIn(str(ctid), f.read())
        # VE_ROOT is its root: the host's tree is out of sight.
        self.assertIn('nova-openvz busybox',
                      self.inside(ctid, 'cat /etc/os-release'))
        self.inside(ctid, 'test -e %s' % shlex.quote(self.host.root),
                    expect=1)
        self.booted(ctid)
        self.assertEqual('ct0', self.inside(ctid, 'hostname'))

    def test_what_is_typed_on_the_console_runs_in_the_guest_shell(self):
        ctid = self.create()
        self.start(ctid)
        self.booted(ctid)
        proc = subprocess.Popen(
            [os.path.join(self.host.tools_dir, 'vzctl'), 'console',
             str(ctid)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.addCleanup(proc.communicate)
        self.addCleanup(proc.kill)
        self.assertIn(b'Attached to CT', proc.stderr.readline())
        # Enter is CR on a terminal; the shell reads a line.
        proc.stdin.write(b'echo typed-$((6*7))\r')
        proc.stdin.flush()
        seen = []

        def output():
            if select.select([proc.stdout], [], [], 0.1)[0]:
                seen.append(os.read(proc.stdout.fileno(), 4096))
            return b'typed-42\n' in b''.join(seen)
        self.wait_for(output, what='the typed command to run')
        proc.stdin.write(b'\x1b.')
        proc.stdin.flush()
        self.assertEqual(0, proc.wait(10))
        with open(self.host.path('var/lib/vzsim/%d.console' % ctid)) as f:
            self.assertIn('typed-42\n', f.read())

    def test_exec_joins_arguments_and_maps_exit_codes(self):
        ctid = self.create()
        self.start(ctid)
        rc, out, _ = self.host.vzctl('exec', ctid, 'echo', 'a', '|', 'tr',
                                     'a', 'b')
        self.assertEqual((0, 'b\n'), (rc, out))
        self.assertEqual(8, self.host.vzctl('exec', ctid, 'false')[0])
        self.assertEqual(7, self.host.vzctl('exec2', ctid, 'exit 7')[0])
        rc, out, _ = self.host.vzctl('enter', ctid, '--exec', 'echo', 'hi')
        self.assertEqual((0, 'hi'), (rc, out.splitlines()[1]))
        script = self.host.path('script.sh')
        with open(script, 'w') as f:
            f.write('echo from-script $(hostname)\nexit 3\n')
        rc, out, _ = self.host.vzctl('runscript', ctid, script)
        self.assertEqual((3, 'from-script ct0\n'), (rc, out))
        self.assertEqual(11, self.host.vzctl('runscript', ctid,
                                             script + '.missing')[0])

    def test_graceful_stop_halts_init_and_cleans_up(self):
        ctid = self.create()
        self.start(ctid)
        self.booted(ctid)
        self.vzctl('stop', ctid)
        self.assertEqual('CTID %d exist unmounted down\n' % ctid,
                         self.vzctl('status', ctid)[0])
        with open(self.host.path('var/lib/vzsim/%d.console' % ctid)) as f:
            self.assertIn('halts', f.read())   # its shutdown script ran
        self.assertFalse(self.group(ctid).exists())
        self.vzctl('destroy', ctid)
        self.assertNothingLeft()

    def test_stop_kills_a_container_that_ignores_halt(self):
        ctid = self.create()
        self.vzctl('set', ctid, '--stop-timeout', '1', '--save')
        # An init that ignores every signal it can.
        with open(self.host.path('vz/private/%d/etc/inittab' % ctid),
                  'w') as f:
            f.write('::sysinit:/bin/sh -c "trap \\"\\" TERM USR1 USR2 INT; '
                    'exec sleep 1000"\n')
        os.unlink(self.host.path('vz/private/%d/sbin/init' % ctid))
        with open(self.host.path('vz/private/%d/sbin/init' % ctid),
                  'w') as f:
            f.write('#!/bin/sh\ntrap "" TERM USR1 USR2 INT HUP\n'
                    'while :; do sleep 1; done\n')
        os.chmod(self.host.path('vz/private/%d/sbin/init' % ctid), 0o755)
        self.start(ctid)
        started = time.monotonic()
        self.vzctl('stop', ctid)
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual('CTID %d exist unmounted down\n' % ctid,
                         self.vzctl('status', ctid)[0])

    def test_status_and_vzlist_follow_the_real_processes(self):
        ctid = self.create()
        self.start(ctid)
        self.booted(ctid)
        out = self.host.run('vzlist', '-H', '-o', 'numproc', ctid)[1]
        count = int(out)
        self.inside(ctid, 'sleep 100 >/dev/null 2>&1 &')
        out = self.host.run('vzlist', '-H', '-o', 'numproc', ctid)[1]
        self.assertEqual(count + 1, int(out))
        out = self.host.run('vzlist', '-H', '-o', 'physpages,uptime',
                            ctid)[1].split()
        self.assertGreater(int(out[0]), 0)
        with open(self.host.path('proc/vz/veinfo')) as f:
            self.assertIn('%10d %5d %5d' % (ctid, 0, count + 1), f.read())
        # The container dies on its own: status and vzlist see it at once.
        os.kill(self.init_pid(ctid), signal.SIGKILL)
        self.wait_for(lambda: not self.group(ctid).exists(),
                      what='the supervisor to reap CT %d' % ctid)
        self.assertEqual('CTID %d exist mounted down\n' % ctid,
                         self.vzctl('status', ctid)[0])
        out = self.host.run('vzlist', '-H', '-a', '-o', 'status', ctid)[1]
        self.assertEqual('mounted', out.strip())
        self.vzctl('umount', ctid)
        self.vzctl('destroy', ctid)
        self.assertNothingLeft()

    def test_a_container_sees_only_its_own_processes_files_and_devices(self):
        one, two = self.create(0), self.create(1)
        self.start(one)
        self.start(two)
        self.inside(one, 'touch /root/only-in-one; sleep 200 >/dev/null '
                         '2>&1 &')
        self.assertNotIn('sleep 200', self.inside(two, 'ps'))
        # Its uptime counts from its start, not the host's boot.
        with open('/proc/uptime') as f:
            host_uptime = float(f.read().split()[0])
        uptime = float(self.inside(one, 'cat /proc/uptime').split()[0])
        self.assertLess(uptime, min(60.0, host_uptime))
        self.inside(two, 'test -e /root/only-in-one', expect=1)
        self.assertNotIn(self.host.root, self.inside(two, 'cat /proc/mounts'))
        # It may make a node, but only use the devices it was given.
        self.inside(two, 'mknod /tmp/kmsg c 1 11 && '
                         'head -c1 /tmp/kmsg >/dev/null', expect=1)
        self.assertEqual('ok', self.inside(two, 'echo ok > /dev/null && '
                                                'echo ok'))
        self.inside(two, 'test -e /dev/net/tun', expect=1)
        self.vzctl('set', two, '--devnodes', 'net/tun:rw', '--save')
        self.inside(two, 'test -c /dev/net/tun')
        with open(self.group(two).path('devices', 'devices.list')) as f:
            self.assertIn('c 10:200 rw', f.read())


class TestLimits(RealKernelTestCase):

    def test_memory_cpu_and_numproc_limits_apply_live(self):
        ctid = self.create(0, 'simfs', '--config', 'vswap-256m')
        self.vzctl('set', ctid, '--ram', '64M', '--swap', '32M', '--cpus',
                   '1', '--cpulimit', '50', '--cpuunits', '2000',
                   '--numproc', '300', '--save')
        self.start(ctid)
        pid = self.init_pid(ctid)
        limit = 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes'
        self.assertEqual(str(64 * MB), self.inside(ctid, limit))
        self.assertEqual('1', self.inside(ctid, 'nproc'))
        cpuinfo = 'grep -c ^processor /proc/cpuinfo'
        self.assertEqual('1', self.inside(ctid, cpuinfo))
        self.assertEqual('50000', self.inside(
            ctid, 'cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us'))
        self.assertEqual('2048', self.inside(
            ctid, 'cat /sys/fs/cgroup/cpu/cpu.shares'))
        self.assertEqual('300', self.inside(
            ctid, 'cat /sys/fs/cgroup/pids/pids.max'))
        # Live, without a restart.
        self.vzctl('set', ctid, '--ram', '96M', '--cpus', '2', '--cpulimit',
                   '0', '--save')
        self.assertEqual(str(96 * MB), self.inside(ctid, limit))
        self.assertEqual(str(min(2, os.cpu_count())),
                         self.inside(ctid, 'nproc'))
        self.assertEqual(str(min(2, os.cpu_count())),
                         self.inside(ctid, cpuinfo))
        self.assertEqual('-1', self.inside(
            ctid, 'cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us'))
        self.assertEqual(pid, self.init_pid(ctid))
        self.assertIn('PHYSPAGES="0:24576"', self.host.conf_text(ctid))
        # The container cannot raise its own limit.
        self.inside(ctid, 'echo -1 > /sys/fs/cgroup/memory/'
                          'memory.limit_in_bytes', expect=1)
        out = self.host.run('vzlist', '-H', '-o', 'physpages.l', ctid)[1]
        self.assertEqual(24576, int(out))

    def test_ploop_disk_is_a_loop_mounted_ext4_image(self):
        ctid = self.create(0, 'ploop')
        image = self.host.path('vz/private/%d/root.hdd/root.hdd' % ctid)
        self.assertTrue(ploop.is_filesystem_image(image))
        self.assertLess(os.stat(image).st_blocks * 512, 64 * MB)   # sparse
        self.start(ctid)
        device, point = ploop.loop_of(image)
        self.assertEqual(self.host.path('vz/root/%d' % ctid), point)
        size_kb = int(self.inside(ctid, 'df -k /').splitlines()[1].split()[1])
        self.assertGreater(size_kb, 128 * 1024 * 0.85)
        self.assertLessEqual(size_kb, 128 * 1024)
        self.inside(ctid, 'echo data > /root/file')
        if ploop.can_resize_online():
            self.vzctl('set', ctid, '--diskspace', '192M', '--save')
        else:
            _, err = self.vzctl('set', ctid, '--diskspace', '192M', '--save',
                                expect=154)
            self.assertIn('CAP_SYS_RESOURCE', err)
            self.vzctl('stop', ctid, '--fast')
            self.vzctl('set', ctid, '--diskspace', '192M', '--save')
            self.start(ctid)
        size_kb = int(self.inside(ctid, 'df -k /').splitlines()[1].split()[1])
        self.assertGreater(size_kb, 192 * 1024 * 0.85)
        self.assertEqual('data', self.inside(ctid, 'cat /root/file'))
        out = self.host.run('vzlist', '-H', '-o', 'diskspace.h', ctid)[1]
        self.assertEqual(192 * 1024, int(out))
        # I/O limits throttle the container's loop device, live.
        self.vzctl('set', ctid, '--iolimit', '10M', '--iopslimit', '100',
                   '--save')
        device, _ = ploop.loop_of(image)
        rdev = os.stat(device).st_rdev
        number = '%d:%d' % (os.major(rdev), os.minor(rdev))
        group = self.group(ctid)
        with open(group.path('blkio', 'blkio.throttle.read_bps_device')) as f:
            self.assertIn('%s %d' % (number, 10 * MB), f.read())
        with open(group.path('blkio',
                             'blkio.throttle.write_iops_device')) as f:
            self.assertIn('%s 100' % number, f.read())
        self.vzctl('stop', ctid, '--fast')
        self.assertEqual((None, None), ploop.loop_of(image))
        self.vzctl('destroy', ctid)
        self.assertNothingLeft()


class TestFreezer(RealKernelTestCase):

    def test_a_suspended_container_does_not_run(self):
        ctid = self.create()
        self.start(ctid)
        tick = self.host.path('vz/root/%d/tmp/tick' % ctid)
        self.inside(ctid, 'i=0; while :; do i=$((i+1)); echo $i > /tmp/tick;'
                          ' usleep 20000; done >/dev/null 2>&1 &')

        def count():
            try:
                with open(tick) as f:
                    return int(f.read() or 0)
            except (OSError, ValueError):
                return 0
        self.wait_for(count, what='the counter')
        self.vzctl('chkpnt', ctid, '--suspend')
        self.assertEqual('FROZEN', self.group(ctid).freezer_state())
        frozen = count()
        time.sleep(0.3)
        self.assertEqual(frozen, count())
        out = self.host.run('vzlist', '-H', '-o', 'status', ctid)[1]
        self.assertEqual('running', out.strip())
        self.vzctl('chkpnt', ctid, '--resume')
        self.wait_for(lambda: count() > frozen, what='the counter to move')

    def test_checkpoint_records_state_and_restore_boots_again(self):
        ctid = self.create()
        self.vzctl('set', ctid, '--ipadd', '10.213.200.1', '--save')
        self.start(ctid)
        first = self.init_pid(ctid)
        self.vzctl('chkpnt', ctid)
        self.assertEqual('CTID %d exist unmounted down suspended\n' % ctid,
                         self.vzctl('status', ctid)[0])
        with open(self.host.path('vz/dump/Dump.%d' % ctid)) as f:
            self.assertIn('not a memory image', f.read())
        self.vzctl('restore', ctid)
        self.assertNotEqual(first, self.init_pid(ctid))
        self.assertIn('10.213.200.1', self.inside(ctid, 'ip addr'))
        self.destroy(ctid)
        self.assertNothingLeft()


class TestNetwork(RealKernelTestCase):

    def interfaces(self, ctid, address):
        with open(self.host.path('vz/private/%d/etc/network/interfaces'
                                 % ctid), 'a') as f:
            f.write('auto eth0\niface eth0 inet static\n\taddress %s\n'
                    '\tnetmask 255.255.255.0\n' % address)

    def test_two_containers_on_one_bridge_reach_each_other(self):
        bridge = self.bridge()
        one, two = self.create(0), self.create(1)
        for ctid, address in ((one, '10.213.0.1'), (two, '10.213.0.2')):
            self.interfaces(ctid, address)
            self.vzctl('set', ctid, '--netif_add', 'eth0,,,,%s' % bridge,
                       '--save')
            self.start(ctid)
            self.booted(ctid)
        host_end = 'veth%d.0' % one
        self.assertTrue(os.path.exists('/sys/class/net/%s/master' % host_end))
        self.assertEqual(bridge, os.path.basename(os.readlink(
            '/sys/class/net/%s/master' % host_end)))
        mac = self.host.ct_conf(one)['NETIF'].split('mac=')[1][:17]
        self.assertIn(mac.lower(), self.inside(one, 'ip link show eth0'))
        self.inside(one, 'ping -c 1 -W 2 10.213.0.2')
        self.destroy(one, two)
        self.assertNothingLeft()

    def test_missing_bridge_warns_and_start_goes_on(self):
        # Issue 13 item 10: vzctl's bridge script (vznetcfg) ignores a
        # failed brctl addif; the device comes up unbridged.
        ctid = self.create()
        self.vzctl('set', ctid, '--netif_add', 'eth0,,,,vzsnobridge0',
                   '--save')
        out, err = self.vzctl('start', ctid)
        self.namespaces |= namespaces_of(self.init_pid(ctid))
        self.assertIn('bridge vzsnobridge0 does not exist!\n', err)
        host_end = 'veth%d.0' % ctid
        self.assertTrue(os.path.exists('/sys/class/net/%s' % host_end))
        self.assertFalse(os.path.exists('/sys/class/net/%s/master'
                                        % host_end))
        self.assertIn('eth0', self.inside(ctid, 'ip link show eth0'))
        self.destroy(ctid)
        self.assertNothingLeft()

    def test_venet_addresses_and_host_routes(self):
        ctid = self.create()
        self.vzctl('set', ctid, '--ipadd', '10.213.100.1', '--save')
        self.start(ctid)
        self.assertIn('inet 10.213.100.1/32',
                      self.inside(ctid, 'ip addr show venet0'))
        self.assertIn('default dev venet0', self.inside(ctid, 'ip route'))
        routes = subprocess.run(['ip', 'route', 'show', 'dev',
                                 realkernel.venet_name(self.sim, ctid)],
                                capture_output=True, text=True,
                                check=True).stdout
        self.assertIn('10.213.100.1', routes)
        self.vzctl('set', ctid, '--ipadd', '10.213.100.2', '--ipdel',
                   '10.213.100.1', '--save')
        addresses = self.inside(ctid, 'ip addr show venet0')
        self.assertIn('10.213.100.2', addresses)
        self.assertNotIn('10.213.100.1/', addresses)
        with open(self.host.path('proc/vz/veinfo')) as f:
            self.assertIn('10.213.100.2', f.read())
        self.destroy(ctid)
        self.assertNothingLeft()

    def test_hostname_dns_and_password_are_written_inside(self):
        ctid = self.create()
        self.start(ctid)
        self.vzctl('set', ctid, '--hostname', 'renamed.example.test',
                   '--nameserver', '10.213.9.9', '--searchdomain',
                   'example.test', '--userpasswd', 'root:s3cret', '--save')
        self.assertEqual('renamed.example.test',
                         self.inside(ctid, 'hostname'))
        self.assertEqual('renamed.example.test',
                         self.inside(ctid, 'cat /etc/hostname'))
        resolv = self.inside(ctid, 'cat /etc/resolv.conf')
        self.assertIn('nameserver 10.213.9.9', resolv)
        self.assertIn('search example.test', resolv)
        hashed = self.inside(ctid, 'grep ^root: /etc/shadow').split(':')[1]
        kind, salt = hashed.split('$')[1:3]
        # The guest's own crypt(3) hash of the password.
        self.assertEqual(hashed, self.inside(
            ctid, 'mkpasswd -m %s s3cret %s' % (
                {'5': 'sha256', '6': 'sha512', '1': 'md5'}[kind], salt)))
        # A stopped container is mounted for the password change only.
        self.vzctl('stop', ctid, '--fast')
        self.vzctl('set', ctid, '--userpasswd', 'guest:pw2')
        with open(self.host.path('vz/private/%d/etc/shadow' % ctid)) as f:
            entry = [ln for ln in f if ln.startswith('guest:')][0]
        self.assertTrue(entry.split(':')[1].startswith('$'), entry)


class TestSnapshots(RealKernelTestCase):

    def test_snapshots_are_point_in_time_copies_of_the_disk(self):
        ctid = self.create(0, 'ploop')
        self.start(ctid)
        self.inside(ctid, 'echo one > /root/f')
        self.vzctl('snapshot', ctid, '--name', 'first')
        guid = self.vzctl('snapshot-list', ctid, '-H', '-o',
                          'uuid')[0].strip()
        image = self.host.path('vz/private/%d/root.hdd/root.hdd.%s'
                               % (ctid, guid))
        self.assertTrue(ploop.is_filesystem_image(image))
        self.inside(ctid, 'echo two > /root/f')
        self.vzctl('snapshot-switch', ctid, '--id', guid)
        self.assertEqual('one', self.inside(ctid, 'cat /root/f'))
        self.inside(ctid, 'echo three > /root/f')
        self.vzctl('snapshot-delete', ctid, '--id', guid)
        self.assertFalse(os.path.exists(image))
        self.assertEqual('three', self.inside(ctid, 'cat /root/f'))
        self.destroy(ctid)
        self.assertNothingLeft()


def bind_mount_script(source, target):
    """A ``<CTID>.mount`` action script binding ``source`` read-only.

    As an operator writes one (reference section 4): run on the host at
    mount and start with VEID and VE_CONFFILE in the environment, it reads
    VE_ROOT from the container's config and mounts under it.
    """
    return ('#!/bin/sh\n'
            'set -e\n'
            '[ -n "$VEID" ] && [ -f "$VE_CONFFILE" ]\n'
            '. "$VE_CONFFILE"\n'
            'mkdir -p "$VE_ROOT%(target)s"\n'
            'mount --bind -o ro %(source)s "$VE_ROOT%(target)s"\n'
            % {'source': shlex.quote(source), 'target': target})


def write_mount_script(host, ctid, text):
    path = host.path('etc/vz/conf/%d.mount' % ctid)
    with open(path, 'w') as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


class TestActionScripts(RealKernelTestCase):

    def test_mount_script_binds_a_host_directory_read_only(self):
        ctid = self.create(layout='ploop')
        shared = self.useFixture(_TempDir()).path
        with open(os.path.join(shared, 'hello'), 'w') as f:
            f.write('from the host\n')
        write_mount_script(self.host, ctid,
                           bind_mount_script(shared, '/config-drive'))
        inner = os.path.join(self.sim.ve_root(ctid), 'config-drive')
        self.start(ctid)
        self.assertEqual('from the host',
                         self.inside(ctid, 'cat /config-drive/hello'))
        self.assertIn('Read-only', self.host.vzctl(
            'exec2', ctid, 'touch /config-drive/new')[2])
        self.assertEqual(['hello'], os.listdir(shared))
        # vzctl stop unmounts VE_ROOT with the bind mount under it.
        self.vzctl('stop', ctid)
        self.assertFalse(realkernel.is_mount_point(inner))
        # vzctl mount runs the script again.
        self.vzctl('mount', ctid)
        self.assertTrue(realkernel.is_mount_point(inner))
        self.vzctl('umount', ctid)
        self.vzctl('destroy', ctid)
        self.assertEqual(['hello'], os.listdir(shared))
        self.assertNothingLeft()

    def test_failing_mount_script_fails_start_with_79(self):
        ctid = self.create()
        write_mount_script(self.host, ctid, '#!/bin/sh\nexit 3\n')
        _, err = self.vzctl('start', ctid, expect=79)
        self.assertIn('%d.mount' % ctid, err)
        self.assertEqual('CTID %d exist unmounted down\n' % ctid,
                         self.vzctl('status', ctid)[0])


class TestHygiene(RealKernelTestCase):

    def test_twenty_containers_start_and_stop_concurrently(self):
        count = 20
        self.assertNothingLeft()
        ctids = [self.create(n) for n in range(count)]
        pool = concurrent.futures.ThreadPoolExecutor(count)
        self.addCleanup(pool.shutdown)

        def each(*args):
            results = list(pool.map(lambda ctid: self.host.vzctl(
                args[0], ctid, *args[1:]), ctids))
            self.assertEqual([0] * count, [r[0] for r in results], results)
        each('start')
        for ctid in ctids:
            self.namespaces |= namespaces_of(self.init_pid(ctid))
        out = self.host.run('vzlist', '-H', '-o', 'ctid')[1].split()
        self.assertEqual(sorted(ctids), sorted(int(c) for c in out))
        self.assertEqual(count, len({self.init_pid(c) for c in ctids}))
        each('stop')
        self.assertEqual('', self.host.run('vzlist', '-H')[1])
        each('destroy')
        self.assertNothingLeft()


class TestCgroups(testtools.TestCase):
    """The cgroup module on the layouts this machine has."""

    def test_v2_core_group_holds_and_freezes_processes(self):
        if os.geteuid() != 0 or cgroups.V2.root() is None:
            self.skipTest('needs root and a cgroup2 hierarchy')
        group = cgroups.V2('vzsim-test-%d' % os.getpid())
        os.makedirs(group.path())
        self.addCleanup(group.remove)
        child = subprocess.Popen(['sleep', '30'])
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        group.join(child.pid)
        self.assertEqual([child.pid], group.pids())
        group.freeze()
        self.assertTrue(group.frozen())
        group.thaw()
        self.assertFalse(group.frozen())

    def test_names_and_layout(self):
        layout, why = cgroups.layout()
        if layout is None:
            self.assertTrue(why)
        else:
            self.assertIn(layout.VERSION, (1, 2))
        self.assertEqual([], cgroups.names('vzsim-no-such-prefix-'))


class TestTemplate(testtools.TestCase):

    def test_busybox_template_has_init_shell_and_boot_script(self):
        if not os.access(templates.BUSYBOX, os.X_OK):
            self.skipTest('no %s' % templates.BUSYBOX)
        import io
        with tarfile.open(fileobj=io.BytesIO(busybox_template())) as tar:
            members = {m.name: m for m in tar.getmembers()}
        self.assertEqual('../bin/busybox', members['sbin/init'].linkname)
        self.assertEqual('busybox', members['bin/sh'].linkname)
        self.assertIn('etc/init.d/rcS', members)
        self.assertEqual('::sysinit:/etc/init.d/rcS', tar_text(
            busybox_template(), 'etc/inittab').splitlines()[0])

    def test_busybox_template_from_the_debian_package(self):
        cache = '/var/cache/apt/archives'
        debs = [name for name in os.listdir(cache)
                if name.startswith('busybox-static_')] \
            if os.path.isdir(cache) else []
        if not debs:
            self.skipTest('no busybox-static .deb in %s' % cache)
        out = self.useFixture(_TempDir()).path
        binary = templates.busybox_from_deb(os.path.join(cache, debs[0]),
                                            out)
        with open(binary, 'rb') as f:
            self.assertEqual(b'\x7fELF', f.read(4))

    def test_simulate_info_says_which_backend_and_why(self):
        host = self.useFixture(sim_fixtures.SimulatedHostFixture(kernel=None))

        def cli(*args):
            return subprocess.run(
                [sys.executable, '-m', 'nova_openvz.cmd.cli', 'simulate'] +
                list(args), capture_output=True, text=True,
                check=True).stdout
        out = cli('info', host.root)
        self.assertIn('kernel backend: %s\n' % backends.choose(
            hostfs.Host(host.root))[0], out)
        self.assertIn('real backend here: %s' % (
            'possible' if REAL else 'impossible'), out)
        # Without --kernel the host runs auto, and says it is the default.
        self.assertIn('configured: auto\n', out)
        self.assertIn('why: auto is asked for (the default)', out)
        cli('init', host.root, '--kernel', 'auto')
        with open(host.sim_path('kernel')) as f:
            self.assertEqual('auto\n', f.read())
        out = cli('info', host.root)
        self.assertIn('kernel backend: %s\n' % (
            'real' if REAL else 'modelled'), out)
        self.assertIn('why: auto is asked for (DIR/sim/kernel)', out)
        self.assertIn('checkpoint: ', out)
        cli('init', host.root, '--kernel', 'modelled')
        out = cli('info', host.root)
        self.assertIn('kernel backend: modelled\n', out)
        self.assertIn('why: modelled is asked for (DIR/sim/kernel)', out)


def tar_text(data, name):
    import io
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.extractfile(name).read().decode()


def _TempDir():
    import fixtures
    return fixtures.TempDir()


class TestVisibleCpuinfo(testtools.TestCase):
    """What /proc/cpuinfo a container limited to some CPUs reads."""

    def test_only_the_cpuset_s_cpus_numbered_from_zero(self):
        path = self.useFixture(fixtures.TempDir()).join('cpuinfo')
        with open(path, 'w') as f:
            f.write(''.join('processor\t: %d\nmodel name\t: cpu %d\n'
                            'core id\t\t: %d\n\n' % (n, n, n)
                            for n in range(4)))
        shown = realkernel.visible_cpuinfo([1, 3], path)
        self.assertEqual(['0', '1'], re.findall(
            r'^processor\s*: (\d+)$', shown, re.M))
        self.assertEqual(['cpu 1', 'cpu 3'], re.findall(
            r'^model name\s*: (.*)$', shown, re.M))
        self.assertTrue(shown.endswith('\n\n'))
