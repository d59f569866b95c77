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

"""devstack/plugin.sh, phase by phase, against a stand-in for devstack.

Each phase runs in its own bash process, the way devstack sources it
(override-defaults, settings, then ``plugin.sh <mode> <phase>``), with
``functions-stub.sh`` in place of devstack's function library and
``errexit``/``nounset``/``pipefail`` on. The files the phases write are
then read the way their consumers read them: nova-cpu.conf with Nova's own
options (and Nova's loader), tempest.conf against the support matrix, the
sudoers rule against the command oslo.privsep builds.
"""

import configparser
import fnmatch
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import testtools

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, '..', '..', '..'))
PLUGIN_DIR = os.path.join(REPO, 'devstack')
STUB = os.path.join(HERE, 'functions-stub.sh')
MATRIX = os.path.join(REPO, 'doc', 'source', 'user', 'support-matrix.ini')
SHELL_FILES = [os.path.join(PLUGIN_DIR, name)
               for name in ('plugin.sh', 'settings', 'override-defaults')]
CONTEXT = 'nova_openvz.privsep.vz_pctxt'
STACK_PHASES = ('pre-install', 'install', 'post-config', 'extra',
                'test-config')

RUN_PHASE = '''\
set -o errexit -o nounset -o pipefail
source "$STUB"
source "$PLUGIN_DIR/override-defaults"
source "$PLUGIN_DIR/settings"
source "$PLUGIN_DIR/plugin.sh" "$@"
'''

# Reads nova-cpu.conf as nova-compute does: Nova's options and the
# driver's registered, the file given with --config-file; optionally loads
# the driver through Nova's loader.
READ_CONF = '''\
import json
import sys

import nova.conf
from nova_openvz import conf as openvz_conf  # noqa: F401
from nova_openvz import privsep

CONF = nova.conf.CONF
CONF(['--config-file', sys.argv[1]], project='nova', default_config_files=[])
result = {
    'compute_driver': CONF.compute_driver,
    'openvz': {name: getattr(CONF.openvz, name) for name in
               ('tools_dir', 'vz_conf', 'host_root', 'libvirt_uri',
                'layout')},
    'helper_command': privsep.vz_pctxt.helper_command(
        '/tmp/tmpabcdef/privsep.sock'),
}
if sys.argv[2:] == ['load']:
    from nova.virt import driver
    from nova.virt import fake
    loaded = driver.load_compute_driver(fake.FakeVirtAPI(),
                                        CONF.compute_driver)
    result['loaded'] = '%s.%s' % (type(loaded).__module__,
                                  type(loaded).__name__)
print(json.dumps(result))
'''


def shim_importable():
    try:
        return importlib.util.find_spec('nova.virt.openvz') is not None
    except ImportError:
        return False


SHIM_SKIP = ('nova.virt.openvz is not importable in this environment '
             '(editable install?): Nova cannot load the driver here')


class Stack(object):
    """A temporary devstack-like layout and the phases run in it."""

    def __init__(self, mode='simulated', services='n-cpu g-api tempest',
                 **extra):
        self.dir = tempfile.mkdtemp(prefix='nova-openvz-devstack-')
        self.bin = self.path('bin')
        os.makedirs(self.bin)
        os.makedirs(self.path('files'))
        # nova-openvz check looks for "sudo" on PATH (helper_command);
        # this stand-in runs the command as the current user.
        sudo = os.path.join(self.bin, 'sudo')
        with open(sudo, 'w') as f:
            f.write('#!/bin/sh\nexec "$@"\n')
        os.chmod(sudo, 0o755)
        self.log = self.path('calls.log')
        self.env = {
            'PATH': self.bin + os.pathsep + os.environ.get('PATH', ''),
            'HOME': self.dir,
            'TMPDIR': self.dir,
            'LC_ALL': 'C.UTF-8',
            'PYTHONWARNINGS': 'ignore',
            'STUB': STUB,
            'STUB_LOG': self.log,
            'STUB_SERVICES': services,
            'STUB_PYTHON': sys.executable,
            'PLUGIN_DIR': PLUGIN_DIR,
            'DEST': self.path('opt/stack'),
            'DATA_DIR': self.path('data'),
            'FILES': self.path('files'),
            'STACK_USER': 'stack',
            'NOVA_CONF': self.path('etc/nova/nova.conf'),
            'NOVA_CPU_CONF': self.path('etc/nova/nova-cpu.conf'),
            'TEMPEST_CONFIG': self.path('tempest/etc/tempest.conf'),
            'NOVA_BIN_DIR': os.path.dirname(sys.executable),
            'NOVA_OPENVZ_PYTHON': sys.executable,
            'NOVA_OPENVZ_DIR': REPO,
            'NOVA_OPENVZ_SUDOERS': self.path('sudoers.d/60_nova-openvz'),
            'OPENVZ_MODE': mode,
        }
        if not shim_importable():
            # The check would fail on the shim alone; the rest still runs.
            self.env['OPENVZ_CHECK_FATAL'] = 'False'
        self.env.update(extra)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def run(self, *args):
        return subprocess.run(['bash', '-c', RUN_PHASE, 'plugin.sh'] +
                              list(args),
                              env=self.env, cwd=REPO, capture_output=True,
                              text=True, timeout=120, check=False)

    def calls(self, name=None):
        try:
            with open(self.log) as f:
                calls = [line.rstrip('\n').split('\t') for line in f]
        except FileNotFoundError:
            return []
        return [c for c in calls if name is None or c[0] == name]

    def clear_log(self):
        if os.path.exists(self.log):
            os.unlink(self.log)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def read_ini(path):
    parser = configparser.RawConfigParser()
    parser.optionxform = str
    assert parser.read(path), path
    return parser


