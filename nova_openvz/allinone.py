"""An all-in-one Nova cloud in one process, on a simulated OpenVZ host.

Nova's own functional harness (shipped in the ``nova`` wheel) runs the real
API, conductor, scheduler, placement and compute manager over SQLite; this
module plugs the OpenVZ driver into it with a fresh simulated host and an
OS template image in Glance.  The functional tests and ``nova-openvz
sandbox`` both build on :class:`OpenVZCloudTestCase`.
"""

import io
import json
import os
import sys

import fixtures
from nova import context as nova_context
from nova.tests.functional import integrated_helpers

from nova_openvz import privsep
from nova_openvz.simulator import fixture as sim_fixture
from nova_openvz.simulator import templates

TEMPLATE_IMAGE_ID = 'a5983393-bd48-46e7-8023-3b49cb4d6789'


class InProcessPrivsep(fixtures.Fixture):
    """Run the driver's privileged entrypoints in this (root) process.

    The same idea as Nova's ``PrivsepFixture``, for this package's own
    context; one unit test runs them through a real privsep daemon instead.
    """

    def _setUp(self):
        self.useFixture(fixtures.MockPatchObject(
            privsep.vz_pctxt, 'client_mode', False))


class OpenVZCloudTestCase(integrated_helpers._IntegratedTestBase):
    """Nova's integrated test base with the OpenVZ driver as compute."""

    ADMIN_API = True
    microversion = 'latest'
    compute_driver = 'openvz.OpenVZDriver'

    def _setup_compute_service(self):
        # Runs inside Nova's setUp, after its config fixture, before the
        # compute service starts: the driver must find its host then.
        self.vzhost = self.useFixture(sim_fixture.SimulatedHostFixture())
        self.useFixture(InProcessPrivsep())
        self.flags(compute_driver=self.compute_driver)
        # Nova's wheel installs its paste pipeline under the environment's
        # prefix, not next to the package the harness looks beside.
        self.flags(api_paste_config=os.path.join(
            sys.prefix, 'etc', 'nova', 'api-paste.ini'), group='wsgi')
        self.template_image = self._upload_template()
        return self._start_compute('compute')

    def _upload_template(self):
        ctxt = nova_context.get_admin_context()
        data = templates.minimal_template_bytes()
        return self.glance.create(ctxt, {
            'id': TEMPLATE_IMAGE_ID,
            'name': 'nova-openvz-minimal',
            'status': 'active',
            'disk_format': 'raw',
            'container_format': 'bare',
            'visibility': 'public',
            'size': len(data),
            'properties': {'os_distro': 'debian', 'os_version': '12'},
        }, data=io.BytesIO(data))

    # Helpers for checks on the host -----------------------------------

    def boot(self, name='ct', flavor_id='1', expected_state='ACTIVE'):
        return self._create_server(
            name=name, image_uuid=TEMPLATE_IMAGE_ID, flavor_id=flavor_id,
            networks='none', expected_state=expected_state)

    def vzlist(self):
        """Every container on the host as the real vzlist reports it."""
        code, out, err = self.vzhost.run('vzlist', '-a', '-j')
        self.assertEqual(0, code, err)
        return json.loads(out)

    def container(self, server):
        """The vzlist record of a server's container, or None."""
        for record in self.vzlist():
            if record.get('name') == server['id']:
                return record
        return None
