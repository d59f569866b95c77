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

"""Who may import whom (doc/source/contributor/design.rst, "Layout").

* The driver at run time (``nova_openvz.driver`` and every privsep module)
  loads neither the simulated host (``vzsim``), nor the test machinery
  (``nova_openvz.testing``), nor Nova's tests (``nova.tests``).
* No import cycle in ``nova_openvz`` or ``vzsim``, counting imports inside
  functions and the package ``__init__`` every import runs.
* In ``vzsim``, front ends (``vzsim.cli``) import back ends, never the
  reverse; and ``vzsim`` imports nothing outside the standard library.
"""

import ast
import json
import os
import subprocess
import sys

import testtools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PACKAGES = ('nova_openvz', 'vzsim')
FORBIDDEN_AT_RUN_TIME = ('vzsim', 'nova_openvz.testing', 'nova.tests')


def module_files():
    """``{module name: path}`` of every module in :data:`PACKAGES`."""
    found = {}
    for package in PACKAGES:
        for directory, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if not name.endswith('.py'):
                    continue
                path = os.path.join(directory, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == '__init__':
                    parts.pop()
                found['.'.join(parts)] = path
    return found


def _with_parents(name, known, importer):
    """``name`` and the packages importing it runs, those in ``known``.

    The importer's own enclosing packages are left out when only implied:
    Python has started them before the importer, so a sibling import
    (``from pkg import sibling`` inside ``pkg``) orders nothing.  Named
    themselves (``from nova_openvz import privsep``), they count.
    """
    parts = name.split('.')
    ancestors = {'.'.join(importer.split('.')[:i])
                 for i in range(1, importer.count('.') + 1)}
    implied = ['.'.join(parts[:i]) for i in range(1, len(parts))]
    return [m for m in implied + [name]
            if m in known and (m == name or m not in ancestors)]


def imports(modules):
    """``{module: {imported module}}`` within ``modules``, lazy included."""
    graph = {}
    for module, path in modules.items():
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), path)
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                # No relative imports here (hacking's H304).
                assert not node.level, '%s: relative import' % path
                submodules = ['%s.%s' % (node.module, alias.name)
                              for alias in node.names]
                # "from pkg import mod" names the module, not the package.
                names = [n for n in submodules if n in modules] or \
                    [node.module]
            else:
                continue
            for name in names:
                targets.update(_with_parents(name, modules, module))
        targets.discard(module)
        graph[module] = targets
    return graph


def cycles(graph):
    """Every strongly connected set of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


class TestRunTimeImports(testtools.TestCase):

    def test_driver_and_privsep_load_no_simulator_or_tests(self):
        privsep = sorted(m for m in module_files()
                         if m.startswith('nova_openvz.privsep'))
        self.assertIn('nova_openvz.privsep.tools', privsep)
        code = ('import importlib, json, sys\n'
                'for name in sys.argv[1:]:\n'
                '    importlib.import_module(name)\n'
                'print(json.dumps(sorted(sys.modules)))\n')
        proc = subprocess.run(
            [sys.executable, '-c', code, 'nova_openvz.driver'] + privsep,
            capture_output=True, text=True, check=True, cwd=ROOT)
        loaded = [name for name in json.loads(proc.stdout)
                  if any(name == f or name.startswith(f + '.')
                         for f in FORBIDDEN_AT_RUN_TIME)]
        self.assertEqual([], loaded)


class TestImportGraph(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.modules = module_files()
        self.graph = imports(self.modules)

    def test_graph_sees_lazy_imports(self):
        # cmd/cli.py imports the simulator only inside its functions.
        self.assertIn('vzsim.hostinit', self.graph['nova_openvz.cmd.cli'])

    def test_no_import_cycle(self):
        self.assertEqual([], cycles(self.graph))

    def test_cycle_finder_finds_a_lazy_cycle(self):
        self.assertEqual([['a', 'b']], cycles({'a': {'b'}, 'b': {'a'}}))

    def test_simulator_back_ends_never_import_front_ends(self):
        wrong = sorted(
            (module, target) for module, targets in self.graph.items()
            if module.startswith('vzsim.') and
            not module.startswith('vzsim.cli')
            for target in targets if target.startswith('vzsim.cli'))
        self.assertEqual([], wrong)

    def test_simulator_imports_only_the_standard_library_and_itself(self):
        outside = set()
        for module, path in self.modules.items():
            if not module.startswith('vzsim'):
                continue
            with open(path, encoding='utf-8') as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module]
                else:
                    continue
                outside.update(
                    (module, name) for name in names
                    if name.split('.')[0] not in sys.stdlib_module_names and
                    name.split('.')[0] != 'vzsim')
        self.assertEqual(set(), outside)

    def test_driver_package_imports_the_test_machinery_only_lazily(self):
        # Outside nova_openvz.testing, only the commands that run the
        # sandbox and the simulated host may name vzsim or the testing
        # package, and the cli only inside its functions.
        allowed = {'nova_openvz.cmd.cli', 'nova_openvz.sandbox'}
        wrong = sorted(
            (module, target) for module, targets in self.graph.items()
            if module.startswith('nova_openvz') and
            not module.startswith('nova_openvz.testing') and
            module not in allowed
            for target in targets
            if target.startswith(('vzsim', 'nova_openvz.testing')))
        self.assertEqual([], wrong)
