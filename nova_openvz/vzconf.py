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

"""The simulated tools' name for :mod:`nova_openvz.privsep.vzconf`.

The simulated host's tools read and write vzctl's config format with the
module the driver uses, and import it at every invocation.  Importing it
through the privsep package would load oslo.privsep and Nova's options
(seconds per call), so the same file is loaded here on its own.  This goes
when the simulator has its own parser (issue 12, section 4); nothing of the
driver imports this name.
"""

import importlib.util
import os
import sys

_spec = importlib.util.spec_from_file_location(
    __name__, os.path.join(os.path.dirname(__file__), 'privsep', 'vzconf.py'))
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
sys.modules[__name__] = _module
