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

"""Containers Nova did not make, on the host Nova's compute runs on.

An operator's own containers, made with vzctl directly, with names and
descriptions that break naive parsers or look like Nova's own words: the
driver starts, lists, reports resources, syncs power states, polls
lifecycle events and boots and deletes a server next to them, and never
changes them; its privileged helper refuses to act on any of them.
"""

import json
import os
import uuid

from nova import conf as nova_conf
from nova import context as nova_context

from nova_openvz import privsep
from nova_openvz.privsep import console as priv_console
from nova_openvz.privsep import containers as priv_containers
from nova_openvz.privsep import images as priv_images
from nova_openvz.privsep import rescue as priv_rescue
from nova_openvz.privsep import tools as priv_tools
from nova_openvz import settings
from nova_openvz.testing import allinone
from nova_openvz import vz4
from vzsim import templates

#: The operator's template (not one of Nova's image templates).
TEMPLATE = 'operator-os'

#: CT ID, vzctl create options, and the state each is left in.  The CT IDs
#: are the driver's own first picks.
FOREIGN = [
    # vzlist 4.x prints this description as invalid JSON.
    (101, ['--name', 'db-primary', '--hostname', 'db1.example.org',
           '--description', 'db "primary" \\ share'], 'running'),
    (102, ['--name', 'ops box', '--description',
           "it's $(id) `id`\nsecond line"], 'stopped'),
    # Nova's own description words, without a Nova identity.
    (103, ['--description', 'nova-paused=yes nova-host=compute '
           'nova-name=instance-00000001'], 'running'),
    # A UUID name whose nova-instance word names another UUID.
    (104, ['--name', str(uuid.uuid4()), '--description',
           'nova-instance=%s' % uuid.uuid4()], 'stopped'),
    (105, ['--description', 'ünïcode ☃ 日本 café'], 'mounted'),
]
#: Made once a server exists: its NAME is that server's UUID (written
#: into its config, as vzctl refuses a name in use), its description the
#: bare UUID.
TWIN = 170

#: The action scripts vzctl runs for a container (reference 1.4).
SCRIPTS = ('mount', 'umount', 'premount', 'postumount', 'start', 'stop')


