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

"""``nova-openvz check`` on a fresh simulated host, then broken ones."""

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from unittest import mock

import fixtures
import nova.conf
from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import check
from nova_openvz import privsep  # noqa: F401  (registers its section)
from nova_openvz.privsep import vzconf
from nova_openvz.testing import fixtures as sim_fixture

CONF = nova.conf.CONF


def _shim_importable():
    try:
        from nova.virt import openvz  # noqa: F401
    except ImportError:
        return False
    return True


SHIM_SKIP = ('nova.virt.openvz is not importable here (editable install?); '
             'install the package as a wheel')


class _CheckTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(sim_fixture.SimulatedHostFixture())
        self.flags = self.useFixture(config_fixture.Config(CONF)).config
        self.flags(compute_driver='openvz.OpenVZDriver')
        # nova-compute started with sudo privsep-helper: no rootwrap
        # config to read on a test machine.
        self.flags(group='workarounds', disable_rootwrap=True)
        self.root = self.host.root

    def results(self):
        return dict(check.run_checks())

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def assertFails(self, name, text, hint=None):
        result = self.results()[name]
        self.assertEqual(check.FAILURE, result.status, result)
        self.assertIn(text, result.message)
        self.assertTrue(result.hint, 'a failure must carry a hint')
        if hint:
            self.assertIn(hint, result.hint)
        return result

    def set_vz_conf(self, **changes):
        vzconf.update(self.path('etc/vz/vz.conf'), changes)


class TestFreshSimulatedHost(_CheckTest):

    def test_every_check_passes(self):
        if not _shim_importable():
            self.skipTest(SHIM_SKIP)
        results = check.run_checks()
        self.assertEqual([name for name, _c in check.CHECKS],
                         [name for name, _r in results])
        for name, result in results:
            self.assertEqual(check.PASS, result.status,
                             '%s: %s' % (name, result))
        out = io.StringIO()
        self.assertEqual(0, check.report(results, out))
        lines = out.getvalue().splitlines()
        self.assertEqual(len(check.CHECKS) + 1, len(lines))
        self.assertTrue(all(line.startswith('PASS ') for line in lines[:-1]))
        self.assertEqual('%d passed, 0 warnings, 0 failures'
                         % len(check.CHECKS), lines[-1])

    def test_kernel_is_judged_from_host_root(self):
        result = self.results()['OpenVZ kernel']
        self.assertEqual(check.PASS, result.status)
        self.assertIn(self.path('proc', 'vz'), result.message)

    def test_running_containers_are_counted(self):
        with open(self.path('proc/vz/veinfo'), 'a') as f:
            f.write('%10u %5u %5u\n' % (101, 0, 3))
        self.assertIn('1 containers running',
                      self.results()['OpenVZ kernel'].message)


