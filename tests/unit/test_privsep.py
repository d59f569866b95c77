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

"""The privileged side: what it lets nova-compute ask of the host.

The argv grammar is the security boundary between nova-compute and root, so
it is tested both ways: every command line the driver needs is accepted,
and whatever would reach the host itself (CT 0, paths, other tools,
options vzctl has but the driver does not use) is refused.
"""

import json
import os
import resource
import signal
import uuid

import fixtures
import nova.conf  # noqa: F401  (registers [DEFAULT] host for describe())
from oslo_config import fixture as config_fixture
from oslo_privsep import capabilities as caps
from oslo_privsep import priv_context
import testtools

from nova_openvz import conf as openvz_conf
from nova_openvz import inventory
from nova_openvz import privsep
from nova_openvz.privsep import containers as priv_containers
from nova_openvz.privsep import hostpaths
from nova_openvz.privsep import images as priv_images
from nova_openvz.privsep import tools as priv_tools
from nova_openvz.testing import fixtures as sim_fixture
from nova_openvz import vz4

CONF = openvz_conf.CONF
REJECTED = privsep.ArgumentRejected
CAPABILITIES = list(privsep.CAPABILITIES)


class TestVzctlGrammar(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.flags = self.useFixture(config_fixture.Config(CONF))

    def accept(self, *argv):
        priv_tools.validate('vzctl', list(argv))

    def reject(self, *argv):
        self.assertRaises(REJECTED, priv_tools.validate, 'vzctl', list(argv))

    def test_the_driver_command_lines_are_accepted(self):
        instance = str(uuid.uuid4())
        self.accept('--version')
        self.accept('create', '101', '--ostemplate',
                    'debian-12-x86_64-nova-%s' % uuid.uuid4(),
                    '--layout', 'ploop', '--diskspace', '10G:10G',
                    '--name', instance,
                    '--description', inventory.describe(instance),
                    '--hostname', 'web-1.example.org')
        self.accept('set', '101', '--save', '--onboot', 'no',
                    '--stop-timeout', '120', '--ram', '512M', '--swap', '0M',
                    '--cpus', '1', '--cpuunits', '1000', '--cpulimit', '50',
                    '--ioprio', '4', '--numproc', '400')
        self.accept('start', '101', '--wait')
        self.accept('stop', '101', '--fast')
        self.accept('restart', '101', '--wait', '--fast')
        self.accept('destroy', '2147483644')
        self.accept('exec2', '101', '-')

    def test_container_zero_and_reserved_ids_are_refused(self):
        self.reject('set', '0', '--save', '--cpuunits', '1000')
        self.reject('start', '100')
        self.reject('exec2', '1', '-')
        self.reject('destroy', '2147483645')

    def test_ids_below_the_configured_minimum_are_refused(self):
        self.flags.config(group='openvz', min_ctid=1000)
        self.reject('destroy', '999')
        self.accept('destroy', '1000')

    def test_container_names_are_refused_only_ids_pass(self):
        # vzctl would resolve a name through /etc/vz/names.
        self.reject('destroy', str(uuid.uuid4()))
        self.reject('destroy', '-101')
        self.reject('destroy', '101 ')

    def test_unknown_subcommands_and_global_flags_are_refused(self):
        self.reject('enter', '101')
        self.reject('exec', '101', 'id')
        self.reject('runscript', '101', 'x.sh')
        self.reject('--skiplock', 'destroy', '101')
        self.reject('--help')
        self.reject('status')
        self.reject()

    def test_options_outside_the_subcommand_are_refused(self):
        self.reject('start', '101', '--bogus')
        self.reject('stop', '101', '--wait')
        self.reject('destroy', '101', '--force')
        self.reject('set', '101', '--ram=512M')
        self.reject('set', '101', '--applyconfig', 'basic')

    def test_private_and_root_paths_cannot_be_chosen(self):
        self.reject('create', '101', '--ostemplate', 'x', '--private', '/etc')
        self.reject('create', '101', '--ostemplate', 'x', '--root', '/')
        self.reject('set', '101', '--save', '--private', '/etc')

    def test_template_and_config_are_names_not_paths(self):
        self.reject('create', '101', '--ostemplate', '../../../etc/shadow')
        self.reject('create', '101', '--ostemplate', '/tmp/evil')
        self.reject('create', '101', '--config', '/etc/vz/evil')
        self.reject('set', '101', '--ostemplate', 'a/b')
        # Options the driver does not send are refused, even harmless ones.
        self.reject('create', '101', '--config', 'vswap-256m')

    def test_options_need_their_values(self):
        self.reject('set', '101', '--ram')
        self.reject('set', '101', '--ram', '--save')
        self.reject('exec2', '101')

    def test_control_characters_are_refused(self):
        for bad in ('web\n1', 'web1\n', 'a\x00b', 'a\rb', 'x\x1b[2J',
                    'a\x7f'):
            self.reject('set', '101', '--save', '--hostname', bad)
        self.reject('start', '101\n')

    def test_argv_size_is_bounded(self):
        many = ['--nameserver', '192.0.2.1'] * (privsep.MAX_ARGS // 2 - 1)
        self.accept('set', '101', *many)
        self.reject('set', '101', '--save', *many)
        self.reject('set', '101', '--description',
                    'x' * (privsep.MAX_ARG_LEN + 1))

    def test_argv_must_be_a_list_of_strings(self):
        self.assertRaises(REJECTED, priv_tools.validate, 'vzctl',
                          'start 101')
        self.assertRaises(REJECTED, priv_tools.validate, 'vzctl',
                          ['start', 101])


class TestVzlistGrammar(testtools.TestCase):

    def test_listings_the_driver_makes_are_accepted(self):
        fields = ','.join(vz4.LIST_FIELDS)
        priv_tools.validate('vzlist', ['-a', '-j', '-o', fields])
        priv_tools.validate('vzlist', ['-j', '-o', fields, '101', '102'])

    def test_other_words_are_refused(self):
        for argv in (['-o'], ['-o', 'ctid;id'], ['-o', 'CTID'],
                     ['-a', '0'], ['--all'], ['-a', '-d', 'x'],
                     ['-n', 'name'], ['-j', '-o', 'ctid', '-1'],
                     ['-o', 'ctid\n'], ['101\n'], ['-a', '-j'],
                     ['-a', '-H', '-o', 'physpages.l'],
                     ['-j', '-o', 'ctid', '0'],
                     ['-a', '-j', '-o', 'ctid,ip']):
            self.assertRaises(REJECTED, priv_tools.validate, 'vzlist', argv)


class TestRunHostTool(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(sim_fixture.InProcessPrivsep())

    def test_only_vzctl_vzlist_and_ploop_may_run(self):
        for tool in ('vzmigrate', 'sh', '../../bin/sh', None):
            self.assertRaises(REJECTED, priv_tools.run_host_tool,
                              tool, ['--version'], 10)

    def test_a_rejected_argv_runs_nothing(self):
        self.flags = self.useFixture(config_fixture.Config(CONF))
        tools = self.useFixture(fixtures.TempDir()).path
        marker = os.path.join(tools, 'ran')
        script = os.path.join(tools, 'vzctl')
        with open(script, 'w') as f:
            f.write('#!/bin/sh\ntouch %s\n' % marker)
        os.chmod(script, 0o755)
        self.flags.config(group='openvz', tools_dir=tools)
        self.assertRaises(REJECTED, priv_tools.run_host_tool,
                          'vzctl', ['destroy', '0'], 10)
        self.assertFalse(os.path.exists(marker))
        self.assertEqual((0, '', ''),
                         priv_tools.run_host_tool('vzctl', ['--version'], 10))
        self.assertTrue(os.path.exists(marker))


class _OnSimulatedHost(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(sim_fixture.SimulatedHostFixture())
        self.useFixture(sim_fixture.InProcessPrivsep())
        self.staging = CONF.openvz.image_staging_dir
        os.makedirs(self.staging)
        self.cache = os.path.join(self.host.root, 'vz/template/cache')
        self.conf_dir = os.path.join(self.host.root, 'etc/vz/conf')


class TestInstallTemplate(_OnSimulatedHost):

    def stage(self, name='image.part', data=b'template bytes'):
        path = os.path.join(self.staging, name)
        with open(path, 'wb') as f:
            f.write(data)
        return path

    def test_a_staged_image_moves_into_the_template_cache(self):
        source = self.stage()
        priv_images.install_template(source, 'debian-12-nova-abc.tar.gz')
        target = os.path.join(self.cache, 'debian-12-nova-abc.tar.gz')
        with open(target, 'rb') as f:
            self.assertEqual(b'template bytes', f.read())
        self.assertEqual(0o644, os.stat(target).st_mode & 0o777)
        self.assertFalse(os.path.exists(source))
        self.assertEqual(['debian-12-nova-abc.tar.gz'],
                         os.listdir(self.cache))

    def test_only_files_in_the_staging_dir_are_taken(self):
        outside = os.path.join(self.host.root, 'secret')
        with open(outside, 'wb') as f:
            f.write(b'not yours')
        link = os.path.join(self.staging, 'link.part')
        os.symlink(outside, link)
        inner_link = os.path.join(self.staging, 'inner-link.part')
        os.symlink(self.stage(), inner_link)
        os.mkdir(os.path.join(self.staging, 'dir.part'))
        for source in (outside, link, inner_link,
                       os.path.join(self.staging, '..', 'secret'),
                       os.path.join(self.staging, 'dir.part'),
                       os.path.join(self.staging, 'missing.part')):
            self.assertRaises(REJECTED, priv_images.install_template,
                              source, 'x.tar.gz')
        self.assertEqual([], os.listdir(self.cache))
        self.assertTrue(os.path.exists(outside))

    def test_a_hard_link_to_another_file_is_refused(self):
        secret = os.path.join(self.host.root, 'secret')
        with open(secret, 'wb') as f:
            f.write(b'root only')
        os.chmod(secret, 0o600)
        os.link(secret, os.path.join(self.staging, 'linked.part'))
        self.assertRaises(REJECTED, priv_images.install_template,
                          os.path.join(self.staging, 'linked.part'),
                          'x.tar.gz')
        self.assertEqual([], os.listdir(self.cache))

    def test_a_failed_copy_leaves_nothing_in_the_cache(self):
        source = self.stage(data=b'x' * 65536)
        open(os.path.join(self.cache, '.x.tar.gz.partial'), 'w').close()
        # The cache's file system fills up: writes past 4 KiB fail.
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        self.addCleanup(signal.signal, signal.SIGXFSZ, old_handler)
        limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))
        try:
            self.assertRaises(OSError, priv_images.install_template,
                              source, 'x.tar.gz')
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        self.assertEqual([], os.listdir(self.cache))
        self.assertTrue(os.path.exists(source))
        priv_images.install_template(source, 'x.tar.gz')
        self.assertEqual(['x.tar.gz'], os.listdir(self.cache))

    def test_only_template_file_names_are_written(self):
        source = self.stage()
        for name in ('../x.tar.gz', 'sub/x.tar.gz', '.x.tar.gz', 'X.tar.gz',
                     'x.zip', 'x.tar.gz\n', 'x.qcow2', '', None):
            self.assertRaises(REJECTED, priv_images.install_template,
                              source, name)
        self.assertEqual([], os.listdir(self.cache))
        self.assertTrue(os.path.exists(source))
        for name in ('a.tar', 'a-1.0_b.tar.bz2', 'a.tar.xz'):
            priv_images.install_template(self.stage(), name)
        self.assertEqual(['a-1.0_b.tar.bz2', 'a.tar', 'a.tar.xz'],
                         sorted(os.listdir(self.cache)))


class TestRemoveDestroyedConfigs(_OnSimulatedHost):

    def touch(self, name):
        with open(os.path.join(self.conf_dir, name), 'w') as f:
            f.write('X="1"\n')

    def test_only_the_containers_destroyed_files_are_removed(self):
        destroyed = ['101.%s.destroyed' % s
                     for s in hostpaths.DESTROYED_SUFFIXES]
        kept = ['101.conf', '102.conf.destroyed', '101.ext_storage',
                '1010.conf.destroyed']
        for name in destroyed + kept:
            self.touch(name)
        priv_containers.remove_destroyed_configs(101)
        left = set(os.listdir(self.conf_dir))
        self.assertEqual(set(), left & set(destroyed))
        self.assertEqual(set(kept), left & set(kept))

    def test_reserved_ids_are_refused(self):
        self.touch('0.conf.destroyed')
        for ctid in (0, 100, -101, '101/../0'):
            self.assertRaises((REJECTED, ValueError),
                              priv_containers.remove_destroyed_configs, ctid)
        self.assertIn('0.conf.destroyed', os.listdir(self.conf_dir))


def _children(pid):
    children = set()
    for task in os.listdir('/proc/%d/task' % pid):
        with open('/proc/%d/task/%s/children' % (pid, task)) as f:
            children.update(int(p) for p in f.read().split())
    return children


def _caps(pid, kind='CapEff'):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(kind + ':'):
                return int(line.split()[1], 16)
    raise AssertionError('no %s for %d' % (kind, pid))


class TestRealDaemon(testtools.TestCase):
    """One call through a real privsep daemon, as nova-compute makes it."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest('a forked privsep daemon needs root')
        self.host = self.useFixture(sim_fixture.SimulatedHostFixture())
        # A container may run the tests without some capabilities in its
        # bounding set (CAP_SYS_RESOURCE here); the context asks only for
        # what this process may hold.  Its default is set with oslo.config's
        # set_default, which a configuration fixture's reset elsewhere in
        # the run clears: give the module's own choice explicitly.
        bounding = _caps(os.getpid(), 'CapBnd')
        self.granted = [cap for cap in CAPABILITIES if bounding & (1 << cap)]
        self.assertEqual(self.granted, privsep.GRANTED)
        self.useFixture(config_fixture.Config(CONF)).config(
            group='nova_openvz_privsep', capabilities=privsep.GRANTED)
        self.assertTrue(privsep.vz_pctxt.client_mode)
        self.assertIsNone(privsep.vz_pctxt.channel)
        before = _children(os.getpid())
        privsep.vz_pctxt.start(method=priv_context.Method.FORK)
        self.addCleanup(self._stop)
        self.daemons = _children(os.getpid()) - before

    def _stop(self):
        privsep.vz_pctxt.stop()
        for pid in self.daemons:
            os.waitpid(pid, 0)

    def test_vzlist_runs_in_the_daemon_with_reduced_privileges(self):
        self.assertEqual(1, len(self.daemons))
        daemon = list(self.daemons)[0]
        self.assertNotEqual(os.getpid(), daemon)
        # Nothing may run the tool in this process: only the daemon can.
        self.useFixture(fixtures.MockPatchObject(
            priv_tools, '_run', side_effect=AssertionError('ran in client')))

        code, out, err = priv_tools.run_host_tool('vzlist', vz4.list_all(),
                                                  30)

        self.assertEqual(0, code, err)
        self.assertEqual([], json.loads(out))
        self.assertEqual(vz4.list_all(), self.host.calls()[-1]['argv'])
        self.assertIn(caps.CAP_SYS_ADMIN, self.granted)
        self.assertEqual(sum(1 << cap for cap in self.granted),
                         _caps(daemon))
        self.assertNotEqual(_caps(os.getpid()), _caps(daemon))

    def test_the_daemon_refuses_a_bad_argv_too(self):
        self.assertRaises(REJECTED, priv_tools.run_host_tool,
                          'vzctl', ['destroy', '0'], 30)
        self.assertRaises(REJECTED, priv_tools.run_host_tool,
                          'ploop', ['list'], 30)
        self.assertEqual([], self.host.calls())


class TestCapabilitiesTheHostAllows(testtools.TestCase):
    """The helper asks only for capabilities in the bounding set."""

    def test_all_kept_when_the_host_allows_all(self):
        kept, dropped = privsep.available_capabilities(
            CAPABILITIES, bounding=(1 << 41) - 1)
        self.assertEqual(CAPABILITIES, kept)
        self.assertEqual([], dropped)

    def test_sys_resource_missing_from_the_bounding_set_is_dropped(self):
        # This machine's set: everything but CAP_SYS_RESOURCE (24).
        bounding = 0x000001fffeffffff
        kept, dropped = privsep.available_capabilities(CAPABILITIES,
                                                       bounding=bounding)
        self.assertEqual([caps.CAP_SYS_RESOURCE], dropped)
        self.assertEqual([c for c in CAPABILITIES
                          if c != caps.CAP_SYS_RESOURCE], kept)

    def test_bounding_set_read_from_proc_status(self):
        path = self.useFixture(fixtures.TempDir()).join('status')
        with open(path, 'w') as f:
            f.write('Name:\tx\nCapBnd:\t000001fffeffffff\nCapAmb:\t0\n')
        self.assertEqual(0x000001fffeffffff, privsep.bounding_set(path))
        self.assertIsNone(privsep.bounding_set(path + '.absent'))

    def test_unknown_set_keeps_everything(self):
        self.useFixture(fixtures.MockPatch(
            'nova_openvz.privsep.bounding_set', return_value=None))
        self.assertEqual((CAPABILITIES, []),
                         privsep.available_capabilities(CAPABILITIES))

    def test_what_is_lost_is_logged(self):
        logger = self.useFixture(fixtures.FakeLogger())
        privsep.warn_dropped([caps.CAP_SYS_RESOURCE])
        self.assertIn('CAP_SYS_RESOURCE is not in', logger.output)
        self.assertIn('growing the disk of a running container',
                      logger.output)

    def test_the_context_asks_for_what_this_process_may_hold(self):
        bounding = _caps(os.getpid(), 'CapBnd')
        self.assertEqual(
            [c for c in CAPABILITIES if bounding >> c & 1], privsep.GRANTED)
