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

"""Real cloud-init in a Debian container, fed by a config drive directory.

Opt-in and slow (NOVA_OPENVZ_SLOW_TESTS=1): it builds the Debian template
with debootstrap (root, the ``debootstrap`` package and a Debian mirror;
about two minutes), unless NOVA_OPENVZ_TEMPLATE_CACHE names a directory
that already holds it (the test then reuses it, or builds it there).

The container runs on the real kernel backend.  Its config drive is a
host directory shown read-only at ``/config-drive`` by a ``<CTID>.mount``
action script, as an operator of a real OpenVZ host would do it; cloud-
init's ds-identify and ConfigDrive datasource look for exactly that
directory holding ``openstack/<date>/meta_data.json``.

:class:`TestPrepareDebianRoot` runs always: what the builder does to a
debootstrapped tree, and that its init and halt are valid POSIX shell.
"""

import json
import os
import shutil
import subprocess
import time

import fixtures
import testtools

from tests.unit.vzsim.kernel import test_real as test_realkernel
from vzsim import templates

SLOW = os.environ.get('NOVA_OPENVZ_SLOW_TESTS') == '1'
CACHE_ENV = 'NOVA_OPENVZ_TEMPLATE_CACHE'
TEMPLATE = 'debian-12-nova-cloudinit'
HOSTNAME = 'cloudy-ct'
WRITTEN = '/root/written-by-cloud-init'
# A personality file, as Nova lays it out on a config drive.
INJECTED = ('/etc/injected-by-nova.txt', 'injected at boot\n')
PUBLIC_KEY = ('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Qta2V5LW5vdC1mb3It'
              'bG9naW4tMTIzNDU2Nzg5MA mykey')
USER_DATA = '''#cloud-config
write_files:
  - path: %s
    content: |
      hello from user data
''' % WRITTEN


def config_drive(directory, uuid):
    """Lay out a ConfigDrive-style tree as Nova writes one.

    Both a dated version (what ds-identify looks for under /config-drive)
    and ``latest`` (what the datasource reads first).
    """
    meta = {'uuid': uuid, 'hostname': HOSTNAME, 'name': 'cloudy',
            'launch_index': 0, 'availability_zone': 'nova',
            'files': [{'path': INJECTED[0], 'content_path': '/content/0000'}],
            'meta': {}, 'public_keys': {'mykey': PUBLIC_KEY}}
    os.makedirs(os.path.join(directory, 'openstack', 'content'))
    with open(os.path.join(directory, 'openstack', 'content', '0000'),
              'w') as f:
        f.write(INJECTED[1])
    for version in ('2012-08-10', 'latest'):
        path = os.path.join(directory, 'openstack', version)
        os.makedirs(path)
        with open(os.path.join(path, 'meta_data.json'), 'w') as f:
            json.dump(meta, f)
        with open(os.path.join(path, 'user_data'), 'w') as f:
            f.write(USER_DATA)
    return directory


@testtools.skipUnless(SLOW, 'slow: set NOVA_OPENVZ_SLOW_TESTS=1 to build a '
                            'Debian template and boot cloud-init in it')