class TestBrokenHost(_CheckTest):

    def test_no_openvz_kernel(self):
        shutil.rmtree(self.path('proc', 'vz'))
        self.assertFails('OpenVZ kernel', 'does not exist',
                         hint='boot an OpenVZ kernel')

    def test_no_veinfo(self):
        os.unlink(self.path('proc/vz/veinfo'))
        self.assertFails('OpenVZ kernel', 'veinfo', hint='vzmon')

    def test_no_beancounters_warns(self):
        os.unlink(self.path('proc/user_beancounters'))
        self.assertEqual(check.WARNING,
                         self.results()['OpenVZ kernel'].status)

    def test_vzctl_removed(self):
        os.unlink(self.path('usr/sbin/vzctl'))
        results = self.results()
        self.assertFails('Host tools', 'vzctl', hint='install the OpenVZ')
        self.assertEqual(check.FAILURE, results['vzctl version'].status)
        self.assertEqual(check.FAILURE, check.exit_code(results.items()))

    def test_ploop_needed_only_for_ploop(self):
        os.unlink(self.path('usr/sbin/ploop'))
        self.assertFails('Host tools', 'ploop')
        self.flags(group='openvz', layout='simfs')
        self.assertEqual(check.WARNING, self.results()['Host tools'].status)

    def test_vzctl_version_unreadable(self):
        with open(self.path('usr/sbin/vzctl'), 'w') as f:
            f.write('#!/bin/sh\necho "something else"\n')
        self.assertFails('vzctl version', 'something else',
                         hint='vzctl version X.Y')

    def test_old_vzctl_has_no_ploop(self):
        with open(self.path('usr/sbin/vzctl'), 'w') as f:
            f.write('#!/bin/sh\necho "vzctl version 3.3"\n')
        result = self.results()['vzctl version']
        self.assertEqual(check.WARNING, result.status)
        self.assertIn('layout = simfs', result.hint)

    def test_vz_conf_missing(self):
        os.unlink(self.path('etc/vz/vz.conf'))
        self.assertFails('vz.conf', 'does not exist', hint='vz_conf')

    def test_vz_conf_paths_corrupt(self):
        self.set_vz_conf(VE_PRIVATE='/nonexistent/private/$VEID',
                         LOCKDIR='/nonexistent/lock')
        result = self.assertFails('vz.conf', '/nonexistent/private')
        self.assertIn('LOCKDIR=/nonexistent/lock', result.message)

    def test_vz_conf_key_missing(self):
        vzconf.update(self.path('etc/vz/vz.conf'), {}, remove=('VE_ROOT',))
        self.assertFails('vz.conf', 'does not set VE_ROOT')

    def test_no_template_cache(self):
        shutil.rmtree(self.path('vz/template/cache'))
        self.assertFails('Template cache', 'does not exist', hint='mkdir')

    def test_template_cache_space(self):
        stat = os.statvfs(self.path('vz/template/cache'))
        for free, status in ((100 * 1024 ** 2, check.FAILURE),
                             (2 * 1024 ** 3, check.WARNING),
                             (50 * 1024 ** 3, check.PASS)):
            fake = mock.Mock(f_frsize=stat.f_frsize,
                             f_bavail=free // stat.f_frsize)
            with mock.patch.object(check.os, 'statvfs', return_value=fake):
                result = self.results()['Template cache']
            self.assertEqual(status, result.status, (free, result))

    def test_libvirt_unreachable(self):
        self.flags(group='openvz', libvirt_uri='test:///nonexistent.xml')
        self.assertFails('Host facts', 'nonexistent', hint='libvirt_uri')

    def test_compute_driver_missing(self):
        self.flags(compute_driver=None)
        self.assertFails('compute_driver', 'None',
                         hint='compute_driver = openvz.OpenVZDriver')

    def test_shim_missing(self):
        with mock.patch.object(check.importlib, 'import_module',
                               side_effect=ImportError('no openvz')):
            self.assertFails('Nova loads the driver', 'no openvz',
                             hint='non-editable')

    def test_relative_tools_dir(self):
        self.flags(group='openvz', tools_dir='usr/sbin')
        self.assertFails('[openvz] options', 'absolute')

    def test_options_of_two_hosts_warn(self):
        self.flags(group='openvz', tools_dir='/usr/sbin')
        result = self.results()['[openvz] options']
        self.assertEqual(check.WARNING, result.status)
        self.assertIn('tools_dir = /usr/sbin', result.message)

    def test_unreadable_file_is_a_failure(self):
        with mock.patch.object(check.hostpaths.vzconf, 'read',
                               side_effect=PermissionError(13, 'denied')):
            self.assertFails('vz.conf', 'denied', hint='root')

    def test_a_crashing_check_is_a_failure(self):
        def boom():
            raise RuntimeError('surprise')
        results = check.run_checks((('boom', boom),))
        self.assertEqual(check.FAILURE, results[0][1].status)
        self.assertIn('surprise', results[0][1].message)


class TestPrivsep(_CheckTest):

    def write_rootwrap(self, filters):
        directory = self.useFixture(fixtures.TempDir()).path
        filters_dir = os.path.join(directory, 'rootwrap.d')
        os.mkdir(filters_dir)
        config = os.path.join(directory, 'rootwrap.conf')
        with open(config, 'w') as f:
            f.write('[DEFAULT]\nfilters_path=%s\n' % filters_dir)
        for name, text in filters.items():
            with open(os.path.join(filters_dir, name), 'w') as f:
                f.write(text)
        self.flags(group='workarounds', disable_rootwrap=False)
        self.flags(rootwrap_config=config)

    def test_rootwrap_filter_present(self):
        self.write_rootwrap({'openvz.filters': textwrap.dedent('''\
            [Filters]
            privsep-rootwrap-openvz: RegExpFilter, privsep-helper, root, \
privsep-helper, --config-file, /etc/(?!\\.\\.).*, --privsep_context, \
nova_openvz.privsep.vz_pctxt, --privsep_sock_path, /tmp/.*
            ''')})
        result = self.results()['Privsep helper']
        self.assertEqual(check.PASS, result.status, result)

    def test_rootwrap_filter_missing(self):
        self.write_rootwrap({'compute.filters': '[Filters]\n'})
        self.assertFails('Privsep helper', 'no rootwrap filter',
                         hint='openvz.filters')

    def test_rootwrap_config_missing_warns(self):
        self.flags(group='workarounds', disable_rootwrap=False)
        self.flags(rootwrap_config='/nonexistent/rootwrap.conf')
        result = self.results()['Privsep helper']
        self.assertEqual(check.WARNING, result.status)

    def test_helper_command(self):
        self.flags(group='nova_openvz_privsep',
                   helper_command='sudo /nonexistent/bin/privsep-helper')
        self.assertFails('Privsep helper', '/nonexistent/bin/privsep-helper')
        helper = check._find_program('privsep-helper')
        if helper is None:
            self.skipTest('privsep-helper is not installed here')
        # nova-compute running as root needs no sudo in front.
        self.flags(group='nova_openvz_privsep',
                   helper_command='%s --config-file /x.conf' % helper)
        self.assertEqual(check.PASS,
                         self.results()['Privsep helper'].status)


class TestMigrationPeers(_CheckTest):

    def write_peers(self, peers):
        with open(self.path('sim/hosts.json'), 'w') as f:
            json.dump(peers, f)

    def test_no_peer_configured_passes(self):
        self.assertEqual(check.PASS,
                         self.results()['Migration peers'].status)

    def test_a_peer_the_simulated_host_knows_passes(self):
        peer = self.useFixture(fixtures.TempDir()).path
        self.write_peers({'node2': peer})
        self.flags(group='openvz', migration_peers=['node2'])
        result = self.results()['Migration peers']
        self.assertEqual(check.PASS, result.status, result)
        self.assertIn('node2', result.message)

    def test_an_unknown_peer_fails_with_a_hint(self):
        self.write_peers({})
        self.flags(group='openvz', migration_peers=['node2', 'node3'])
        result = self.assertFails('Migration peers', 'node2', 'ssh-copy-id')
        self.assertIn('node3', result.message)


class TestCommand(testtools.TestCase):
    """The real command line, in its own process, as an operator runs it."""

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(sim_fixture.SimulatedHostFixture())
        self.conf = os.path.join(self.host.root, 'nova-openvz.conf')

    def run_check(self, *extra):
        extra_conf = os.path.join(self.host.root, 'extra.conf')
        with open(extra_conf, 'w') as f:
            f.write('\n'.join(extra) + '\n')
        proc = subprocess.run(
            [sys.executable, '-m', 'nova_openvz.cmd.cli', 'check',
             '--config-file', self.conf, '--config-file', extra_conf],
            capture_output=True, text=True, check=False,
            env=dict(os.environ, PYTHONWARNINGS='ignore'))
        return proc.returncode, proc.stdout.splitlines()

    def test_fresh_host(self):
        # Only the simulated host's own file: nothing tells where the
        # rootwrap config is, so the privsep check can only warn.
        code, lines = self.run_check()
        bad = [line for line in lines if not line.startswith('PASS ')][:-1]
        if not _shim_importable():
            self.skipTest(SHIM_SKIP)
        self.assertEqual(1, code, lines)
        self.assertEqual(1, len(bad), lines)
        self.assertTrue(bad[0].startswith('WARNING  Privsep helper:'), bad)
        self.assertIn('(hint: ', bad[0])
        code, lines = self.run_check('[workarounds]',
                                     'disable_rootwrap = True')
        self.assertEqual(0, code, lines)
        self.assertEqual('%d passed, 0 warnings, 0 failures'
                         % len(check.CHECKS), lines[-1])

    def test_broken_host_exits_2(self):
        os.unlink(os.path.join(self.host.tools_dir, 'vzctl'))
        shutil.rmtree(os.path.join(self.host.root, 'vz/template/cache'))
        code, lines = self.run_check('[DEFAULT]', 'compute_driver = fake')
        self.assertEqual(2, code, lines)
        failures = [line for line in lines if line.startswith('FAILURE ')]
        for name in ('Host tools', 'Template cache', 'compute_driver'):
            self.assertTrue([line for line in failures
                             if line.startswith('FAILURE  %s:' % name)],
                            (name, lines))
        self.assertTrue(all('(hint: ' in line for line in failures), lines)

    def test_missing_config_file(self):
        proc = subprocess.run(
            [sys.executable, '-m', 'nova_openvz.cmd.cli', 'check',
             '--config-file', os.path.join(self.host.root, 'nope.conf')],
            capture_output=True, text=True, check=False,
            env=dict(os.environ, PYTHONWARNINGS='ignore'))
        self.assertEqual(2, proc.returncode, proc.stdout + proc.stderr)
        self.assertIn('FAILURE  configuration:', proc.stdout)

    def test_bad_option_value(self):
        code, lines = self.run_check('[openvz]', 'layout = qcow2')
        self.assertEqual(2, code, lines)
        self.assertTrue(lines[0].startswith('FAILURE'), lines)
