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

"""The simulated vzmigrate, between two simulated hosts.

Expected messages, checks and exit codes come from
openvz-reference.md section 5.4 and bin/vzmigrate it cites.
The destination host is named in the source's ``sim/hosts.json``.
"""

import json
import os

import fixtures
import testtools

from nova_openvz.privsep import vzconf
from tests import fixtures as sim_fixtures
from vzsim import hostinit
from vzsim.kernel import ploop

DEST = 'node2'


def _row(result):
    """One vzlist line with its columns separated by single spaces."""
    return ' '.join(result[1].split())


class MigrationTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # Both hosts modelled: the migrated CTs use the minimal template,
        # which has no shell to boot on the real backend.
        self.source = self.useFixture(
            sim_fixtures.SimulatedHostFixture(kernel='modelled'))
        self.dest_root = self.useFixture(fixtures.TempDir()).path
        hostinit.init_host(self.dest_root, kernel='modelled')
        with open(self.source.path('sim/hosts.json'), 'w') as f:
            json.dump({DEST: self.dest_root}, f)

    def dest_path(self, relative):
        return os.path.join(self.dest_root, relative)

    def vzctl(self, *args):
        rc, out, err = self.source.vzctl('--quiet', *args)
        self.assertEqual(0, rc, 'vzctl %s: %s %s' % (args, out, err))

    def dest_tool(self, tool, *args):
        return self.source.run(self.dest_path('usr/sbin/' + tool), *args)

    def create(self, ctid=101, *args, layout='ploop'):
        self.vzctl('create', ctid, '--ostemplate',
                   sim_fixtures.DEFAULT_TEMPLATE, '--layout', layout, *args)

    def migrate(self, *args, expect=0):
        rc, out, err = self.source.run('vzmigrate', *args)
        self.assertEqual(expect, rc, 'vzmigrate %s: %s %s' % (args, out, err))
        return out, err

    def source_status(self, ctid=101):
        return _row(self.source.run('vzlist', '-a', '-H', '-o',
                                    'ctid,status,ip', ctid))

    def dest_status(self, ctid=101):
        return _row(self.dest_tool('vzlist', '-a', '-H', '-o',
                                   'ctid,status,ip', ctid))

    def preamble(self, kind='migration', verb='Starting', ctid=101):
        return ('Locked CT {ctid}\n'
                '{verb} {kind} of CT {ctid} to {dest}\n'
                'Remote VE_PRIVATE path differs from local {ctid}.conf\n'
                'Using {root}/vz/private/{ctid} for syncing\n'
                'Remote VE_ROOT path differs from local {ctid}.conf\n'
                'Using {root}/vz/root/{ctid} for syncing\n'.format(
                    ctid=ctid, verb=verb, kind=kind, dest=DEST,
                    root=self.dest_root))


class TestMigration(MigrationTestCase):

    def test_stopped_ploop_container(self):
        self.create(101, '--name', 'web', '--ipadd', '10.0.0.1')
        out, err = self.migrate(DEST, 'web')
        self.assertEqual(self.preamble() + 'Preparing remote node\n'
                         'Syncing private\nCleaning up\n', out)
        self.assertEqual('', err)
        self.assertEqual('101 stopped 10.0.0.1', self.dest_status())
        # The source is destroyed the way vzctl destroy does it.
        self.assertTrue(os.path.exists(
            self.source.path('etc/vz/conf/101.conf.destroyed')))
        self.assertFalse(os.path.exists(self.source.path('vz/private/101')))
        # The config points at the destination's areas; the name follows.
        conf = vzconf.read(self.dest_path('etc/vz/conf/101.conf'))
        self.assertEqual(self.dest_path('vz/private/101'),
                         conf['VE_PRIVATE'])
        self.assertEqual('../conf/101.conf',
                         os.readlink(self.dest_path('etc/vz/names/web')))
        # The image is copied sparse, with the container's files.
        image_dir = self.dest_path('vz/private/101/root.hdd')
        info = os.stat(os.path.join(image_dir, 'root.hdd'))
        self.assertGreater(info.st_size, 2 * 1024 ** 3)
        self.assertLess(info.st_blocks * 512, 1024 ** 2)
        self.assertTrue(os.path.exists(os.path.join(
            ploop.content_dir(image_dir), 'sbin/init')))

    def test_running_container_is_stopped_and_started(self):
        self.create(101, '--ipadd', '10.0.0.1')
        self.vzctl('start', 101)
        out, _ = self.migrate(DEST, 101)
        self.assertEqual(self.preamble() + 'Preparing remote node\n'
                         'Syncing private\n'
                         'Copying top ploop delta with CT stop\n'
                         'Unmounting container\nStarting container\n'
                         'Cleaning up\n', out)
        self.assertEqual('101 running 10.0.0.1', self.dest_status())
        self.assertEqual('', self.source_status())

    def test_live_migration_keeps_the_container_running(self):
        self.create(101, '--ipadd', '10.0.0.1', layout='simfs')
        self.vzctl('start', 101)
        with open(self.source.path('vz/private/101/etc/marker'), 'w') as f:
            f.write('state\n')
        out, _ = self.migrate('--live', DEST, 101)
        self.assertEqual(self.preamble('live migration') +
                         'Preparing remote node\nSyncing private\n'
                         'Live migrating container...\nCleaning up\n', out)
        self.assertEqual('101 running 10.0.0.1', self.dest_status())
        with open(self.dest_path('vz/private/101/etc/marker')) as f:
            self.assertEqual('state\n', f.read())
        self.assertFalse(os.path.exists(self.source.path('vz/private/101')))
        self.assertFalse(os.path.exists(self.dest_path('var/tmp/dump.101')))
        self.assertFalse(os.path.exists(self.source.path('var/tmp/dump.101')))

    def test_keep_source_area(self):
        self.create(101)
        self.migrate('-r', 'no', DEST, 101)
        self.assertTrue(os.path.exists(
            self.source.path('etc/vz/conf/101.conf.migrated')))
        self.assertTrue(os.path.isdir(self.source.path('vz/private/101')))
        self.assertEqual('101 stopped -', self.dest_status())

    def test_check_only_moves_nothing(self):
        self.create(101)
        out, _ = self.migrate('--dry-run', DEST, 101)
        self.assertEqual(self.preamble(verb='Checking'), out)
        self.assertFalse(os.path.exists(self.dest_path('etc/vz/conf/'
                                                       '101.conf')))
        self.assertEqual('101 stopped -', self.source_status())

    def test_failed_start_on_destination_rolls_back(self):
        self.create(101, '--name', 'web')
        self.vzctl('start', 101)
        with open(self.dest_path('sim/faults.json'), 'w') as f:
            json.dump([{'tool': 'vzctl', 'command': 'start',
                        'exit_code': 79}], f)
        _, err = self.migrate(DEST, 101, expect=7)
        self.assertEqual('Error: Failed to start container\n', err)
        self.assertEqual('101 running -', self.source_status())
        for leftover in ('etc/vz/conf/101.conf', 'vz/private/101',
                         'vz/root/101', 'etc/vz/names/web'):
            self.assertFalse(os.path.lexists(self.dest_path(leftover)),
                             leftover)


