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

# Sphinx configuration of the nova-openvz release notes.
# Build them with "tox -e releasenotes"; add a note with "reno new SLUG".

extensions = [
    'openstackdocstheme',
    'reno.sphinxext',
]

openstackdocs_repo_name = 'openstack/nova-openvz'
openstackdocs_auto_name = False
openstackdocs_use_storyboard = False

source_suffix = '.rst'
master_doc = 'index'

project = 'nova-openvz Release Notes'
copyright = 'nova-openvz contributors'

# Release notes are versioned by git tags; no version on the pages.
version = ''
release = ''

exclude_patterns = []

pygments_style = 'native'

html_theme = 'openstackdocs'
html_static_path = []

# Internationalization output: no translations for now.
locale_dirs = ['locale/']
