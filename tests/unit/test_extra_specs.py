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

"""The ``openvz:`` extra specs: one table for Nova's API and for spawn."""

import importlib.metadata

from nova.api.validation.extra_specs import base
from nova import exception as nova_exception
from nova import objects
import testtools

from nova_openvz import exception
from nova_openvz import extra_specs

#: A few values per spec, valid and not, to compare both readings with.
SAMPLES = ('-1', '0', '1', '5', '7', '8', '1000', '500000', '500001',
           'lots', '1.5', '', 'ploop', 'simfs', 'qcow2')


def _flavor(**specs):
    objects.register_all()
    return objects.Flavor(extra_specs=specs)


class TestRegister(testtools.TestCase):

    def test_register_gives_nova_validators_for_every_spec(self):
        validators = extra_specs.register()
        self.assertTrue(all(isinstance(v, base.ExtraSpecValidator)
                            for v in validators))
        self.assertEqual(
            sorted('openvz:' + name for name in extra_specs.SPECS),
            [v.name for v in validators])
        self.assertTrue(all(v.description for v in validators))

    def test_novas_reading_agrees_with_spawn_time_checks(self):
        for validator in extra_specs.register():
            name = validator.name.split(':', 1)[1]
            for raw in SAMPLES:
                try:
                    validator.validate(validator.name, raw)
                    api_ok = True
                except nova_exception.ValidationError:
                    api_ok = False
                try:
                    extra_specs.check(validator.name, raw,
                                      extra_specs.SPECS[name][1])
                    spawn_ok = True
                except exception.InvalidFlavorLimit:
                    spawn_ok = False
                self.assertEqual(api_ok, spawn_ok, '%s=%r: API says %s, '
                                 'spawn says %s' % (validator.name, raw,
                                                    api_ok, spawn_ok))


class TestNovaLoader(testtools.TestCase):
    """Nova's API validates flavors through the installed entry point."""

    def setUp(self):
        super().setUp()
        points = importlib.metadata.entry_points(
            group='nova.api.extra_spec_validators', name='openvz')
        if not points:
            self.skipTest('nova-openvz is not installed in this environment, '
                          'so its nova.api.extra_spec_validators entry point '
                          'is missing; install the package (tox does)')
        from nova.api.validation.extra_specs import validators
        self.validate = validators.validate

    def test_bad_values_are_rejected_good_ones_accepted(self):
        self.assertRaises(nova_exception.ValidationError,
                          self.validate, 'openvz:cpuunits', '5')
        self.validate('openvz:cpuunits', '1000')
        self.assertRaises(nova_exception.ValidationError,
                          self.validate, 'openvz:layout', 'qcow2')
        self.validate('openvz:layout', 'simfs')
        self.assertRaises(nova_exception.ValidationError,
                          self.validate, 'openvz:ioprio', '8')

    def test_limits_beyond_what_vzctl_takes_are_rejected(self):
        for name in ('numproc', 'numfile', 'cpulimit', 'iolimit',
                     'iopslimit'):
            self.assertRaises(nova_exception.ValidationError, self.validate,
                              'openvz:' + name, str(10 ** 40))
            self.validate('openvz:' + name, str(2 ** 31 - 1))

    def test_unknown_names_in_the_namespace_are_rejected(self):
        self.assertRaises(nova_exception.ValidationError,
                          self.validate, 'openvz:cpu_units', '1000')


class TestValue(testtools.TestCase):

    def test_missing_spec_gives_the_default(self):
        self.assertIsNone(extra_specs.value(_flavor(), 'cpuunits'))
        self.assertEqual('ploop',
                         extra_specs.value(_flavor(), 'layout', 'ploop'))

    def test_values_are_converted(self):
        flavor = _flavor(**{'openvz:numproc': '400',
                            'openvz:layout': 'simfs'})
        self.assertEqual(400, extra_specs.value(flavor, 'numproc'))
        self.assertEqual('simfs', extra_specs.value(flavor, 'layout'))

    def test_bad_values_name_the_key_and_the_reason(self):
        cases = ((('openvz:cpuunits', '5'), 'below 8'),
                 (('openvz:cpuunits', '500001'), 'above 500000'),
                 (('openvz:ioprio', 'high'), 'not a'),
                 (('openvz:layout', 'qcow2'), 'must be one of ploop, simfs'))
        for (key, raw), reason in cases:
            flavor = _flavor(**{key: raw})
            error = self.assertRaises(exception.InvalidFlavorLimit,
                                      extra_specs.value, flavor,
                                      key.split(':')[1])
            message = error.format_message()
            self.assertIn('%s=%s' % (key, raw), message)
            self.assertIn(reason, message)
