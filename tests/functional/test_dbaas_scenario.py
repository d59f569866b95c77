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

"""A PostgreSQL server through Nova's API, as a DBaaS (Trove) drives one.

Opt-in and slow (NOVA_OPENVZ_SLOW_TESTS=1; root, the real kernel backend,
``debootstrap`` and a Debian mirror for the first run, which builds the
PostgreSQL template into the template cache -- see
:mod:`nova_openvz.testing.dbaas`).  ``tools/dbaas_scenario.py`` runs it and
prints how long each step took.

The server boots from the PostgreSQL template with a Cinder volume for its
data; its config drive's user data makes the database on the volume at
first boot.  pgbench then runs inside while the server is resized up (live,
on this host), its volume is extended and the file system grown inside,
it is snapshotted and rebooted.  After each, the rows of the transactions
pgbench logged as committed are looked up in the table.  Deleting the
server leaves nothing on the host, and a new server given the volume
serves the same rows.
"""

import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid

from nova import context as nova_context
import testtools

from nova_openvz.testing import dbaas
from tests.functional import test_volumes
from tests.unit.vzsim import test_debian_template

GiB = test_volumes.GiB
USER, PASSWORD, DATABASE = 'app', 'app_secret', 'appdb'
#: Where pgbench's script and logs live inside the server (its root disk).
WORK = '/var/log/nova-pgbench'
#: Written by the test with each step's duration, for the operator script.
REPORT_ENV = 'NOVA_OPENVZ_DBAAS_REPORT'


@testtools.skipUnless(test_debian_template.SLOW,
                      'slow: set NOVA_OPENVZ_SLOW_TESTS=1 to build the '
                      'PostgreSQL template and run the DBaaS scenario')
