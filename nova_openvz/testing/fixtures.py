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

"""A fresh simulated OpenVZ host, for tests and the sandbox.

The fixture lays out a host in a temporary directory with
``nova-openvz simulate init`` and points the driver's
``[openvz]`` options at it, exactly as DIR/nova-openvz.conf would.
"""

import glob
import json
import os
import subprocess
import sys
import uuid

import fixtures
from oslo_config import fixture as config_fixture

from nova_openvz import conf as openvz_conf
from nova_openvz import privsep


#: Asks the host's kernel backend whether a container is frozen.
_FROZEN = ('import sys\n'
           'from vzsim import hostfs\n'
           'from vzsim.kernel import backends\n'
           'host = hostfs.Host(sys.argv[1])\n'
           'print(backends.for_host(host).is_frozen(int(sys.argv[2])))\n')


class SimulatedHostFixture(fixtures.Fixture):

    def __init__(self, conf=None, kernel='modelled', configure=True):
        """A host whose kernel backend is ``kernel``.

        ``modelled``, ``real`` or ``auto``, passed to ``simulate init
        --kernel``; None leaves it to that command's default (``auto``).
        Test hosts are modelled unless asked otherwise: most tests boot the
        minimal template, which has no shell and so no init that really
        runs (the all-in-one cloud asks for ``auto`` and uploads a busybox
        template when the host runs real containers).  With ``configure``
        False the options are left alone (:meth:`options` gives them):
        two hosts in one process (:mod:`.multihost`) each set their own.
        """
        super().__init__()
        self.conf = conf or openvz_conf.CONF
        self.kernel = kernel
        self.configure = configure

    def _setUp(self):
        self.root = self.useFixture(fixtures.TempDir()).path
        # The real command, in its own process: it inspects this machine
        # (CPUs, memory) to describe the host, which Nova's test base
        # forbids inside a test process.
        kernel = ['--kernel', self.kernel] if self.kernel else []
        subprocess.run([sys.executable, '-m', 'nova_openvz.cmd.cli',
                        'simulate', 'init'] + kernel + [self.root],
                       check=True, capture_output=True)
        self.addCleanup(self._clean_real_containers)
        self.tools_dir = os.path.join(self.root, 'usr', 'sbin')
        if self.configure:
            options = self.useFixture(config_fixture.Config(self.conf))
            options.config(group='openvz', **self.options())

    def options(self):
        """The ``[openvz]`` options that point the driver at this host."""
        return dict(tools_dir=self.tools_dir,
                    vz_conf=os.path.join(self.root, 'etc/vz/vz.conf'),
                    host_root=self.root,
                    libvirt_uri='test:///' + os.path.join(
                        self.root, 'libvirt-host.xml'),
                    image_staging_dir=os.path.join(self.root, 'staging'),
                    lock_retry_interval=0.05)

    def _clean_real_containers(self):
        """Kill, unmount and detach what real containers still hold.

        Runs before the temporary tree is removed, so a failed test cannot
        leave processes, mounts, loop devices or cgroups on the machine.
        In its own process, as Nova's test base forbids looking at
        ``/sys`` and ``/proc`` in a test process.  ``self.cleaned`` is what
        was found; anything still there afterwards fails the cleanup.
        """
        proc = subprocess.run([sys.executable, '-m',
                               'nova_openvz.testing.cleanhost', self.root],
                              check=True, capture_output=True, text=True)
        self.cleaned, left = json.loads(proc.stdout)
        if any(left.values()):
            raise RuntimeError('the real kernel backend leaked %s' % left)

    def kernel_state(self):
        """What the host's containers hold in the kernel now, by kind.

        Mounts under the host's tree for either backend; for the real one
        also its loop devices, cgroups, host network devices and processes
        (``nova_openvz.testing.cleanhost --report``, in its own process for
        the reason :meth:`backend` gives).
        """
        proc = subprocess.run([sys.executable, '-m',
                               'nova_openvz.testing.cleanhost', '--report',
                               self.root],
                              check=True, capture_output=True, text=True)
        return json.loads(proc.stdout)

    def backend(self):
        """The kernel backend the host runs: ``modelled`` or ``real``.

        Asked of ``nova-openvz simulate info`` in its own process: the
        real backend's probe looks at this machine (``platform.machine``),
        which Nova's test base forbids inside a test process.
        """
        proc = subprocess.run([sys.executable, '-m', 'nova_openvz.cmd.cli',
                               'simulate', 'info', self.root],
                              check=True, capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            label, _, value = line.partition(':')
            if label.strip() == 'kernel backend':
                return value.strip()
        raise RuntimeError('simulate info did not name the kernel backend: '
                           '%s' % proc.stdout)

    def frozen(self, ctid):
        """Whether the container's processes are frozen in the kernel.

        vzlist cannot tell: it lists a frozen container as running.  Asked
        in its own process, for the reason :meth:`backend` gives.
        """
        proc = subprocess.run(
            [sys.executable, '-c', _FROZEN, self.root, str(ctid)],
            check=True, capture_output=True, text=True)
        return proc.stdout.strip() == 'True'

    def sim_path(self, name):
        return os.path.join(self.root, 'sim', name)

    def run(self, tool, *args):
        """Run a simulated tool; return ``(exit_code, stdout, stderr)``."""
        proc = subprocess.run([os.path.join(self.tools_dir, tool)] +
                              [str(a) for a in args],
                              capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def inject_fault(self, tool, command=None, call=None, exit_code=1,
                     stdout='', stderr='', ctid=None):
        """Make a matching tool call fail (see design.rst)."""
        path = self.sim_path('faults.json')
        try:
            with open(path) as f:
                rules = json.load(f)
        except FileNotFoundError:
            rules = []
        rule = {'tool': tool, 'exit_code': exit_code, 'stdout': stdout,
                'stderr': stderr}
        for key, value in (('command', command), ('call', call),
                           ('ctid', ctid)):
            if value is not None:
                rule[key] = value
        rules.append(rule)
        with open(path, 'w') as f:
            json.dump(rules, f)

    def set_latency(self, key, seconds):
        path = self.sim_path('latency.json')
        try:
            with open(path) as f:
                latency = json.load(f)
        except FileNotFoundError:
            latency = {}
        latency[key] = seconds
        with open(path, 'w') as f:
            json.dump(latency, f)

    def calls(self):
        """Every tool invocation so far, oldest first."""
        try:
            with open(self.sim_path('calls.log')) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def leftovers(self, ctid):
        """Files a destroyed container ``ctid`` left on the host."""
        patterns = ('etc/vz/conf/%d.*' % ctid, 'vz/private/%d' % ctid,
                    'vz/private/%d.*' % ctid, 'vz/root/%d' % ctid,
                    'vz/lock/%d.*' % ctid, 'vz/dump/Dump.%d' % ctid,
                    'vz/root/nova-*-%d' % ctid, 'vz/root/nova-*-%d.*' % ctid)
        return sorted(path for pattern in patterns
                      for path in glob.glob(os.path.join(self.root, pattern)))

    def all_leftovers(self):
        """Container files of any CT ID, plus staged image downloads."""
        patterns = ('etc/vz/conf/[0-9]*', 'vz/private/*', 'vz/root/*',
                    'vz/lock/*', 'vz/dump/*', 'etc/vz/names/*', 'staging/*')
        return sorted(path for pattern in patterns
                      for path in glob.glob(os.path.join(self.root, pattern)))


class HostWithNovaContainer(fixtures.Fixture):
    """A simulated host, privsep in-process, and one running Nova container.

    ``instance`` is its instance UUID, ``ctid`` its CT ID, ``host`` the
    :class:`SimulatedHostFixture`.
    """

    TEMPLATE = 'nova-test'

    def __init__(self, ctid=101, instance_name=None):
        super().__init__()
        self.ctid = ctid
        self.instance_name = instance_name

    def _setUp(self):
        from nova_openvz import inventory   # imports Nova: only when used
        from vzsim import templates
        self.host = self.useFixture(SimulatedHostFixture())
        self.useFixture(InProcessPrivsep())
        self.useFixture(config_fixture.Config(openvz_conf.CONF)).config(
            group='openvz', state_cache_seconds=60)
        templates.write_minimal_template(os.path.join(
            self.host.root, 'vz/template/cache', self.TEMPLATE + '.tar.gz'))
        self.instance = str(uuid.uuid4())
        for argv in (('create', self.ctid, '--ostemplate', self.TEMPLATE,
                      '--layout', 'simfs', '--diskspace', '1G:1G',
                      '--name', self.instance, '--description',
                      inventory.describe(self.instance, self.instance_name)),
                     ('start', self.ctid, '--wait')):
            code, _, err = self.host.run('vzctl', *argv)
            if code != 0:
                raise RuntimeError('vzctl %s failed: %s' % (argv[0], err))


class InProcessPrivsep(fixtures.Fixture):
    """Run the driver's privileged entrypoints in this (root) process.

    The same idea as Nova's ``PrivsepFixture``, for this package's own
    context; one unit test runs them through a real privsep daemon instead.
    """

    def _setUp(self):
        self.useFixture(fixtures.MockPatchObject(
            privsep.vz_pctxt, 'client_mode', False))
        # os-vif's Open vSwitch plugin has a privileged context of its own.
        from vif_plug_ovs import privsep as ovs_privsep
        self.useFixture(fixtures.MockPatchObject(
            ovs_privsep.vif_plug, 'client_mode', False))
