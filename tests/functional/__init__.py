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

"""Functional tests: nova-openvz loaded into Nova's real services.

They run the API, conductor, scheduler, Placement and compute in one process
(Nova's functional harness) against a simulated OpenVZ host, which uses
chroots, mounts and namespaces: run them as root (``tox -e functional``).
"""

# As Nova's own functional tests do (nova/tests/functional/__init__.py):
# apply Nova's concurrency set-up (eventlet monkey patching unless
# OS_NOVA_DISABLE_EVENTLET_PATCHING says otherwise) before anything else
# imports the modules it patches.
from nova import monkey_patch

monkey_patch.patch()
