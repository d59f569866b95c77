#!/usr/bin/env python3
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

"""Check zuul.d/ with Zuul's own configuration code (the ``zuul`` package).

Usage: python tools/validate-zuul.py [--dir DIR] [FILE ...]

Three passes over every ``*.yaml`` file of the directory (default: the
project's zuul.d), each with Zuul's code, no Zuul service needed:

1. Loading: Zuul's YAML loader (``configloader.safe_load_yaml``: duplicate
   keys are errors) and its top-level split (``model.UnparsedConfig``:
   a list of one-key mappings of known kinds).
2. Schemas: every job, nodeset, project, project-template, semaphore,
   secret, queue and pragma against the voluptuous schema of its Zuul
   parser (``JobParser.schema``, ``ProjectParser(...).schema``, ...).
   The parsers are built from a ``configloader.ParseContext`` with no
   connections: only pipeline definitions need those, and an untrusted
   project such as this one may not define pipelines anyway.
3. Parsing: Zuul's per-file parse (``TenantParser.parseConfig``, which
   the scheduler runs on each file before assembling a tenant layout):
   the parsers' ``fromYaml`` with their semantic checks (regexes, nodeset
   groups, job attributes), errors formatted by Zuul.

Then, outside Zuul's code, a check of names against what a tenant would
provide: jobs, nodesets, templates and pipelines referenced here must be
defined here or be among the OpenDev/OpenStack names listed below (Zuul
itself checks this only when it loads the whole tenant).

Exit status: 0 valid, 1 invalid, 2 the zuul package is missing.
"""

import argparse
import copy
import glob
import os
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Names this project's configuration uses from other projects of the
#: OpenDev "openstack" tenant (zuul-jobs, openstack-zuul-jobs, devstack,
#: tempest) and from OpenDev's own configuration.
EXTERNAL_JOBS = frozenset((
    'base', 'run-test-command', 'tox', 'openstack-tox', 'devstack',
    'devstack-tempest', 'openstack-tox-pep8', 'openstack-tox-docs',
    'openstack-tox-cover', 'openstack-tox-py311', 'openstack-tox-py312',
    'openstack-tox-py313', 'build-openstack-releasenotes',
))
EXTERNAL_NODESETS = frozenset((
    'ubuntu-jammy', 'ubuntu-noble', 'debian-bookworm',
    'openstack-single-node-jammy', 'openstack-single-node-noble',
    'openstack-two-node-noble',
))
EXTERNAL_TEMPLATES = frozenset((
    'openstack-python3-jobs', 'publish-openstack-docs-pti',
    'release-notes-jobs-python3', 'check-requirements',
    'openstack-cover-jobs',
))
PIPELINES = frozenset((
    'check', 'gate', 'post', 'promote', 'experimental', 'periodic',
    'periodic-weekly', 'pre-release', 'release', 'tag',
))


class Problems(object):

    def __init__(self):
        self.items = []

    def add(self, where, message):
        self.items.append('%s: %s' % (where, message))


def _import_zuul():
    try:
        import voluptuous
        from zuul import configloader
        from zuul import model
    except ImportError as e:
        return None, e
    return types.SimpleNamespace(configloader=configloader, model=model,
                                 vs=voluptuous), None


def parse_context(z):
    """Zuul's parsers, without connections (no pipelines to parse)."""
    connections = types.SimpleNamespace(connections={})
    return z.configloader.ParseContext(connections, None, None, None)


def _schemas(pcontext):
    return {
        'jobs': pcontext.job_parser.schema,
        'nodesets': pcontext.nodeset_parser.schema,
        'projects': pcontext.project_parser.schema,
        'project_templates': pcontext.project_template_parser.schema,
        'semaphores': pcontext.semaphore_parser.schema,
        'secrets': pcontext.secret_parser.schema,
        'queues': pcontext.queue_parser.schema,
        'pragmas': pcontext.pragma_parser.schema,
    }


def _label(kind, conf):
    return '%s %s' % (kind.rstrip('s').replace('_', '-'),
                      conf.get('name', '(unnamed)'))


def _relative(path):
    path = os.path.abspath(path)
    if os.path.commonpath([path, ROOT]) == ROOT:
        return os.path.relpath(path, ROOT)
    return path


def load_file(z, path, problems):
    """Pass 1: Zuul's loader and top-level split; an UnparsedConfig."""
    relative = _relative(path)
    source = z.model.SourceContext(
        'opendev.org/x/nova-openvz', 'x/nova-openvz', 'opendev', 'master',
        relative)
    with open(path) as f:
        text = f.read()
    unparsed = z.model.UnparsedConfig()
    try:
        unparsed.extend(z.configloader.safe_load_yaml(text, source))
    except Exception as e:
        problems.add(relative, 'not loadable by Zuul: %s' % e)
        return None
    return unparsed


