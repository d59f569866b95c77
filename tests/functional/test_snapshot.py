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

"""Snapshots through Nova's API: the image boots again with the same files.

A file is written inside a running server's container, the server is
snapshotted while it runs, and a new server booted from the snapshot image
has that file.  Needs the real kernel backend (processes run inside the
containers); the clean-up and failure tests also run on the modelled one.
"""

import glob
import os


from nova.compute import task_states
from nova import context as nova_context
from nova import objects

from nova_openvz import snapshots
from nova_openvz.testing import allinone


class TestSnapshot(allinone.KeepsImageData, allinone.OpenVZCloudTestCase):

    def setUp(self):
        super().setUp()
        self.task_states = []
        real_snapshot = snapshots.snapshot

        def recording(context, instance, container, description, image_id,
                      update_task_state):
            def record(**kwargs):
                self.task_states.append(kwargs)
                return update_task_state(**kwargs)
            return real_snapshot(context, instance, container, description,
                                 image_id, record)
        self.stub_out('nova_openvz.snapshots.snapshot', recording)

    def _require_real(self):
        if self.kernel_backend != 'real':
            self.skipTest('needs the real kernel backend (root and the '
                          'kernel features realkernel.probe checks); this '
                          'host runs the %s one' % self.kernel_backend)

    def exec2(self, server, command):
        ctid = self.container(server)['ctid']
        code, out, err = self.vzhost.run('vzctl', 'exec2', ctid, command)
        self.assertEqual(0, code, err)
        return out

    def _snapshot(self, server, name='snap'):
        image_id = self._create_image(server, name)
        return image_id

    def _create_image(self, server, name):
        self.api.post_server_action(server['id'],
                                    {'createImage': {'name': name}})
        self._wait_for_server_parameter(server, {'OS-EXT-STS:task_state':
                                                 None})
        images = [i for i in self.glance.images.values()
                  if i['name'] == name]
        self.assertEqual(1, len(images))
        return images[0]['id']

    def _leftovers(self):
        root = self.vzhost.root
        return sorted(glob.glob(os.path.join(root, 'staging', '*')) +
                      glob.glob(os.path.join(root, 'vz/root/nova-snapshot*')))

    def _snapshot_list(self, server):
        code, out, err = self.vzhost.run(
            'vzctl', 'snapshot-list', self.container(server)['ctid'], '-H')
        self.assertEqual(0, code, err)
        return out.strip()

    def test_snapshot_of_a_running_server_boots_with_its_files(self):
        self._require_real()
        server = self.boot(name='origin')
        pid_before = self.exec2(server, 'cat /proc/1/stat').split()[21]
        self.exec2(server, 'mkdir -p /srv/db && echo rows-42 > '
                           '/srv/db/table && sync')
        image_id = self._snapshot(server)

        # The server kept running, the same init, and was thawed.
        self.assertEqual('ACTIVE',
                         self.api.get_server(server['id'])['status'])
        record = self.container(server)
        self.assertEqual('running', record['status'])
        self.assertEqual(pid_before, self.exec2(
            server, 'cat /proc/1/stat').split()[21])
        self.exec2(server, 'true')
        # Nova's task states, in order.
        self.assertEqual(
            [{'task_state': task_states.IMAGE_PENDING_UPLOAD},
             {'task_state': task_states.IMAGE_UPLOADING,
              'expected_state': task_states.IMAGE_PENDING_UPLOAD}],
            self.task_states)
        # No ploop snapshot, mount dir or staged file is left behind.
        self.assertEqual('', self._snapshot_list(server))
        self.assertEqual([], self._leftovers())
        image = self.glance.show(None, image_id)
        self.assertEqual('raw', image['disk_format'])
        self.assertEqual('bare', image['container_format'])

        clone = self._create_server(name='clone', image_uuid=image_id,
                                    flavor_id='1', networks='none')
        self.assertEqual('rows-42\n',
                         self.exec2(clone, 'cat /srv/db/table'))
        self.assertNotEqual(record['ctid'], self.container(clone)['ctid'])

    def test_simfs_server_is_frozen_while_packed_and_keeps_running(self):
        self._require_real()
        self.flags(layout='simfs', group='openvz')
        server = self.boot(name='simfs')
        self.exec2(server, 'echo simfs-row > /root/row && sync')
        image_id = self._snapshot(server, name='simfs-snap')
        calls = [c['argv'][:3] for c in self.vzhost.calls()
                 if c['tool'] == 'vzctl' and c['argv'][0] in
                 ('chkpnt', 'snapshot')]
        ctid = str(self.container(server)['ctid'])
        self.assertEqual([['chkpnt', ctid, '--suspend'],
                          ['chkpnt', ctid, '--resume']], calls)
        self.assertEqual('running', self.container(server)['status'])
        self.exec2(server, 'true')   # thawed
        self.assertEqual([], self._leftovers())
        clone = self._create_server(name='simfs-clone', image_uuid=image_id,
                                    flavor_id='1', networks='none')
        self.assertEqual('simfs-row\n', self.exec2(clone, 'cat /root/row'))

    def test_snapshot_of_a_stopped_server(self):
        server = self._stop_server(self.boot(name='stopped'))
        image_id = self._snapshot(server, name='cold')
        self.assertEqual('SHUTOFF',
                         self.api.get_server(server['id'])['status'])
        self.assertEqual('stopped', self.container(server)['status'])
        self.assertTrue(self.glance._imagedata[image_id])
        self.assertEqual([], self._leftovers())

    def test_a_failed_mount_cleans_up_and_thaws(self):
        server = self.boot(name='failing')
        self.vzhost.inject_fault('vzctl', command='snapshot-mount',
                                 exit_code=160,
                                 stderr='Unable to mount snapshot: EBUSY')
        self.api.post_server_action(server['id'],
                                    {'createImage': {'name': 'broken'}})
        self._wait_for_server_parameter(server, {'OS-EXT-STS:task_state':
                                                 None})
        # The server stays ACTIVE and running; the snapshot was deleted.
        self.assertEqual('ACTIVE',
                         self.api.get_server(server['id'])['status'])
        mutating = [c['argv'][0] for c in self.vzhost.calls()
                    if c['tool'] == 'vzctl' and
                    c['argv'][0].startswith(('snapshot', 'chkpnt'))]
        self.assertEqual(['chkpnt', 'snapshot', 'chkpnt', 'snapshot-mount',
                          'snapshot-delete'], mutating)
        self.assertEqual('running', self.container(server)['status'])
        self.assertEqual('', self._snapshot_list(server))
        self.assertEqual([], self._leftovers())
        # The image Nova created for the snapshot is gone again.
        self.assertEqual([], [i for i in self.glance.images.values()
                              if i['name'] == 'broken'])

    def _faults(self, server):
        """The messages and details of the server's recorded faults."""
        faults = objects.InstanceFaultList.get_by_instance_uuids(
            nova_context.get_admin_context(), [server['id']])
        return ''.join('%s\n%s' % (f.message, f.details) for f in faults)

    def test_a_failed_thaw_restarts_the_server_and_deletes_the_snapshot(self):
        self._require_real()
        server = self.boot(name='unthawable')
        init_before = self.exec2(server, 'cat /proc/1/stat').split()[21]
        # Freeze works; the thaw after the snapshot fails.
        self.vzhost.inject_fault('vzctl', command='chkpnt', call=2,
                                 exit_code=16,
                                 stderr='Unable to resume container')
        self.api.post_server_action(server['id'],
                                    {'createImage': {'name': 'frozen'}})
        self._wait_for_server_parameter(server, {'OS-EXT-STS:task_state':
                                                 None})
        self.assertIn('Unable to resume container',
                      self._faults(server))
        # Running as Nova shows it, not frozen: a new init answers.
        self.assertEqual('ACTIVE',
                         self.api.get_server(server['id'])['status'])
        self.assertEqual('running', self.container(server)['status'])
        self.assertNotEqual(init_before, self.exec2(
            server, 'cat /proc/1/stat').split()[21])
        self.assertEqual('', self._snapshot_list(server))
        self.assertEqual([], self._leftovers())

    def test_a_failed_snapshot_umount_is_reported_and_delete_cleans_up(self):
        server = self.boot(name='stuck')
        # Busy once: the snapshot's own clean-up fails, delete's works.
        self.vzhost.inject_fault('vzctl', command='snapshot-umount', call=1,
                                 exit_code=161,
                                 stderr='Unable to umount snapshot: EBUSY')
        self.api.post_server_action(server['id'],
                                    {'createImage': {'name': 'stuck'}})
        self._wait_for_server_parameter(server, {'OS-EXT-STS:task_state':
                                                 None})
        traceback = self._faults(server)
        self.assertIn('Unable to umount snapshot: EBUSY', traceback)
        self.assertNotIn('AttributeError', traceback)
        self.assertEqual('ACTIVE',
                         self.api.get_server(server['id'])['status'])
        self.assertEqual('running', self.container(server)['status'])
        self._delete_server(server)
        self.assertEqual([], self._leftovers())
        self.assertEqual([], self.vzhost.all_leftovers())
        with open('/proc/self/mountinfo') as f:
            self.assertNotIn(self.vzhost.root, f.read())
