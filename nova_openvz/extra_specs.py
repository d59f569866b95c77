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

"""Flavor extra specs in the ``openvz:`` namespace.

One table serves twice: Nova's API loads :func:`register` through the
``nova.api.extra_spec_validators`` entry point and rejects bad values when a
flavor is changed, and :mod:`nova_openvz.resources` reads values through
:func:`value` with the same rules at spawn time.
"""

from nova_openvz import exception

#: The largest limit accepted: within every vzctl limit's range, and
#: within the privileged helper's table (numbers of at most 10 digits).
LIMIT_MAX = 2 ** 31 - 1

#: name -> (description, value schema in Nova's validator format)
SPECS = {
    'cpuunits': (
        'CPU weight of the container (vzctl --cpuunits). Overrides '
        'quota:cpu_shares and the per-vCPU default.',
        {'type': int, 'min': 8, 'max': 500000}),
    'cpulimit': (
        'Upper CPU limit in percent of one CPU (vzctl --cpulimit); 200 is '
        'two full CPUs, 0 is no limit. Overrides quota:cpu_quota.',
        {'type': int, 'min': 0, 'max': LIMIT_MAX}),
    'ioprio': (
        'Disk I/O priority, 0 (lowest) to 7 (vzctl --ioprio).',
        {'type': int, 'min': 0, 'max': 7}),
    'iolimit': (
        'Disk I/O bandwidth limit in MB/s, 0 is no limit (vzctl --iolimit).',
        {'type': int, 'min': 0, 'max': LIMIT_MAX}),
    'iopslimit': (
        'Disk I/O operations per second limit, 0 is no limit '
        '(vzctl --iopslimit).',
        {'type': int, 'min': 0, 'max': LIMIT_MAX}),
    'numproc': (
        'Maximum number of processes and threads (vzctl --numproc).',
        {'type': int, 'min': 1, 'max': LIMIT_MAX}),
    'numfile': (
        'Maximum number of open files (vzctl --numfile).',
        {'type': int, 'min': 1, 'max': LIMIT_MAX}),
    'layout': (
        'Disk layout of the container, overriding [openvz] layout.',
        {'type': str, 'enum': ['ploop', 'simfs']}),
}

PREFIX = 'openvz:'


def register():
    """Entry point for Nova's extra spec validation."""
    from nova.api.validation.extra_specs import base
    return [base.ExtraSpecValidator(name=PREFIX + name, description=doc,
                                    value=schema)
            for name, (doc, schema) in sorted(SPECS.items())]


def check(key, raw, schema):
    """Convert and check ``raw`` against a validator schema."""
    try:
        converted = schema['type'](raw)
    except (TypeError, ValueError):
        raise exception.InvalidFlavorLimit(
            key=key, value=raw, reason='not a %s' % schema['type'].__name__)
    if 'enum' in schema and converted not in schema['enum']:
        raise exception.InvalidFlavorLimit(
            key=key, value=raw,
            reason='must be one of %s' % ', '.join(schema['enum']))
    if 'min' in schema and converted < schema['min']:
        raise exception.InvalidFlavorLimit(
            key=key, value=raw, reason='below %s' % schema['min'])
    if 'max' in schema and converted > schema['max']:
        raise exception.InvalidFlavorLimit(
            key=key, value=raw, reason='above %s' % schema['max'])
    return converted


def value(flavor, name, default=None):
    """The checked value of ``openvz:<name>`` in a flavor, or ``default``."""
    raw = flavor.extra_specs.get(PREFIX + name)
    if raw is None:
        return default
    return check(PREFIX + name, raw, SPECS[name][1])
