"""An all-in-one Nova cloud in one process, on a simulated OpenVZ host.

Nova's own functional harness (shipped in the ``nova`` wheel) runs the real
API, conductor, scheduler, placement and compute manager over SQLite; this
module plugs the OpenVZ driver into it with a fresh simulated host and an
OS template image in Glance.  The functional tests and ``nova-openvz
sandbox`` both build on :class:`OpenVZCloudTestCase`.

The simulated host runs the ``real`` kernel backend (containers are real
processes in namespaces and cgroups, their ploop images loop-mounted ext4)
when this machine allows it -- root and the kernel features
:func:`nova_openvz.simulator.realkernel.probe` checks -- and the
``modelled`` one otherwise (``simulate init --kernel auto``).  On the real
backend the template image is the busybox guest, whose init and shell
really run; on the modelled one it is the minimal template.

Set ``NOVA_OPENVZ_SIM_KERNEL`` to ``modelled``, ``real`` or ``auto`` (the
default) to choose the backend, e.g. ``NOVA_OPENVZ_SIM_KERNEL=modelled``
to run the functional tests on the modelled kernel on a machine that could
run real containers.  ``real`` fails where the machine cannot.
"""

import io
import json
import os
import sys

from nova import context as nova_context
from nova.tests.functional import integrated_helpers

from nova_openvz.simulator import fixture as sim_fixture
from nova_openvz.simulator import templates

TEMPLATE_IMAGE_ID = 'a5983393-bd48-46e7-8023-3b49cb4d6789'

#: Environment variable naming the simulated kernel backend (see above).
KERNEL_ENV = 'NOVA_OPENVZ_SIM_KERNEL'

_BUSYBOX_TEMPLATE = []


def kernel_choice():
    """The backend asked for by :data:`KERNEL_ENV`, ``auto`` by default."""
    return os.environ.get(KERNEL_ENV) or 'auto'


def busybox_template():
    """The busybox template tarball, built once per process."""
    if not _BUSYBOX_TEMPLATE:
        _BUSYBOX_TEMPLATE.append(templates.busybox_template_bytes())
    return _BUSYBOX_TEMPLATE[0]


class OpenVZCloudTestCase(integrated_helpers._IntegratedTestBase):
    """Nova's integrated test base with the OpenVZ driver as compute."""

    ADMIN_API = True
    microversion = 'latest'
    compute_driver = 'openvz.OpenVZDriver'

    def _setup_compute_service(self):
        # Runs inside Nova's setUp, after its config fixture, before the
        # compute service starts: the driver must find its host then.
        self.vzhost = self.useFixture(
            sim_fixture.SimulatedHostFixture(kernel=kernel_choice()))
        self.kernel_backend = self.vzhost.backend()
        self.useFixture(sim_fixture.InProcessPrivsep())
        self.flags(compute_driver=self.compute_driver)
        # Nova's wheel installs its paste pipeline under the environment's
        # prefix, not next to the package the harness looks beside.
        self.flags(api_paste_config=os.path.join(
            sys.prefix, 'etc', 'nova', 'api-paste.ini'), group='wsgi')
        self.template_image = self._upload_template()
        return self._start_compute('compute')

    def _upload_template(self):
        ctxt = nova_context.get_admin_context()
        if self.kernel_backend == 'real':
            name, data = 'nova-openvz-busybox', busybox_template()
        else:
            name = 'nova-openvz-minimal'
            data = templates.minimal_template_bytes()
        return self.glance.create(ctxt, {
            'id': TEMPLATE_IMAGE_ID,
            'name': name,
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