class TestShell(testtools.TestCase):

    def test_bashate_clean(self):
        try:
            from bashate import bashate  # noqa: F401
        except ImportError:
            self.skipTest('bashate is not installed')
        proc = subprocess.run(
            [sys.executable, '-c',
             'import sys; from bashate import bashate; '
             'sys.exit(bashate.main())', '-v', '-e', 'E*'] +
            SHELL_FILES + [STUB],
            capture_output=True, text=True, check=False)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)

    def test_override_defaults_selects_the_driver(self):
        proc = subprocess.run(
            ['bash', '-c', 'set -u; source "$1"; echo "$VIRT_DRIVER '
             '$DOWNLOAD_DEFAULT_IMAGES $DEFAULT_IMAGE_NAME"', 'x',
             os.path.join(PLUGIN_DIR, 'override-defaults')],
            capture_output=True, text=True, check=True, env={})
        self.assertEqual('openvz False openvz-template', proc.stdout.strip())

    def test_compute_options_use_nova_cpu_conf(self):
        with open(os.path.join(PLUGIN_DIR, 'plugin.sh')) as f:
            text = f.read()
        self.assertIn('"$NOVA_CPU_CONF"', text)
        self.assertNotIn('setup_develop', text.split('# Dispatch')[1])


class TestSimulatedStack(testtools.TestCase):
    """Every stack phase in order, on a simulated host."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack = Stack()
        cls.outputs = {}
        for phase in STACK_PHASES:
            proc = cls.stack.run('stack', phase)
            cls.outputs[phase] = proc
            if proc.returncode != 0:
                break
        # Nova's configuration is loaded in another process (it is global
        # in one): once per file, the driver loaded where it can be.
        cls.confs = {}
        if proc.returncode == 0:
            for name, load in (('NOVA_CPU_CONF', shim_importable()),
                               ('NOVA_CONF', False)):
                cls.confs[name] = cls.read_conf(cls.stack.env[name], load)

    @classmethod
    def tearDownClass(cls):
        cls.stack.cleanup()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        for phase, proc in self.outputs.items():
            self.assertEqual(0, proc.returncode, '%s failed:\n%s\n%s' % (
                phase, proc.stdout[-3000:], proc.stderr[-3000:]))
        self.assertEqual(list(STACK_PHASES), list(self.outputs))
        self.root = self.stack.path('data', 'openvz-host')

    @staticmethod
    def read_conf(path, load):
        proc = subprocess.run(
            [sys.executable, '-c', READ_CONF, path] +
            (['load'] if load else []),
            capture_output=True, text=True, cwd=REPO, check=False,
            env=dict(os.environ, PYTHONWARNINGS='ignore'))
        if proc.returncode != 0:
            return {'error': proc.stdout + proc.stderr}
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def conf(self, name='NOVA_CPU_CONF'):
        conf = self.confs[name]
        self.assertNotIn('error', conf, conf.get('error'))
        return conf

    def test_pre_install_installs_build_packages(self):
        self.assertIn(['install_package', 'libvirt-dev', 'pkg-config',
                       'python3-dev'], self.stack.calls('install_package'))

    def test_install_is_a_regular_install(self):
        pips = self.stack.calls('pip_install')
        self.assertIn(['pip_install', '--no-deps', REPO], pips)
        self.assertIn(['pip_install', 'libvirt-python'], pips)
        self.assertEqual([], self.stack.calls('setup_develop'))

    def test_simulated_host_laid_out(self):
        for path in ('usr/sbin/vzctl', 'etc/vz/vz.conf', 'proc/vz/veinfo',
                     'nova-openvz.conf'):
            self.assertTrue(os.path.exists(os.path.join(self.root, path)),
                            path)

    def test_nova_cpu_conf_loads_with_nova_options(self):
        conf = self.conf()
        self.assertEqual('openvz.OpenVZDriver', conf['compute_driver'])
        self.assertEqual({
            'tools_dir': os.path.join(self.root, 'usr', 'sbin'),
            'vz_conf': os.path.join(self.root, 'etc', 'vz', 'vz.conf'),
            'host_root': self.root,
            'libvirt_uri': 'test:///' + os.path.join(self.root,
                                                     'libvirt-host.xml'),
            'layout': 'ploop',
        }, conf['openvz'])
        for name in ('tools_dir', 'vz_conf', 'host_root'):
            self.assertTrue(os.path.exists(conf['openvz'][name]), name)

    def test_service_token_sent_in_both_files(self):
        # Neutron's default policy deletes compute:* ports only for a
        # request with a service token.
        for name in ('NOVA_CPU_CONF', 'NOVA_CONF'):
            self.assertIn(['iniset', self.stack.env[name], 'service_user',
                           'send_service_user_token', 'True'],
                          self.stack.calls('iniset'))

    def test_nova_conf_copy_keeps_the_driver(self):
        # devstack's start_nova_compute rebuilds nova-cpu.conf from
        # nova.conf; the options must survive that.
        conf = self.conf('NOVA_CONF')
        self.assertEqual('openvz.OpenVZDriver', conf['compute_driver'])
        self.assertEqual(self.root, conf['openvz']['host_root'])

    def test_nova_loads_this_driver(self):
        if not shim_importable():
            self.skipTest(SHIM_SKIP)
        conf = self.conf()
        self.assertEqual('nova_openvz.driver.OpenVZDriver', conf['loaded'])

    def test_check_ran_and_passed(self):
        out = self.outputs['post-config'].stdout
        self.assertIn('PASS     OpenVZ kernel:', out)
        if shim_importable():
            self.assertIn(' 0 warnings, 0 failures', out)

    def test_sudoers_rule_allows_the_privsep_helper(self):
        with open(self.stack.env['NOVA_OPENVZ_SUDOERS']) as f:
            rules = [line.strip() for line in f
                     if line.strip() and not line.startswith('#')]
        self.assertEqual(1, len(rules), rules)
        user, spec = rules[0].split(' ', 1)
        self.assertEqual('stack', user)
        prefix = 'ALL=(root) NOPASSWD: '
        self.assertTrue(spec.startswith(prefix), spec)
        command = spec[len(prefix):]
        helper = os.path.join(os.path.dirname(sys.executable),
                              'privsep-helper')
        self.assertTrue(command.startswith(helper + ' '), command)
        self.assertIn('--privsep_context %s ' % CONTEXT, command)
        # The command nova-compute will run, as oslo.privsep builds it
        # from helper_command: sudo, then what the rule must match.
        argv = self.conf()['helper_command']
        self.assertEqual('sudo', argv[0])
        self.assertEqual(helper, argv[1])
        self.assertIn(CONTEXT, argv)
        self.assertTrue(fnmatch.fnmatchcase(' '.join(argv[1:]), command),
                        (argv, command))
        visudo = shutil.which('visudo')
        if visudo:
            subprocess.run([visudo, '-c', '-q', '-f',
                            self.stack.env['NOVA_OPENVZ_SUDOERS']],
                           check=True)

    def test_image_uploaded(self):
        creates = [c for c in self.stack.calls('openstack')
                   if 'create' in c and 'image' in c]
        self.assertEqual(1, len(creates), creates)
        args = creates[0]
        for flag, value in (('--disk-format', 'raw'),
                            ('--container-format', 'bare'),
                            ('--property', 'img_hv_type=openvz')):
            self.assertEqual(value, args[args.index(flag) + 1])
        self.assertEqual('openvz-template', args[args.index('create') + 1])
        template = args[args.index('--file') + 1]
        with tarfile.open(template) as tar:
            self.assertIn('sbin/init', tar.getnames())

    def test_tempest_flags_match_support_matrix(self):
        matrix = read_ini(MATRIX)
        tempest = read_ini(self.stack.env['TEMPEST_CONFIG'])
        proc = subprocess.run(
            ['bash', '-c', 'source "$1"; echo $OPENVZ_TEMPEST_FEATURES',
             'x', os.path.join(PLUGIN_DIR, 'settings')],
            capture_output=True, text=True, check=True,
            env={'DEST': '/opt/stack', 'DATA_DIR': '/opt/stack/data'})
        features = [entry.split(':', 1) for entry in proc.stdout.split()]
        self.assertGreater(len(features), 10)
        section = tempest['compute-feature-enabled']
        for operation, flag in features:
            status = matrix['operation.' + operation]['driver.openvz']
            expected = 'True' if status in ('complete', 'partial') \
                else 'False'
            self.assertEqual(expected, section[flag], (operation, flag))
        # What the driver lacks today, checked by name.
        for flag in ('stable_rescue', 'vnc_console'):
            self.assertEqual('False', section[flag], flag)
        # Resize on the same host, live; rescue; shelve.
        for flag in ('resize', 'serial_console', 'pause', 'suspend', 'rescue',
                     'shelve', 'snapshot'):
            self.assertEqual('True', section[flag], flag)
        self.assertEqual('False', tempest['validation']['run_validation'])
        self.assertEqual('11111111-2222-3333-4444-555555555555',
                         tempest['compute']['image_ref'])

    def test_unstack_then_clean(self):
        self.stack.clear_log()
        proc = self.stack.run('unstack')
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertTrue(os.path.isdir(self.root))
        # Clean a copy of the stack so that other tests keep theirs.
        copy = Stack()
        self.addCleanup(copy.cleanup)
        shutil.copytree(self.root, copy.path('data', 'openvz-host'),
                        symlinks=True)
        os.makedirs(copy.path('sudoers.d'))
        open(copy.env['NOVA_OPENVZ_SUDOERS'], 'w').close()
        proc = copy.run('clean')
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertFalse(os.path.exists(copy.path('data', 'openvz-host')))
        self.assertFalse(os.path.exists(copy.env['NOVA_OPENVZ_SUDOERS']))


class TestPhasesOff(testtools.TestCase):

    def test_no_compute_no_glance_no_tempest(self):
        stack = Stack(services='key')
        self.addCleanup(stack.cleanup)
        for phase in ('post-config', 'extra', 'test-config'):
            proc = stack.run('stack', phase)
            self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertEqual([], stack.calls('iniset'))
        self.assertEqual([], stack.calls('openstack'))

    def test_bad_mode(self):
        stack = Stack(mode='virtual')
        self.addCleanup(stack.cleanup)
        proc = stack.run('stack', 'pre-install')
        self.assertNotEqual(0, proc.returncode)
        self.assertIn('OPENVZ_MODE must be simulated or real', proc.stderr)


class TestRealMode(testtools.TestCase):
    """Real mode's host checks, on a host tree made for the purpose."""

    def make_stack(self, **extra):
        stack = Stack(mode='real', **extra)
        self.addCleanup(stack.cleanup)
        return stack

    def test_no_openvz_kernel(self):
        stack = self.make_stack()
        stack.env['OPENVZ_HOST_ROOT'] = stack.path('host')
        proc = stack.run('stack', 'pre-install')
        self.assertNotEqual(0, proc.returncode)
        self.assertIn('proc/vz does not exist', proc.stderr)

    def test_missing_tools_are_installed_then_checked(self):
        stack = self.make_stack()
        os.makedirs(stack.path('host', 'proc', 'vz'))
        stack.env.update(OPENVZ_HOST_ROOT=stack.path('host'),
                         OPENVZ_TOOLS_DIR=stack.path('host', 'usr', 'sbin'))
        proc = stack.run('stack', 'pre-install')
        self.assertNotEqual(0, proc.returncode)
        self.assertIn(['install_package', 'vzctl', 'ploop'],
                      stack.calls('install_package'))
        self.assertIn('vzctl is still missing', proc.stderr)

    def test_openvz_host_passes(self):
        stack = self.make_stack()
        host = stack.path('host')
        subprocess.run([sys.executable, '-m', 'nova_openvz.cmd.cli',
                        'simulate', 'init', host], cwd=REPO, check=True,
                       capture_output=True)
        uri = 'test:///' + os.path.join(host, 'libvirt-host.xml')
        stack.env.update(OPENVZ_HOST_ROOT=host,
                         OPENVZ_TOOLS_DIR=os.path.join(host, 'usr', 'sbin'),
                         OPENVZ_VZ_CONF=os.path.join(host, 'etc/vz/vz.conf'),
                         OPENVZ_LIBVIRT_URI=uri)
        proc = stack.run('stack', 'pre-install')
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertIn('OpenVZ host: vzctl version', proc.stdout)
        self.assertNotIn(['install_package', 'vzctl', 'ploop'],
                         stack.calls('install_package'))
        proc = stack.run('stack', 'post-config')
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        conf = read_ini(stack.env['NOVA_CPU_CONF'])
        self.assertEqual('openvz.OpenVZDriver',
                         conf['DEFAULT']['compute_driver'])
        self.assertEqual(host, conf['openvz']['host_root'])
        self.assertEqual(uri, conf['openvz']['libvirt_uri'])
        self.assertIn('0 failures', proc.stdout)
