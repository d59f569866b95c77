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

"""Every host-tool call of every operation fails in turn, through Nova's API.

Each test runs one operation of :mod:`nova_openvz.testing.faultmatrix`
once and reads the calls it made from the simulated host's call log; they
must be the positions the matrix lists (the documented table stays true).
Then each call fails in turn, with a message and exit code of its own, and
the test checks what a user relies on: the server is where Nova says
(its status as before, or ERROR), the tool's message and exit code reach
the user (the server's fault, or the failed action's event), and the host
keeps nothing the failed operation made -- an ERROR server is deleted and
must leave nothing at all.

The host runs the simulator's ``modelled`` kernel: the same tools, exit
codes, files, locks, ploop snapshots and console loggers as the real
backend, about three times faster (the whole matrix must fit in CI), and
faithful for what is checked here -- what the driver asks of the tools and
what it leaves in the host's tree.  Operations that run a shell inside the
guest need the ``real`` backend and its busybox guest: volume and interface
attach and detach run there (:class:`TestDeviceFaultMatrix`), and rescue
and unrescue (:class:`TestRescueFaultMatrix`).

The listing cache and the lifecycle poller are off, so every query is a
vzlist call of its own, made in the same order each time: positions do not
depend on timing.
"""

import os
import re
import time

import fixtures
from nova import context as nova_context
from nova import objects
from nova.tests.functional.api import client as api_client

from nova_openvz.privsep import console as priv_console
from nova_openvz.testing import allinone
from nova_openvz.testing import faultmatrix
from nova_openvz.testing import faults
from tests.functional import test_volumes

#: What vzlist shows for a server in each status Nova shows (in rescue:
#: the server's container, mounted, and its rescuer).
CONTAINER_STATUS = {'ACTIVE': ['running'], 'SHUTOFF': ['stopped'],
                    'PAUSED': ['running'], 'SUSPENDED': ['suspended'],
                    'RESCUE': ['mounted', 'running'],
                    'VERIFY_RESIZE': ['running'], 'SHELVED_OFFLOADED': []}
#: A complete template in the template cache.
TEMPLATE = re.compile(r'^[^./][^/]*\.tar(\.(gz|bz2|xz))?$')
#: Host directories whose files an operation may make.
HOST_TREES = ('etc/vz/conf', 'etc/vz/names', 'vz', 'staging')
#: The API action of each operation but a boot.
ACTIONS = {
    'reboot-soft': {'reboot': {'type': 'SOFT'}},
    'reboot-hard': {'reboot': {'type': 'HARD'}},
    'stop': {'os-stop': None}, 'start': {'os-start': None},
    'pause': {'pause': None}, 'unpause': {'unpause': None},
    'suspend': {'suspend': None}, 'resume': {'resume': None},
    'snapshot': {'createImage': {'name': 'fm'}},
    'rebuild': {'rebuild': {'imageRef': allinone.TEMPLATE_IMAGE_ID}},
    'rescue': {'rescue': {}}, 'unrescue': {'unrescue': None},
    # On this one host a resize is live (nova_openvz.resize).
    'resize': {'resize': {'flavorRef': '2'}},
    'revert-resize': {'revertResize': None},
    # Nova's default shelved_offload_time (0) offloads at once.
    'shelve': {'shelve': None}, 'unshelve': {'unshelve': None},
}
#: The action that brings an ACTIVE server to a status, and back.
FORTH = {'SHUTOFF': 'stop', 'PAUSED': 'pause', 'SUSPENDED': 'suspend',
         'RESCUE': 'rescue', 'VERIFY_RESIZE': 'resize',
         'SHELVED_OFFLOADED': 'shelve'}
BACK = {'SHUTOFF': 'start', 'PAUSED': 'unpause', 'SUSPENDED': 'resume',
        'RESCUE': 'unrescue', 'VERIFY_RESIZE': 'revert-resize',
        'SHELVED_OFFLOADED': 'unshelve'}