def check_schemas(z, pcontext, relative, unparsed, problems):
    """Pass 2: each stanza against its parser's voluptuous schema."""
    found = len(problems.items)
    if unparsed.pipelines:
        problems.add(relative, 'defines pipelines: only a config project '
                               'may, and this is not one')
    for kind, schema in _schemas(pcontext).items():
        for conf in getattr(unparsed, kind):
            try:
                schema(conf)
                if kind == 'jobs' and isinstance(conf.get('nodeset'), dict):
                    pcontext.nodeset_parser.anon_schema(conf['nodeset'])
            except z.vs.MultipleInvalid as e:
                for error in e.errors:
                    problems.add('%s: %s' % (relative, _label(kind, conf)),
                                 str(error))
            except z.vs.Invalid as e:
                problems.add('%s: %s' % (relative, _label(kind, conf)),
                             str(e))
    return len(problems.items) == found


def check_parse(z, pcontext, relative, unparsed, problems):
    """Pass 3: Zuul's own per-file parse, errors as Zuul reports them."""
    # parseConfig uses nothing of the tenant parser object itself.
    try:
        parsed = z.configloader.TenantParser.parseConfig(
            None, copy.deepcopy(unparsed), pcontext)
    except Exception as e:
        problems.add(relative, 'Zuul\'s parser failed: %s: %s'
                     % (type(e).__name__, e))
        return None
    errors = list(pcontext.error_list)
    for name, value in sorted(vars(parsed).items()):
        if name.endswith('_errors'):
            errors.extend(value)
    for error in errors:
        text = getattr(error, 'error', None) or str(error)
        problems.add(relative, text.strip())
    return parsed


def _job_refs(jobs_list):
    for item in jobs_list or []:
        if isinstance(item, str):
            yield item, {}
        elif isinstance(item, dict):
            for name, attrs in item.items():
                yield name, attrs if isinstance(attrs, dict) else {}


def check_names(unparsed_all, problems):
    """Names used here are defined here or known in the tenant."""
    jobs = {c['name'] for u in unparsed_all for c in u.jobs}
    nodesets = {c['name'] for u in unparsed_all for c in u.nodesets}
    templates = {c['name'] for u in unparsed_all
                 for c in u.project_templates}
    known_jobs = jobs | EXTERNAL_JOBS
    known_nodesets = nodesets | EXTERNAL_NODESETS

    def nodeset_ok(value, where):
        if isinstance(value, str) and value not in known_nodesets:
            problems.add(where, 'unknown nodeset %r' % value)

    for u in unparsed_all:
        for conf in u.jobs:
            where = 'job %s' % conf['name']
            parent = conf.get('parent')
            if parent and parent not in known_jobs:
                problems.add(where, 'unknown parent job %r' % parent)
            nodeset_ok(conf.get('nodeset'), where)
        for conf in u.projects + u.project_templates:
            where = 'project %s' % conf.get('name', '(this one)')
            for template in conf.get('templates', []):
                if template not in templates | EXTERNAL_TEMPLATES:
                    problems.add(where, 'unknown template %r' % template)
            for key, value in conf.items():
                if not isinstance(value, dict) or key in ('vars',):
                    continue
                if key not in PIPELINES:
                    problems.add(where, 'unknown pipeline %r' % key)
                for name, attrs in _job_refs(value.get('jobs')):
                    if name not in known_jobs:
                        problems.add(where, '%s: unknown job %r'
                                     % (key, name))
                    nodeset_ok(attrs.get('nodeset'), where)


def validate(paths):
    """Return ``(problems, summary lines)`` for the given files."""
    z, error = _import_zuul()
    if z is None:
        raise ImportError(error)
    problems = Problems()
    summary = []
    unparsed_all = []
    for path in paths:
        relative = _relative(path)
        unparsed = load_file(z, path, problems)
        if unparsed is None:
            continue
        unparsed_all.append(unparsed)
        pcontext = parse_context(z)
        if check_schemas(z, pcontext, relative, unparsed, problems):
            check_parse(z, pcontext, relative, unparsed, problems)
        counts = ['%d %s' % (len(getattr(unparsed, kind)), kind)
                  for kind in ('jobs', 'nodesets', 'projects',
                               'project_templates', 'semaphores')
                  if getattr(unparsed, kind)]
        summary.append('%s: %s' % (relative, ', '.join(counts) or 'empty'))
    check_names(unparsed_all, problems)
    return problems.items, summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dir', default=os.path.join(ROOT, 'zuul.d'),
                        help='directory of Zuul configuration files')
    parser.add_argument('files', nargs='*',
                        help='files to check instead of --dir')
    args = parser.parse_args(argv)
    paths = args.files or sorted(
        glob.glob(os.path.join(args.dir, '*.yaml')) +
        glob.glob(os.path.join(args.dir, '*.yml')))
    if not paths:
        print('no Zuul configuration files in %s' % args.dir)
        return 1
    try:
        problems, summary = validate(paths)
    except ImportError as e:
        print('the zuul package is needed (tox -e zuul installs it): %s' % e)
        return 2
    import zuul.version
    print('Zuul %s configuration schemas' % zuul.version.release_string)
    for line in summary:
        print(line)
    for problem in problems:
        print('ERROR ' + problem)
    print('%d files, %d errors' % (len(paths), len(problems)))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
