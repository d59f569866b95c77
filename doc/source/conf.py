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