class FaultMatrixTestCase(allinone.KeepsImageData,
                          allinone.OpenVZCloudTestCase):

    KERNEL = 'modelled'
    # Casts stay casts, as in a real cloud: the API answers at once and the
    # compute's error reaches the user through the server or its actions.
    CAST_AS_CALL = False

    def _setup_compute_service(self):
        self.useFixture(fixtures.EnvironmentVariable(
            allinone.KERNEL_ENV, self.KERNEL))
        self.flags(lifecycle_event_interval=0, state_cache_seconds=0,
                   group='openvz')
        self.flags(max_attempts=1, group='scheduler')
        # The template download takes an external (file) lock.
        self.flags(lock_path=self.useFixture(fixtures.TempDir()).path,
                   group='oslo_concurrency')
        return super()._setup_compute_service()

    # What the host holds ---------------------------------------------------

    def host_files(self, *roots):
        """Files and directories under ``roots`` (default: all we check)."""
        found = set()
        if not roots:
            roots = [os.path.join(self.vzhost.root, t) for t in HOST_TREES]
            roots.append(self.flags_instances_path())
        for top in roots:
            for path, dirs, files in os.walk(top):
                found.update(os.path.join(path, n) for n in dirs + files)
        # A template a boot downloaded stays for the next boot of its image
        # even when the boot failed: the template cache is a cache, which
        # the driver's manage_image_cache empties of unused templates.
        cache = os.path.join(self.vzhost.root, 'vz/template/cache') + os.sep
        return {f for f in found if not (f.startswith(cache) and
                                         TEMPLATE.match(f[len(cache):]))}

    def flags_instances_path(self):
        from nova import conf as nova_conf
        return nova_conf.CONF.instances_path

    def loggers(self):
        """The console agent's sessions, but their process IDs.

        A container started again gets a new logger process: what counts
        is one session per container, attached.
        """
        status = priv_console.console_agent_status() or {}
        return sorted(str({k: v for k, v in s.items() if k != 'pid'})
                      for s in status.get('sessions', []))

    def host_state(self):
        # The kernel's share: mounts, and on the real backend loop devices,
        # cgroups and network devices (its processes change on their own;
        # delete_cleanly checks that none is left).
        kernel = self.vzhost.kernel_state()
        kernel.pop('processes', None)
        return {'containers': sorted((c['ctid'], c['status'])
                                     for c in self.vzlist()),
                'files': self.host_files(), 'loggers': self.loggers(),
                'kernel': kernel}

    # Running an operation ----------------------------------------------------

    def wait_idle(self, server):
        """The server once Nova's task on it ended (a boot: built)."""
        for _ in range(240):
            server = self.api.get_server(server['id'])
            if server['OS-EXT-STS:task_state'] is None and \
                    server['status'] != 'BUILD':
                return server
            time.sleep(0.25)
        self.fail('server %s still busy: %s' % (server['id'], server))

    def boot(self, name='fm', expected_state='ACTIVE'):
        """A server, waited for as long as a loaded CI machine needs."""
        body = self._build_server(
            name=name, image_uuid=allinone.TEMPLATE_IMAGE_ID,
            flavor_id='1', networks='none')
        server = self.wait_idle(self.api.post_server({'server': body}))
        if expected_state:
            self.assertEqual(expected_state, server['status'])
        return server

    def wait_gone(self, server):
        for _ in range(240):
            try:
                server = self.api.get_server(server['id'])
            except api_client.OpenStackApiNotFoundException:
                return
            time.sleep(0.25)
        self.fail('server %s never went: %s' % (server['id'], server))

    def delete(self, server):
        self.api.delete_server(server['id'])
        self.wait_gone(server)

    def action(self, server, body):
        actions = len(self.api.get_instance_actions(server['id']))
        self.api.post_server_action(server['id'], body)
        # Not every action sets a task state (a resize's confirm does not):
        # the action's events tell when it ended.
        self.last_action_events(server, newer_than=actions)
        return self.wait_idle(server)

    def run_operation(self, op, server):
        """Run ``op`` on ``server``; the server once Nova is done."""
        if op.key == 'spawn':
            return self.boot(expected_state=None)
        return self.action(server, ACTIONS[op.key])

    def instance_faults(self, server):
        """Nova's fault records of the server, shown or not.

        The API shows a server's fault only in ERROR: a reboot that failed
        on a server still running records one that stays behind it.
        """
        ctxt = nova_context.get_admin_context()
        mapping = objects.InstanceMapping.get_by_instance_uuid(
            ctxt, server['id'])
        with nova_context.target_cell(ctxt, mapping.cell_mapping) as cctxt:
            return [f.message for f in
                    objects.InstanceFaultList.get_by_instance_uuids(
                        cctxt, [server['id']])]

    def fault_text(self, server):
        """The messages a user reads about the server's last operation.

        Waits for the last action's events to end: Nova records them after
        it has put the server's task state back.
        """
        server = self.api.get_server(server['id'])
        texts = [server.get('fault', {}).get('message', '')]
        texts.extend(e.get('details') or ''
                     for e in self.last_action_events(server))
        texts.extend(self.instance_faults(server))
        return '\n'.join(texts)

    def last_action_events(self, server, newer_than=None):
        """The events of the server's last action, once all ended.

        :param newer_than: how many actions the server had before this
            one: wait for it to be recorded (since API 2.101 the conductor
            records a volume attachment, after the API answered) and for
            one event at least (the compute records them).
        """
        for _ in range(240):
            actions = self.api.get_instance_actions(server['id'])
            events = self.api.get_instance_action_details(
                server['id'], actions[0]['request_id'])['events']
            if all(e.get('finish_time') for e in events) and (
                    newer_than is None or
                    (len(actions) > newer_than and events)):
                return events
            time.sleep(0.25)
        self.fail('the last action of %s never ended' % server['id'])

    def ready(self, op, server):
        """``server`` (a new one if None) in ``op.before``; None for a boot."""
        if op.before is None:
            return None
        if server is None:
            server = self.boot(name='fm')
        # As it is now: checking an outcome may have acted on it.
        server = self.api.get_server(server['id'])
        if server['status'] not in ('ACTIVE', op.before):
            server = self.action(server, ACTIONS[BACK[server['status']]])
        if server['status'] != op.before:
            server = self.action(server, ACTIONS[FORTH[op.before]])
        self.assertEqual(op.before, server['status'])
        return server

    def assert_host(self, expected, where):
        """The host holds what ``expected`` (a :meth:`host_state`) held."""
        now = self.host_state()
        self.assertEqual(
            (expected['containers'], [], [], expected['loggers']),
            (now['containers'], sorted(now['files'] - expected['files']),
             sorted(expected['files'] - now['files']), now['loggers']),
            '%s: (containers, files made, files gone, loggers)' % where)
        self.assert_same_extras(expected, now, where)

    def assert_same_extras(self, expected, now, where):
        """What :meth:`host_state` holds besides containers, files, loggers."""
        for key in sorted(set(now) - {'containers', 'files', 'loggers'}):
            self.assertEqual(expected[key], now[key], '%s: %s' % (where, key))

    def delete_cleanly(self, server, where):
        self.delete(server)
        self.assert_host(self.empty_host, where)
        self.assertEqual([], self.vzhost.kernel_state().get('processes', []),
                         '%s: processes left' % where)

    # The matrix --------------------------------------------------------------

    def check_matrix(self, key):
        op = faultmatrix.BY_KEY[key]
        self.empty_host = self.host_state()
        if op.before is None:
            # Not the first boot: it also fills the driver's view.
            self.delete(self.boot(name='warm-up'))
        # Once for real: the calls it makes are the positions to fail.
        server = self.ready(op, None)
        start = faults.mark(self.vzhost)
        server = self.run_operation(op, server)
        self.assertEqual(op.after, server['status'])
        found = faults.positions(faults.calls_since(self.vzhost, start),
                                 skip=faultmatrix.SKIPPED)
        if op.before is None:
            self.delete(server)
            server = None
        outcomes = []
        for position in found:
            server = self.ready(op, server)
            before = self.host_state()
            message = faults.fail_at(self.vzhost, position)
            server = self.run_operation(op, server)
            where = '%s at %s' % (op.key, position)
            # The rule fired: the operation made that call again.
            self.assertTrue(faults.held(self.vzhost, position), where)
            faults.clear(self.vzhost)
            outcome = self.outcome(op, position, before, server, message,
                                   where)
            outcomes.append((str(position), outcome))
            if outcome == faultmatrix.ERROR or op.before is None:
                self.delete_cleanly(server, where)
                server = None
        if server is not None:
            self.delete_cleanly(server, op.key)
        self.assertEqual(list(op.calls), outcomes,
                         'the fault matrix of %s changed: update '
                         'nova_openvz/testing/faultmatrix.py and run '
                         'tools/fault_matrix.py' % key)

    def outcome(self, op, position, before, after, message, where):
        """Check what the failure left; its :mod:`.faultmatrix` outcome."""
        text = self.fault_text(after)
        if message not in text:
            # The operation went on: a query failed, or a step the driver
            # may skip (with a warning in nova-compute's log).
            self.assertEqual(op.after, after['status'], where)
            if position.tool != 'vzlist':
                self.assertIn(message, self.stdlog.logger.output, where)
                return faultmatrix.WARNED
            self.assertEqual(CONTAINER_STATUS[op.after],
                             sorted(c['status'] for c in self.vzlist()),
                             where)
            return faultmatrix.QUERY
        self.assertIn('exit code %d' % faults.EXIT_CODE, text, where)
        if after['status'] == 'ERROR':
            return faultmatrix.ERROR
        stopped = [(ctid, 'stopped') for ctid, _ in before['containers']]
        if after['status'] == 'SHELVED':
            # Shelved, not offloaded: the container stays, stopped, and an
            # unshelve starts it again.
            self.assertEqual(stopped, self.host_state()['containers'], where)
            after = self.action(after, ACTIONS['unshelve'])
            self.assertEqual(op.before, after['status'], where)
            self.assert_only_private_area_grew(before, where)
            return faultmatrix.SHELVED
        self.assertEqual(op.before, after['status'], where)
        left_stopped = (before['containers'] != stopped and
                        self.host_state()['containers'] == stopped)
        if left_stopped:
            # Stopped while Nova shows it running: a hard reboot must bring
            # it back.
            after = self.action(after, ACTIONS['reboot-hard'])
            self.assertEqual(op.before, after['status'], where)
        if self.ploop_snapshots():
            self.assert_only_private_area_grew(before, where)
            return (faultmatrix.STOPPED_SNAPSHOT_LEFT if left_stopped
                    else faultmatrix.SNAPSHOT_LEFT)
        if left_stopped:
            # An undone snapshot leaves ploop's and vzctl's by-products in
            # the private area (Snapshots.xml, dump/, a lock file).
            self.assert_only_private_area_grew(before, where)
            return faultmatrix.STOPPED
        self.assert_host(before, where)
        return faultmatrix.KEPT

    def ploop_snapshots(self):
        found = []
        for record in self.vzlist():
            code, out, err = self.vzhost.run('vzctl', 'snapshot-list',
                                             record['ctid'], '-H')
            self.assertEqual(0, code, err)
            found += out.split()
        return found

    def assert_only_private_area_grew(self, before, where):
        """As :meth:`assert_host`, but the private area may hold more."""
        now = self.host_state()
        private = os.path.join(self.vzhost.root, 'vz/private') + os.sep
        self.assertEqual(
            (before['containers'], [], [], before['loggers']),
            (now['containers'],
             sorted(f for f in now['files'] - before['files']
                    if not f.startswith(private)),
             sorted(before['files'] - now['files']), now['loggers']),
            '%s: (containers, files made, files gone, loggers)' % where)
        self.assert_same_extras(before, now, where)