class TestCloudInitInDebianContainer(test_realkernel.RealKernelTestCase):

    def setUp(self):
        super().setUp()
        if not shutil.which('debootstrap'):
            self.skipTest('debootstrap is not installed (bindep profile '
                          '"slow")')
        cache = os.environ.get(CACHE_ENV) or self.useFixture(
            fixtures.TempDir()).path
        tarball = templates.cached(cache, TEMPLATE,
                                   templates.build_debian_template)
        os.symlink(tarball, self.host.path(
            'vz/template/cache/%s.tar.gz' % TEMPLATE))
        self.drive = config_drive(self.useFixture(fixtures.TempDir()).path,
                                  'b8d5fba4-3a4c-4b7e-9b51-7f0d7c3c2a10')

    def console(self, ctid):
        try:
            with open(self.host.path('var/lib/vzsim/%d.console' % ctid)) as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def test_cloud_init_applies_the_config_drive(self):
        ctid = test_realkernel.ctid_base()
        self.ctids.append(ctid)
        self.vzctl('create', ctid, '--ostemplate', TEMPLATE, '--layout',
                   'ploop', '--diskspace', '1G')
        test_realkernel.write_mount_script(
            self.host, ctid,
            test_realkernel.bind_mount_script(self.drive, '/config-drive'))
        self.start(ctid)
        deadline = time.monotonic() + 300
        while 'is up' not in self.console(ctid):
            if time.monotonic() > deadline:
                self.fail('CT %d did not finish booting:\n%s'
                          % (ctid, self.console(ctid)))
            time.sleep(1)

        # ds-identify chose the config drive, and cloud-init read it there.
        self.assertIn('datasource_list: [ ConfigDrive',
                      self.inside(ctid, 'cat /run/cloud-init/cloud.cfg'))
        status = self.inside(ctid, 'cloud-init status --long')
        self.assertIn('status: done', status)
        self.assertIn('source=/config-drive', status)
        # What the metadata and the user data asked for.
        self.assertEqual(HOSTNAME, self.inside(ctid, 'hostname'))
        self.assertEqual(HOSTNAME, self.inside(ctid, 'cat /etc/hostname'))
        self.assertEqual('hello from user data',
                         self.inside(ctid, 'cat %s' % WRITTEN))
        # Injected files (personality): the matrix's file-injection row.
        self.assertEqual(INJECTED[1].strip(),
                         self.inside(ctid, 'cat %s' % INJECTED[0]))
        self.assertIn('b8d5fba4-3a4c-4b7e-9b51-7f0d7c3c2a10', self.inside(
            ctid, 'cat /var/lib/cloud/data/instance-id'))
        # The key reached cloud-init's default user, the server made its
        # own host keys, and init started sshd after cloud-init.
        self.assertIn(PUBLIC_KEY, self.inside(
            ctid, 'cat /home/debian/.ssh/authorized_keys'))
        self.assertIn('ssh-ed25519', self.inside(
            ctid, 'cat /etc/ssh/ssh_host_ed25519_key.pub'))
        self.assertEqual('sshd', self.inside(
            ctid, 'cat /proc/$(cat /run/sshd.pid)/comm'))
        self.assertEqual('0', self.inside(ctid, 'su debian -c "sudo id -u"'))
        # The four stages ran, each to success, logged by init.
        log = self.inside(ctid, 'cat /var/log/nova-openvz-init.log')
        for stage in ('cloud-init init --local', 'cloud-init init',
                      'cloud-init modules --mode=config',
                      'cloud-init modules --mode=final'):
            self.assertIn('exit 0: %s\n' % stage, log)

        # A graceful halt: init hears it and the container goes down.
        self.vzctl('stop', ctid)
        self.assertIn('halting', self.console(ctid))
        self.vzctl('destroy', ctid)
        self.assertNothingLeft()