class TestChecks(MigrationTestCase):

    def test_unknown_destination(self):
        self.create(101, layout='simfs')
        out, err = self.migrate('nowhere', 101, expect=4)
        self.assertEqual('Locked CT 101\n'
                         'Starting migration of CT 101 to nowhere\n', out)
        self.assertEqual(
            "Error: Can't connect to destination address using public key\n"
            'Error: Please put your public key to destination node\n', err)
        self.assertFalse(os.path.exists(self.source.path('vz/lock/101.lck')))

    def test_container_checks(self):
        _, err = self.migrate(DEST, 101, expect=10)
        self.assertEqual("Error: CT #101 doesn't exist\n", err)
        _, err = self.migrate(DEST, 'nameless', expect=10)
        self.assertEqual('CT ID nameless is invalid.\n', err)
        self.create(101, layout='simfs')
        _, err = self.migrate('--live', DEST, 101, expect=2)
        self.assertEqual("Error: Can't perform live migration of a stopped "
                         "container\n", err)

    def test_destination_checks(self):
        self.create(101, '--ipadd', '10.0.0.1', layout='simfs')
        self.create(102, '--ipadd', '10.0.0.2', layout='simfs')
        self.dest_tool('vzctl', '--quiet', 'set', 101, '--private',
                       self.dest_path('p101'), '--save')
        os.makedirs(self.dest_path('p101'))
        _, err = self.migrate(DEST, 101, expect=9)
        self.assertEqual('Error: CT #101 already exists on destination '
                         'node\n', err)
        self.dest_tool('vzctl', '--quiet', 'set', 5, '--ipadd', '10.0.0.2',
                       '--private', self.dest_path('p5'), '--save')
        state_dir = self.dest_path('var/lib/vzsim')
        with open(os.path.join(state_dir, '5.json'), 'w') as f:
            json.dump({'running': True, 'ips': ['10.0.0.2']}, f)
        _, err = self.migrate(DEST, 102, expect=12)
        self.assertEqual('Error: IP address(es) already in use on '
                         'destination node\n', err)

    def test_locked_container(self):
        self.create(101, layout='simfs')
        with open(self.source.path('vz/lock/101.lck'), 'w') as f:
            f.write('%d\nset\n' % os.getpid())
        _, err = self.migrate(DEST, 101, expect=20)
        self.assertTrue(err.startswith('Error: CT 101 already locked\n'
                                       'Error: Container already locked\n'))

    def test_usage(self):
        out, _ = self.migrate()
        self.assertTrue(out.startswith('This program is used for container '
                                       'migration to another node.\n'))
        out, _ = self.migrate(DEST, expect=1)
        self.assertEqual('Invalid usage: not enough parameters\n\n'
                         'For command line syntax, please check\n'
                         '  vzmigrate --help\n  man vzmigrate\n', out)
        out, _ = self.migrate('-r', 'maybe', DEST, 101, expect=1)
        self.assertTrue(out.startswith('Invalid usage: Bad argument for -r: '
                                       'maybe\n'))
        self.migrate(DEST, 101, 102, expect=1)
        self.migrate('--nodeps=disk', DEST, 101, expect=1)