class TestFaultMatrix(FaultMatrixTestCase):

    def test_spawn(self):
        self.check_matrix('spawn')

    def test_reboot(self):
        self.check_matrix('reboot-soft')

    def test_hard_reboot(self):
        self.check_matrix('reboot-hard')

    def test_power_off(self):
        self.check_matrix('stop')

    def test_power_on(self):
        self.check_matrix('start')

    def test_pause(self):
        self.check_matrix('pause')

    def test_unpause(self):
        self.check_matrix('unpause')

    def test_snapshot(self):
        self.check_matrix('snapshot')

    def test_suspend(self):
        self.check_matrix('suspend')

    def test_resume(self):
        self.check_matrix('resume')

    def test_rebuild(self):
        self.check_matrix('rebuild')

    def test_resize(self):
        self.check_matrix('resize')

    def test_revert_resize(self):
        self.check_matrix('revert-resize')

    def test_shelve(self):
        self.check_matrix('shelve')

    def test_unshelve(self):
        self.check_matrix('unshelve')


class TestDeviceFaultMatrix(FaultMatrixTestCase, test_volumes._VolumeTestCase):
    """Volumes and ports: real containers, a switch and loop volumes.

    The guest makes and removes the device node, and configures the
    interface, with its own shell: the ``real`` backend's busybox guest.
    Besides what the base class checks, the host must keep the container's
    config as it was (no device access or NETIF entry left or lost) and
    the port's veth and switch port as they were, and the guest its
    device nodes, interfaces and their addresses.
    """

    KERNEL = 'real'
    NETWORKING = True

    def setUp(self):
        super().setUp()
        self.volume_id, _backing = self.volume()
        self.port = self.make_port()

    def host_state(self):
        state = super().host_state()
        conf = os.path.join(self.vzhost.root, 'etc/vz/conf')
        state['configs'] = {
            name: self._read(os.path.join(conf, name))
            for name in sorted(os.listdir(conf)) if name.endswith('.conf')}
        device = ('tap' + self.port['id'])[:14]
        state['veth'] = os.path.exists('/sys/class/net/' + device)
        state['switch port'] = device in self.switch.ports(
            self.integration_bridge)
        state['guest'] = {c['ctid']: self.guest_view(c['ctid'])
                          for c in self.vzlist() if c['status'] == 'running'}
        return state

    def guest_view(self, ctid):
        """What the guest sees of its devices and interfaces."""
        code, out, err = self.vzhost.run(
            'vzctl', 'exec2', ctid,
            # Interfaces and addresses, not their state (IPv6's DAD ends).
            "ls /dev /etc/network/interfaces.d; "
            "ip -o address show | awk '{print $2, $4}'")
        self.assertEqual(0, code, err)
        return out

    @staticmethod
    def _read(path):
        with open(path) as f:
            return f.read()

    def attached(self, op, server):
        """Whether the operation's device is the server's."""
        if op.key.endswith('volume'):
            return self.volume_id in [
                v['volumeId']
                for v in self.api.get_server_volumes(server['id'])]
        return self.port['id'] in [
            i['port_id'] for i in self.api.get_port_interfaces(server['id'])]

    def ready(self, op, server):
        server = super().ready(op, server)
        wanted = op.key.startswith('detach')
        if self.attached(op, server) != wanted:
            flip = faultmatrix.BY_KEY[('attach-' if wanted else 'detach-')
                                      + op.key.split('-')[1]]
            server = self.run_operation(flip, server)
        self.assertEqual(wanted, self.attached(op, server), op.key)
        return server

    def run_operation(self, op, server):
        sid = server['id']
        actions = len(self.api.get_instance_actions(sid))
        if op.key == 'attach-volume':
            self.api.post_server_volume(
                sid, {'volumeAttachment': {'volumeId': self.volume_id}})
        elif op.key == 'detach-volume':
            self.api.delete_server_volume(sid, self.volume_id)
        elif op.key == 'attach-interface':
            # A call, not a cast: a failure is the API's answer.
            try:
                self.api.attach_interface(sid, {'interfaceAttachment': {
                    'port_id': self.port['id']}})
            except api_client.OpenStackApiException:
                pass
        elif op.key == 'detach-interface':
            self.api.detach_interface(sid, self.port['id'])
        else:
            return super().run_operation(op, server)
        self.last_action_events(server, newer_than=actions)
        return self.api.get_server(sid)

    def outcome(self, op, position, before, after, message, where):
        done = self.attached(op, after) == op.key.startswith('attach')
        if done or message in self.fault_text(after):
            return super().outcome(op, position, before, after, message,
                                   where)
        # Nova answers an interface attach or detach with a message of its
        # own ("Failed to attach network adapter device"): the driver's
        # reaches nova-compute's log only.
        log = self.stdlog.logger.output
        self.assertIn(message, log, where)
        self.assertIn('exit code %d' % faults.EXIT_CODE, log, where)
        self.assertEqual(op.before, after['status'], where)
        self.assert_host(before, where)
        return faultmatrix.LOGGED

    def test_attach_volume(self):
        self.check_matrix('attach-volume')

    def test_detach_volume(self):
        self.check_matrix('detach-volume')

    def test_attach_interface(self):
        self.check_matrix('attach-interface')

    def test_detach_interface(self):
        self.check_matrix('detach-interface')


class TestRescueFaultMatrix(FaultMatrixTestCase):
    """Rescue runs a shell in its rescue container: real containers."""

    KERNEL = 'real'

    def setUp(self):
        super().setUp()
        self.require_real_kernel()

    def test_rescue(self):
        self.check_matrix('rescue')

    def test_unrescue(self):
        self.check_matrix('unrescue')
