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

"""A hostile guest: links where the host looks, then Nova's operations.

Root inside a container may replace any path of its own tree with a link
to a host path.  The host touches some of those paths from outside: the
ephemeral disk's and the config drive's mount points (the ``<CTID>.mount``
and ``.umount`` action scripts), the tree a snapshot packs, and a volume's
device node.  Each step
below plants links as the guest could, then drives the Nova operation that
touches them, and checks that the host's own mount, directory and secret
file are as they were, and that the operation succeeded or failed cleanly.

One server goes through the steps in order (each needs the state the last
one left), which keeps the run short; the kernel must be the real backend,
where the guest's links and the host's mounts are real.
"""

import gzip
import os
import subprocess
import uuid

import fixtures
from nova.tests.functional.api import client
from oslo_utils import uuidutils

from nova_openvz.testing import allinone
from tests.functional import test_volumes


class TestGuestHostility(allinone.KeepsImageData,
                         allinone.OpenVZCloudTestCase):

    def setUp(self):
        super().setUp()
        self.require_real_kernel()
        # What the guest aims at: a host mount, a host directory, a file
        # only root on the host may read.
        top = self.useFixture(fixtures.TempDir()).path
        self.host_mount = os.path.join(top, 'mount')
        self.host_dir = os.path.join(top, 'dir')
        self.secret = os.path.join(top, 'secret')
        os.mkdir(self.host_mount)
        subprocess.run(['mount', '-t', 'tmpfs', 'tmpfs', self.host_mount],
                       check=True)
        self.addCleanup(subprocess.run, ['umount', '-l', self.host_mount],
                        check=False)
        os.mkdir(self.host_dir)
        self.secret_text = 'host-secret-%s' % uuid.uuid4()
        for path in (os.path.join(self.host_mount, 'sentinel'),
                     os.path.join(self.host_dir, 'sentinel'), self.secret):
            with open(path, 'w') as f:
                f.write(self.secret_text)
        os.chmod(self.secret, 0o600)

    def assert_host_untouched(self, step):
        self.assertTrue(os.path.ismount(self.host_mount), step)
        self.assertFalse(os.path.ismount(self.host_dir), step)
        for path in (os.path.join(self.host_mount, 'sentinel'),
                     os.path.join(self.host_dir, 'sentinel'), self.secret):
            with open(path) as f:
                self.assertEqual(self.secret_text, f.read(), step)
        self.assertEqual(['sentinel'], os.listdir(self.host_dir), step)
        self.assertEqual(['sentinel'], os.listdir(self.host_mount), step)

    def inside(self, server, command):
        ctid = self.container(server)['ctid']
        code, out, err = self.vzhost.run('vzctl', 'exec2', ctid, command)
        self.assertEqual(0, code, '%r: %s%s' % (command, out, err))
        return out

    def boot_with_ephemeral_and_config_drive(self):
        flavor = self.api.post_flavor({'flavor': {
            'name': 'eph-%s' % uuidutils.generate_uuid()[:8], 'ram': 256,
            'vcpus': 1, 'disk': 1, 'OS-FLV-EXT-DATA:ephemeral': 1}})
        body = self._build_server(image_uuid=allinone.TEMPLATE_IMAGE_ID,
                                  flavor_id=flavor['id'], networks='none')
        body['config_drive'] = True
        return self._wait_for_state_change(
            self.api.post_server({'server': body}), 'ACTIVE',
            max_retries=120)

    # -- the operations each step drives ----------------------------------

    def snapshot(self, server):
        """Snapshot; the image must hold the guest's links, not targets."""
        self.api.post_server_action(server['id'],
                                    {'createImage': {'name': 'hostile'}})
        self._wait_for_server_parameter(
            server, {'OS-EXT-STS:task_state': None}, max_retries=120)
        image = [i for i in self.glance.images.values()
                 if i['name'] == 'hostile'][0]
        packed = gzip.decompress(self.glance._imagedata[image['id']])
        self.assertNotIn(self.secret_text.encode(), packed)
        self.assertIn(self.secret.encode(), packed)   # the link, as a link
        return self.api.get_server(server['id'])

    def stop(self, server):
        self.api.post_server_action(server['id'], {'os-stop': None})
        return self._wait_for_state_change(server, 'SHUTOFF',
                                           max_retries=120)

    def start_refused(self, server):
        """The start fails on the guest's links: stopped, not half up."""
        # Nova's harness runs the compute's cast in line: its error comes
        # back to the API call.
        error = self.assertRaises(
            client.OpenStackApiException, self.api.post_server_action,
            server['id'], {'os-start': None})
        self.assertIn('HostToolError', str(error))
        server = self._wait_for_server_parameter(
            server, {'OS-EXT-STS:task_state': None}, max_retries=120)
        self.assertEqual('SHUTOFF', server['status'])
        self.assertNotEqual('running', self.container(server)['status'])
        return server

    def delete(self, server):
        ctid = self.container(server)['ctid']
        self._delete_server(server)
        self.assertEqual([], self.vzhost.leftovers(ctid))

    #: (what the guest does, the operation that follows).  ``{secret}``,
    #: ``{host_mount}`` and ``{host_dir}`` are the host's paths.
    STEPS = [
        # A snapshot packs the guest's tree: links to host files stay links.
        ('ln -s {secret} /leak && ln -s {host_dir} /leakdir', snapshot),
        # The .umount script must not follow /mnt to the host's mount, nor
        # /config-drive to a host directory.
        ('umount /mnt && mv /mnt /mnt.old && ln -s {host_mount} /mnt && '
         'umount /config-drive && rmdir /config-drive && '
         'ln -s {host_dir} /config-drive', stop),
        # The .mount script refuses to mount through either link.
        (None, start_refused),
        # Removal neither follows nor unmounts anything of the host.
        (None, delete),
    ]

    def test_links_planted_by_the_guest_never_reach_the_host(self):
        server = self.boot_with_ephemeral_and_config_drive()
        self.assert_host_untouched('boot')
        paths = dict(secret=self.secret, host_mount=self.host_mount,
                     host_dir=self.host_dir)
        for plant, operation in self.STEPS:
            step = '%s after %s' % (operation.__name__, plant)
            if plant:
                self.inside(server, plant.format(**paths))
            server = operation(self, server)
            self.assert_host_untouched(step)


class TestGuestHostilityVolumes(test_volumes._VolumeTestCase):
    """Volume device nodes: made and removed inside the guest's own tree."""

    def test_a_guest_link_at_the_volume_node_never_reaches_the_host(self):
        top = self.useFixture(fixtures.TempDir()).path
        secret = os.path.join(top, 'secret')
        with open(secret, 'w') as f:
            f.write('host-secret')
        os.chmod(secret, 0o600)
        server = self._wait_for_state_change(self.api.post_server(
            {'server': self._build_server(
                image_uuid=allinone.TEMPLATE_IMAGE_ID, flavor_id='1',
                networks='none')}), 'ACTIVE', max_retries=120)
        self.inside(server, 'ln -s %s /dev/vdb' % secret)
        volume_id, _ = self.volume()
        self.assertEqual('/dev/vdb', self.attach(server, volume_id))
        self.inside(server, 'test -b /dev/vdb')
        self.inside(server, 'ln -sf %s /dev/vdb' % secret)
        self.detach(server, volume_id)
        self.inside(server, 'test ! -e /dev/vdb')
        # The host's file is neither replaced by a node nor removed.
        self.assertTrue(os.path.isfile(secret))
        self.assertFalse(os.path.islink(secret))
        with open(secret) as f:
            self.assertEqual('host-secret', f.read())