class TestForeignContainers(allinone.OpenVZCloudTestCase):

    def setUp(self):
        super().setUp()
        data = (allinone.busybox_template() if self.kernel_backend == 'real'
                else templates.minimal_template_bytes())
        with open(self.host_path('vz/template/cache/%s.tar.gz' % TEMPLATE),
                  'wb') as f:
            f.write(data)
        self.foreign = []
        for ctid, options, state in FOREIGN:
            self.vzctl('create', ctid, '--ostemplate', TEMPLATE, *options)
            if state != 'stopped':
                self.vzctl({'running': 'start',
                            'mounted': 'mount'}[state], ctid)
            self.foreign.append(ctid)

    def vzlist(self):
        # vzlist 4.x prints the operators' quotes unescaped (invalid JSON):
        # read it as the driver does.
        code, out, err = self.vzhost.run('vzlist', *vz4.list_all())
        self.assertEqual(0, code, err)
        return vz4.listing_records(out)

    def boot(self, name='ct'):
        # A busy host with five more containers may take its time.
        return self._wait_for_state_change(self.api.post_server(
            {'server': self._build_server(
                name=name, image_uuid=allinone.TEMPLATE_IMAGE_ID,
                flavor_id='1', networks='none')}), 'ACTIVE', max_retries=120)

    def host_path(self, path):
        return os.path.join(self.vzhost.root, path)

    def vzctl(self, *argv):
        code, out, err = self.vzhost.run('vzctl', *argv)
        self.assertEqual(0, code, '%s: %s%s' % (argv, out, err))

    def make_twin(self, server):
        self.vzctl('create', TWIN, '--ostemplate', TEMPLATE,
                   '--description', server['id'])
        with open(self.host_path('etc/vz/conf/%d.conf' % TWIN), 'a') as f:
            f.write('NAME="%s"\n' % server['id'])
        self.foreign.append(TWIN)

    def foreign_state(self):
        """What must not change: configs, scripts, listing, processes."""
        listed = {r['ctid']: r for r in self.vzlist()}
        state = {}
        for ctid in self.foreign:
            files = {}
            for suffix in ('conf',) + SCRIPTS:
                path = self.host_path('etc/vz/conf/%d.%s' % (ctid, suffix))
                if os.path.exists(path):
                    with open(path, 'rb') as f:
                        files[suffix] = f.read()
            with open(self.host_path('var/lib/vzsim/%d.json' % ctid)) as f:
                runtime = json.load(f)
            # (Memory use is the guest's own business.)
            record = listed.get(ctid) or {}
            state[ctid] = dict(
                files=files, listed={key: record.get(key) for key in (
                    'name', 'description', 'status')},
                # The same init, started at the same time: nothing of it
                # was stopped, restarted or frozen.
                processes={key: runtime.get(key) for key in (
                    'init_pid', 'start_time', 'running', 'mounted',
                    'frozen')})
        names = self.host_path('etc/vz/names')
        # Their names (Nova's servers come and go with theirs).
        theirs = {'../conf/%d.conf' % ctid for ctid in self.foreign}
        links = sorted((n, os.readlink(os.path.join(names, n)))
                       for n in os.listdir(names)
                       if os.readlink(os.path.join(names, n)) in theirs)
        return state, links

    def test_the_driver_works_next_to_them_and_changes_none(self):
        ctxt = nova_context.get_admin_context()
        server = self.boot()
        ctid = self.container(server)['ctid']
        self.assertNotIn(ctid, self.foreign)
        self.make_twin(server)
        before = self.foreign_state()
        self.assertEqual('running', before[0][101]['listed']['status'])
        self.assertEqual('mounted', before[0][105]['listed']['status'])

        # init_host, then every periodic look at the host.
        self.compute = self.restart_compute_service(
            self.compute, keep_hypervisor_state=False)
        driver = self.compute.driver
        self.assertEqual([server['id']], driver.list_instance_uuids())
        self.assertEqual(1, len(driver.list_instances()))
        self.assertEqual(1, driver.get_num_instances())
        self.compute.manager.update_available_resource(ctxt)
        self.compute.manager._sync_power_states(ctxt)
        if driver.lifecycle_events is not None:
            self.assertEqual([], driver.lifecycle_events.poll())
            self.assertEqual([], driver.lifecycle_events.poll())
        self.assertEqual('ACTIVE',
                         self.api.get_server(server['id'])['status'])

        self._delete_server(server)
        self.assertEqual(self.foreign,
                         sorted(r['ctid'] for r in self.vzlist()))
        self.assertEqual(before, self.foreign_state())

    def test_the_privileged_helper_refuses_each_of_them(self):
        guid = str(uuid.uuid4())
        staged = os.path.join(self.vzhost.root, 'staging')
        instance_dir = os.path.join(nova_conf.CONF.instances_path, guid)
        calls = [
            ('vzctl start', lambda c: self.tool(vz4.start(c))),
            ('vzctl stop', lambda c: self.tool(vz4.stop(c, fast=True))),
            ('vzctl restart', lambda c: self.tool(vz4.restart(c, True))),
            ('vzctl destroy', lambda c: self.tool(vz4.destroy(c))),
            ('vzctl mount', lambda c: self.tool(vz4.mount(c))),
            ('vzctl umount', lambda c: self.tool(vz4.umount(c))),
            ('vzctl set', lambda c: self.tool(
                vz4.configure(c, [settings.Description('nova-instance=x')]))),
            ('vzctl exec2', lambda c: self.tool(vz4.run_script(c),
                                                stdin='id\n')),
            ('vzctl chkpnt', lambda c: self.tool(vz4.freeze(c))),
            ('vzctl snapshot', lambda c: self.tool(vz4.snapshot(c, guid))),
            ('vzmigrate', lambda c: priv_tools.run_host_tool(
                'vzmigrate', vz4.migrate(c, 'peer-host', online=True), 60)),
            ('config drive', lambda c: priv_containers.install_config_drive(
                c, os.path.join(instance_dir, 'config-drive'))),
            ('ephemeral disk', lambda c: priv_containers.make_ephemeral_disk(
                c, 1, 'ext4', '/mnt')),
            ('volume grant', lambda c: priv_containers.grant_volume(
                c, 'vdb', '/dev/null')),
            ('volume revoke', lambda c: priv_containers.revoke_volume(
                c, 'vdb')),
            ('console', lambda c: priv_console.attach_console(
                c, instance_dir, 1024, 5)),
            ('pack', lambda c: priv_images.pack_private_area(
                c, 'stolen.tar.gz')),
            ('rescue', lambda c: priv_rescue.write_rescue_scripts(
                c, c + 1000)),
            ('rescued', lambda c: priv_rescue.write_rescue_scripts(
                c + 1000, c)),
        ]
        before = self.foreign_state()
        for ctid in self.foreign:
            for what, call in calls:
                error = self.assertRaises(privsep.ArgumentRejected, call,
                                          ctid)
                self.assertIn('CT %d is not a container of this driver'
                              % ctid, str(error), what)
        self.assertEqual(before, self.foreign_state())
        self.assertFalse(os.path.exists(os.path.join(staged,
                                                     'stolen.tar.gz')))

    def tool(self, argv, stdin=None):
        return priv_tools.run_host_tool('vzctl', argv, 60, stdin)
