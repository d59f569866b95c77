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

# Sphinx configuration of the nova-openvz documentation.
# Build it with "tox -e docs" (sphinx-build -W: warnings are errors).

# -- General configuration ---------------------------------------------------

extensions = [
    'openstackdocstheme',
    # ".. show-options:: nova_openvz" reads the options through the
    # oslo.config.opts entry point of the installed package.
    'oslo_config.sphinxext',
]

# openstackdocstheme options
openstackdocs_repo_name = 'openstack/nova-openvz'
openstackdocs_auto_name = False
openstackdocs_use_storyboard = False

source_suffix = '.rst'
master_doc = 'index'

project = 'nova-openvz'
copyright = 'nova-openvz contributors'

exclude_patterns = ['_build']

pygments_style = 'native'

# -- Options for HTML output -------------------------------------------------

html_theme = 'openstackdocs'
html_static_path = []