class TestPrepareDebianRoot(testtools.TestCase):
    """What the builder does to a debootstrapped tree (no network, fast)."""

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        for name, text in (('etc/resolv.conf', 'nameserver 192.0.2.53\n'),
                           ('etc/hostname', 'builder\n'),
                           ('var/cache/apt/archives/x.deb', 'deb'),
                           ('var/lib/apt/lists/lock', ''),
                           ('var/lib/apt/lists/deb_Packages', 'index'),
                           ('etc/ssh/ssh_host_ed25519_key', 'private'),
                           ('etc/ssh/ssh_host_ed25519_key.pub', 'public'),
                           ('etc/ssh/sshd_config', 'Include x\n')):
            path = os.path.join(self.root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                f.write(text)
        os.makedirs(os.path.join(self.root, 'sbin'))
        os.symlink('/lib/systemd/systemd',
                   os.path.join(self.root, 'sbin/init'))

    def read(self, name):
        with open(os.path.join(self.root, name)) as f:
            return f.read()

    def test_init_replaces_systemd_and_host_facts_are_dropped(self):
        templates.prepare_debian_root(self.root)
        init = os.path.join(self.root, 'sbin/init')
        self.assertFalse(os.path.islink(init))
        self.assertTrue(os.access(init, os.X_OK))
        self.assertIn('cloud-init modules --mode=final', self.read(
            'sbin/init'))
        self.assertIn('kill -TERM 1', self.read('sbin/halt'))
        self.assertEqual('', self.read('etc/resolv.conf'))
        self.assertEqual('localhost\n', self.read('etc/hostname'))
        self.assertEqual('', self.read('etc/machine-id'))
        self.assertEqual([], os.listdir(os.path.join(
            self.root, 'var/cache/apt/archives')))
        self.assertEqual(['lock'], os.listdir(os.path.join(
            self.root, 'var/lib/apt/lists')))
        self.assertIn('resize_rootfs: false', self.read(
            'etc/cloud/cloud.cfg.d/90_nova_openvz.cfg'))

    def test_no_shared_ssh_host_key_and_init_starts_sshd(self):
        templates.prepare_debian_root(self.root)
        # cloud-init makes each server's keys; the package's config stays.
        self.assertEqual(['sshd_config'], os.listdir(os.path.join(
            self.root, 'etc/ssh')))
        self.assertEqual(['ssh'], [
            line for line in self.read('etc/nova-openvz/services').split('\n')
            if line and not line.startswith('#')])
        # Without a datasource, init makes the keys before sshd starts.
        init = self.read('sbin/init')
        self.assertLess(init.index('ssh-keygen -A'),
                        init.index('"/etc/init.d/$service" start'))

    def test_an_existing_halt_is_kept(self):
        with open(os.path.join(self.root, 'sbin/halt'), 'w') as f:
            f.write('#!/bin/sh\n# the distribution halt\n')
        templates.prepare_debian_root(self.root)
        self.assertIn('the distribution halt', self.read('sbin/halt'))

    def test_init_and_halt_are_posix_shell(self):
        templates.prepare_debian_root(self.root)
        scripts = [os.path.join(self.root, name)
                   for name in ('sbin/init', 'sbin/halt')]
        for script in scripts:
            subprocess.run(['sh', '-n', script], check=True)
        if shutil.which('shellcheck'):
            proc = subprocess.run(['shellcheck', '-s', 'sh'] + scripts,
                                  capture_output=True, text=True)
            self.assertEqual(0, proc.returncode, proc.stdout)


class TestPreparePostgresqlRoot(TestPrepareDebianRoot):
    """The PostgreSQL template: the Debian one, minus per-server state."""

    def setUp(self):
        super().setUp()
        for name in ('etc/postgresql/15/main/postgresql.conf',
                     'var/lib/postgresql/15/main/PG_VERSION',
                     'etc/ssl/private/ssl-cert-snakeoil.key',
                     'etc/ssl/certs/ssl-cert-snakeoil.pem'):
            path = os.path.join(self.root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                f.write('made by the package\n')

    def test_no_cluster_no_shared_key_and_init_runs_postgresql(self):
        templates.prepare_postgresql_root(self.root)
        # Each server makes its own cluster on its volume, and its own key.
        self.assertEqual([], os.listdir(os.path.join(
            self.root, 'etc/postgresql/15')))
        self.assertEqual([], os.listdir(os.path.join(
            self.root, 'var/lib/postgresql/15')))
        self.assertEqual([], os.listdir(os.path.join(
            self.root, 'etc/ssl/private')))
        self.assertEqual(['ssh', 'postgresql'], [
            line for line in self.read('etc/nova-openvz/services').split('\n')
            if line and not line.startswith('#')])
        # The Debian template's preparation ran too.
        self.assertIn('cloud-init modules --mode=final',
                      self.read('sbin/init'))

    def test_init_starts_services_after_cloud_init_and_stops_them_first(self):
        templates.prepare_postgresql_root(self.root)
        init = self.read('sbin/init')
        boot = init.index('cloud-init modules --mode=final')
        self.assertLess(boot, init.index('"/etc/init.d/$service" start'))
        halt = init.index('halt_now() {')
        self.assertLess(halt, init.index('"/etc/init.d/$service" stop'))
        self.assertLess(init.index('"/etc/init.d/$service" stop'),
                        init.index('kill -TERM -1'))
        self.assertIn('services | tac', init)


class TestCachedTemplate(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.cache = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                  'cache')
        self.builds = []
        self.useFixture(fixtures.EnvironmentVariable(templates.MIRROR_ENV,
                                                     'http://mirror.test'))

    def build(self, output, mirror, log):
        self.builds.append(mirror)
        log.write('building\n')
        with open(output, 'wb') as f:
            f.write(b'tarball')

    def test_built_once_then_taken_from_the_cache(self):
        first = templates.cached(self.cache, 'tpl', self.build)
        again = templates.cached(self.cache, 'tpl', self.build)
        self.assertEqual((first, first), (again, os.path.join(
            self.cache, 'tpl.tar.gz')))
        self.assertEqual(['http://mirror.test'], self.builds)
        with open(os.path.join(self.cache, 'tpl.log')) as log:
            self.assertEqual('building\n', log.read())

    def test_a_failed_build_is_tried_again(self):
        def fail(output, mirror, log):
            raise subprocess.CalledProcessError(1, ['debootstrap'])
        self.assertRaises(subprocess.CalledProcessError, templates.cached,
                          self.cache, 'tpl', fail)
        self.assertFalse(os.path.exists(
            os.path.join(self.cache, 'tpl.tar.gz')))
        templates.cached(self.cache, 'tpl', self.build)
        self.assertEqual(1, len(self.builds))