class TestDatabaseServer(test_volumes._VolumeTestCase):

    # tox's OS_TEST_TIMEOUT (300 s) is for ordinary tests; this one takes
    # about ten minutes on two shared cores, plus the template build once.
    TIMEOUT_SCALING_FACTOR = 10

    def setUp(self):
        super().setUp()
        self.steps = []
        self._started = time.monotonic()
        self.addCleanup(self._report)
        self.step('template', self._upload_postgresql_image)
        self.small = self._create_flavor(name='db.small', memory_mb=512,
                                         vcpu=1, disk=2, ephemeral=0)
        self.medium = self._create_flavor(name='db.medium', memory_mb=1024,
                                          vcpu=2, disk=2, ephemeral=0)

    # Bookkeeping -------------------------------------------------------

    def step(self, name, function, *args):
        started = time.monotonic()
        result = function(*args)
        self.steps.append((name, time.monotonic() - started))
        return result

    def _report(self):
        path = os.environ.get(REPORT_ENV)
        if path:
            with open(path, 'w') as f:
                json.dump({'steps': self.steps,
                           'total': time.monotonic() - self._started}, f)

    def _upload_postgresql_image(self):
        try:
            tarball = dbaas.template()
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            self.skipTest('no PostgreSQL template: %s' % exc)
        with open(tarball, 'rb') as f:
            data = f.read()
        self.image_id = str(uuid.uuid4())
        self.glance.create(nova_context.get_admin_context(), {
            'id': self.image_id, 'name': 'postgresql', 'status': 'active',
            'disk_format': 'raw', 'container_format': 'bare',
            'visibility': 'public', 'size': len(data),
            'properties': {'os_distro': 'debian', 'os_version': '12'},
        }, data=io.BytesIO(data))

    # The database server ----------------------------------------------

    def boot_database(self, name, volume_id):
        """A server with the volume, made a database server at first boot."""
        body = self.server_with_volume(name, self.image_id, volume_id,
                                       flavor_id=self.small)
        body.update(config_drive=True, user_data=base64.b64encode(
            dbaas.user_data(USER, PASSWORD, DATABASE).encode()).decode())
        server = self._wait_for_state_change(
            self.api.post_server({'server': body}), 'ACTIVE',
            max_retries=600)
        status = self.wait_for(
            lambda: self.exec2(server, 'cloud-init status')[1],
            lambda out: 'done' in out or 'error' in out, 600)
        self.assertIn('status: done', status, self.exec2(
            server, 'cat /var/log/cloud-init-output.log')[1])
        self.wait_until_serving(server)
        return server

    def exec2(self, server, command):
        ctid = self.container(server)['ctid']
        return self.vzhost.run('vzctl', 'exec2', ctid, command)[:2]

    def wait_for(self, probe, done, timeout):
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if done(value):
                return value
            if time.monotonic() > deadline:
                self.fail('timed out; last: %r' % (value,))
            time.sleep(1)

    def wait_until_serving(self, server):
        self.wait_for(lambda: self.exec2(
            server, 'pg_isready -q -h 127.0.0.1')[0], lambda code: code == 0,
            300)

    def sql(self, server, query):
        """Run SQL as the database's user over TCP (password auth)."""
        return self.inside(server, 'PGPASSWORD=%s psql -h 127.0.0.1 -U %s '
                                   '-d %s -Atq -v ON_ERROR_STOP=1 -c "%s"'
                           % (PASSWORD, USER, DATABASE, query))

    def postmaster(self, server):
        return self.inside(server, 'head -n 1 %s/*/main/postmaster.pid'
                           % dbaas.DATA)

    def ledger(self, server, run):
        return {tuple(int(v) for v in row.split('|')) for row in self.sql(
            server, 'SELECT client, n FROM ledger WHERE run = %d' % run
        ).split()}

    # Load --------------------------------------------------------------

    def load(self, server, run, seconds, clients=2):
        """pgbench inside the server, in a thread; join it for the result.

        Returns ``(thread, result)``: ``result`` gets pgbench's exit code
        and output.  Waits until its first transactions committed, so the
        operation that follows happens under load.
        """
        result = {}
        command = ('cd %s && PGPASSWORD=%s pgbench -h 127.0.0.1 -U %s -n '
                   '-s 1 -D run=%d -D n=0 -f ledger.sql -c %d -T %d -l '
                   '--log-prefix=run%d %s 2>&1'
                   % (WORK, PASSWORD, USER, run, clients, seconds, run,
                      DATABASE))

        def run_pgbench():
            result['code'], result['out'] = self.exec2(server, command)
        thread = threading.Thread(target=run_pgbench)
        thread.start()
        self.addCleanup(thread.join)
        self.wait_for(lambda: self.ledger(server, run), bool, 60)
        return thread, result

    def logged(self, server, run):
        """What pgbench's log of ``run`` says committed."""
        return dbaas.committed(self.inside(server, 'cat %s/run%d.*'
                                           % (WORK, run)))

    def assert_clean_run(self, server, run, thread, result):
        """pgbench ran through, nothing failed, every commit has its row."""
        thread.join()
        self.assertEqual(0, result['code'], result['out'])
        self.assertIn('number of failed transactions: 0 ', result['out'])
        logged = self.logged(server, run)
        self.assertNotEqual(set(), logged)
        self.assertEqual(logged, self.ledger(server, run))

    # The scenario ------------------------------------------------------

    def test_a_database_server_lives_through_what_a_dbaas_does(self):
        volume_id, backing = self.volume(GiB)
        server = self.step('boot and first-boot setup', self.boot_database,
                           'db-1', volume_id)
        self.inside(server, 'mkdir -p %s && cat > %s/ledger.sql <<"EOF"\n'
                            '%sEOF' % (WORK, WORK, dbaas.LEDGER))
        self.inside(server, 'cd /tmp && PGPASSWORD=%s pgbench -h 127.0.0.1 '
                            '-U %s -i -q -s 1 %s'
                    % (PASSWORD, USER, DATABASE))
        self.sql(server, dbaas.LEDGER_TABLE)
        # The data is on the volume.
        self.assertIn('/dev/vdb', self.inside(server, 'df %s' % dbaas.DATA))
        postmaster = self.postmaster(server)

        # Resize up, on this host: live, the same postmaster serves on.
        thread, result = self.load(server, 1, 15)
        server = self.step('resize up under load', self.act, server,
                           {'resize': {'flavorRef': self.medium}},
                           'instance.resize.end', 'VERIFY_RESIZE')
        server = self._confirm_resize(server)
        self.assert_clean_run(server, 1, thread, result)
        self.assertEqual('db.medium', server['flavor']['original_name'])
        self.assertEqual(postmaster, self.postmaster(server))

        # Extend the volume; the guest grows its file system online.
        thread, result = self.load(server, 2, 15)
        before = int(self.inside(server, 'df -B1 --output=size %s | tail -1'
                                 % dbaas.DATA))
        self.step('volume extend under load', self.extend, server,
                  volume_id, backing, 2 * GiB)
        code, out = self.exec2(server, 'resize2fs %s 2>&1' % dbaas.DEVICE)
        after = int(self.inside(server, 'df -B1 --output=size %s | tail -1'
                                % dbaas.DATA))
        if self.may_grow_file_systems(server):
            self.assertEqual(0, code, out)
            self.assertGreater(after, before + GiB // 2)
        else:
            # The kernel lets only CAP_SYS_RESOURCE grow a mounted ext4;
            # a host without it in its bounding set (some sandboxes) gives
            # its containers none: the guest is told so, nothing breaks.
            self.assertIn('Permission denied to resize filesystem', out)
            self.assertEqual(before, after)
            self.steps.append(('(file system not grown: no '
                               'CAP_SYS_RESOURCE on this host)', 0))
        self.assert_clean_run(server, 2, thread, result)
        self.assertEqual(postmaster, self.postmaster(server))

        # A live snapshot: the guest is frozen for it, not stopped.
        thread, result = self.load(server, 3, 15)
        self.step('live snapshot under load', self.snapshot, server)
        self.assert_clean_run(server, 3, thread, result)
        self.assertEqual(postmaster, self.postmaster(server))

        # A reboot cuts the load; every transaction logged as committed
        # before it is still there after.
        thread, result = self.load(server, 4, 60)
        server = self.step('reboot under load', self.act, server,
                           {'reboot': {'type': 'SOFT'}},
                           'instance.reboot.end', 'ACTIVE')
        thread.join()
        self.wait_until_serving(server)
        self.assertNotEqual(postmaster, self.postmaster(server))
        logged = self.logged(server, 4)
        self.assertNotEqual(set(), logged)
        self.assertEqual(set(), logged - self.ledger(server, 4))

        rows = self.sql(server, 'SELECT count(*) FROM ledger')
        history = self.sql(server, 'SELECT count(*) FROM pgbench_history')
        self.assertEqual(rows, history)

        # Delete: nothing of the server is left on the host.
        ctid = self.container(server)['ctid']
        self.step('delete', self._delete_server, server)
        self.assertEqual([], self.vzhost.leftovers(ctid))
        self.assertEqual({}, self.leftover_processes_and_mounts())

        # The volume, given to a new server, serves the same rows.
        again = self.step('new server from the volume', self.boot_database,
                          'db-2', volume_id)
        self.assertEqual(rows, self.sql(again, 'SELECT count(*) FROM ledger'))
        self.assertEqual(history, self.sql(
            again, 'SELECT count(*) FROM pgbench_history'))

    # Operations --------------------------------------------------------

    def act(self, server, action, notification, state):
        """A server action, waited for longer than Nova's helpers wait.

        A database server takes its time to stop and to boot.
        """
        self.api.post_server_action(server['id'], action)
        self.notifier.wait_for_versioned_notifications(notification,
                                                       timeout=300)
        return self._wait_for_state_change(server, state, max_retries=120)

    def extend(self, server, volume_id, backing, size):
        """Cinder extends the volume and tells Nova; seen inside at once."""
        backing.grow(size)
        volume = self.cinder.fake_get(None, volume_id)
        volume['size'] = size // GiB
        self.cinder.volumes[volume_id] = volume
        self.api.create_server_external_events([{
            'name': 'volume-extended', 'server_uuid': server['id'],
            'tag': volume_id}])
        self.wait_for(lambda: self.inside(
            server, 'blockdev --getsize64 %s' % dbaas.DEVICE),
            lambda out: out == str(size), 60)

    def snapshot(self, server):
        self.api.post_server_action(server['id'],
                                    {'createImage': {'name': 'db-snap'}})
        self._wait_for_server_parameter(
            server, {'OS-EXT-STS:task_state': None}, max_retries=600)
        images = [i for i in self.glance.images.values()
                  if i['name'] == 'db-snap']
        self.assertEqual(1, len(images))
        self.assertEqual('active', images[0]['status'])

    def may_grow_file_systems(self, server):
        """Whether the container has CAP_SYS_RESOURCE (online resize2fs)."""
        bounding = self.inside(server, 'grep CapBnd /proc/self/status')
        return bool(int(bounding.split()[1], 16) & (1 << 24))

    def leftover_processes_and_mounts(self):
        """What the real kernel backend still holds for any container.

        Asked of the clean-up helper in its own process (Nova's test base
        forbids /proc and /sys here); only what it found is returned.
        """
        proc = subprocess.run([sys.executable, '-m',
                               'nova_openvz.testing.cleanhost',
                               self.vzhost.root],
                              check=True, capture_output=True, text=True)
        found = json.loads(proc.stdout)[0]
        return {kind: what for kind, what in found.items() if what}
