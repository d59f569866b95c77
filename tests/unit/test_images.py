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

"""Glance images to OpenVZ OS templates."""

import hashlib
import io
import os
import random
import tarfile

import fixtures
from nova import exception as nova_exception
from nova import objects
from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import conf as openvz_conf
from nova_openvz import images
from nova_openvz.testing import fixtures as sim_fixture
from vzsim import templates

IMAGE_ID = '6d3c3bd2-8d0d-4c7b-9a7e-0d9b6f1e8a21'


def image_meta(properties=None, **fields):
    """ImageMeta as Nova hands it to spawn: built from Glance's dict."""
    objects.register_all()
    image = dict(id=IMAGE_ID, properties=properties or {}, **fields)
    return objects.ImageMeta.from_dict(image)


class FakeInstance(object):
    """The instance fields template_name reads."""

    def __init__(self, system_metadata=None, image_ref=IMAGE_ID):
        self.system_metadata = system_metadata or {}
        self.image_ref = image_ref


class TestTemplateName(testtools.TestCase):

    def test_distribution_version_and_architecture_lead_the_name(self):
        # Nova's image model drops os_version; Nova keeps every image
        # property in the instance's system metadata.
        meta = image_meta({'os_distro': 'Ubuntu', 'os_version': '22.04',
                           'architecture': 'x86_64'})
        instance = FakeInstance({'image_os_version': '22.04'})
        self.assertEqual('ubuntu-22.04-x86_64-nova-' + IMAGE_ID,
                         images.template_name(meta, instance))
        self.assertEqual('ubuntu-x86_64-nova-' + IMAGE_ID,
                         images.template_name(meta))

    def test_version_and_architecture_need_a_distribution(self):
        self.assertEqual('centos-nova-' + IMAGE_ID, images.template_name(
            image_meta({'os_distro': 'centos'})))
        self.assertEqual('nova-' + IMAGE_ID, images.template_name(
            image_meta({'hw_architecture': 'x86_64'}),
            FakeInstance({'image_os_version': '7'})))
        self.assertEqual('centos-7-nova-' + IMAGE_ID, images.template_name(
            image_meta({'os_distro': 'centos'}),
            FakeInstance({'image_os_version': '7'})))

    def test_without_properties_the_name_is_nova_and_the_id(self):
        self.assertEqual('nova-' + IMAGE_ID,
                         images.template_name(image_meta(), FakeInstance()))

    def test_invalid_parts_are_ignored(self):
        for distro in ('my distro', '../etc', '-debian', 'debian\n', 'déb'):
            meta = image_meta({'os_distro': distro})
            self.assertEqual('nova-' + IMAGE_ID, images.template_name(meta),
                             distro)
        self.assertEqual('debian-nova-' + IMAGE_ID, images.template_name(
            image_meta({'os_distro': 'debian'}),
            FakeInstance({'image_os_version': '12-bookworm'})))


class TestArchiveSuffix(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path

    def write(self, data, name='image.part'):
        path = os.path.join(self.dir, name)
        with open(path, 'wb') as f:
            f.write(data)
        return path

    def tarball(self, mode):
        path = os.path.join(self.dir, 'image-%s.part' % mode.replace(':', ''))
        with tarfile.open(path, mode) as tar:
            data = b'#!/bin/sh\n'
            info = tarfile.TarInfo('sbin/init')
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return path

    def test_compressed_and_plain_tarballs_are_recognised(self):
        for mode, suffix in (('w:gz', '.tar.gz'), ('w:xz', '.tar.xz'),
                             ('w:bz2', '.tar.bz2'), ('w', '.tar')):
            self.assertEqual(suffix, images.archive_suffix(
                self.tarball(mode), IMAGE_ID), mode)

    def test_the_test_template_is_a_gzip_tarball(self):
        path = self.write(templates.minimal_template_bytes())
        self.assertEqual('.tar.gz', images.archive_suffix(path, IMAGE_ID))

    def test_disk_images_and_noise_are_refused(self):
        qcow2 = b'QFI\xfb\x00\x00\x00\x03' + b'\x00' * 504
        noise = random.Random(7).randbytes(4096)
        for data in (qcow2, noise, b''):
            error = self.assertRaises(
                nova_exception.ImageUnacceptable, images.archive_suffix,
                self.write(data), IMAGE_ID)
            self.assertIn(IMAGE_ID, error.format_message())
            self.assertIn('tar', error.format_message())


class TestCheckFormat(testtools.TestCase):

    def test_disk_images_are_refused_saying_what_is_accepted(self):
        for fields, word in (({'disk_format': 'qcow2'}, 'qcow2'),
                             ({'disk_format': 'iso'}, 'iso'),
                             ({'disk_format': 'raw',
                               'container_format': 'docker'}, 'docker'),
                             ({'disk_format': 'ploop',
                               'container_format': 'ovf'}, 'ovf')):
            error = self.assertRaises(nova_exception.ImageUnacceptable,
                                      images.check_format,
                                      image_meta(**fields))
            message = error.format_message()
            self.assertIn(word, message)
            self.assertIn(images.ACCEPTED, message)
            # The whole answer survives Nova's 255-character fault.
            fault = nova_exception.BuildAbortException(
                instance_uuid=IMAGE_ID, reason=message).format_message()
            self.assertLessEqual(len(fault), 255)

    def test_raw_ploop_and_unset_formats_pass(self):
        images.check_format(image_meta(disk_format='raw'))
        images.check_format(image_meta(disk_format='raw',
                                       container_format='bare'))
        images.check_format(image_meta(disk_format='ploop',
                                       container_format='bare'))
        images.check_format(image_meta())


def _template_host(test):
    """A host tree with a template cache: (root, cache dir, vz.conf)."""
    root = test.useFixture(fixtures.TempDir()).path
    cache_dir = os.path.join(root, 'template', 'cache')
    os.makedirs(cache_dir)
    vz_conf = os.path.join(root, 'vz.conf')
    with open(vz_conf, 'w') as f:
        f.write('TEMPLATE=%s/template\n' % root)
    return root, cache_dir, vz_conf


class TestTemplateCache(testtools.TestCase):

    def setUp(self):
        super().setUp()
        root, self.cache_dir, vz_conf = _template_host(self)
        self.useFixture(config_fixture.Config(openvz_conf.CONF)).config(
            group='openvz', vz_conf=vz_conf)
        self.cache = images.TemplateCache()

    def test_cached_finds_every_template_suffix(self):
        self.assertIsNone(self.cache.cached('nova-x'))
        for suffix in images.SUFFIXES:
            name = 'nova-x%s' % suffix.replace('.', '-')
            path = os.path.join(self.cache_dir, name + suffix)
            open(path, 'w').close()
            self.assertEqual(path, self.cache.cached(name))
        open(os.path.join(self.cache_dir, 'nova-y.zip'), 'w').close()
        self.assertIsNone(self.cache.cached('nova-y'))

    def test_a_cached_image_is_not_downloaded_again(self):
        meta = image_meta(disk_format='raw')
        name = images.template_name(meta)
        open(os.path.join(self.cache_dir, name + '.tar.xz'), 'w').close()
        # No context and no instance: any attempt to reach Glance fails.
        self.assertEqual(name, self.cache.ensure(None, None, meta))

    def test_ensure_refuses_qcow2_even_when_cached(self):
        meta = image_meta(disk_format='qcow2')
        open(os.path.join(self.cache_dir,
                          images.template_name(meta) + '.tar'), 'w').close()
        self.assertRaises(nova_exception.ImageUnacceptable,
                          self.cache.ensure, None, None, meta)


class TestVerifyDownload(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                 'image.part')
        self.data = templates.minimal_template_bytes()
        with open(self.path, 'wb') as f:
            f.write(self.data)
        self.info = {}
        self.useFixture(fixtures.MockPatch(
            'nova.virt.images.get_info', lambda context, image_id: self.info))

    def test_multihash_is_checked_first(self):
        self.info.update(os_hash_algo='sha512',
                         os_hash_value=hashlib.sha512(self.data).hexdigest(),
                         checksum='not-looked-at')
        images.verify_download(None, IMAGE_ID, self.path)
        self.info['os_hash_value'] = hashlib.sha512(b'x').hexdigest()
        error = self.assertRaises(nova_exception.ImageUnacceptable,
                                  images.verify_download, None, IMAGE_ID,
                                  self.path)
        self.assertIn('sha512', error.format_message())

    def test_legacy_md5_checksum_is_checked(self):
        self.info['checksum'] = hashlib.md5(self.data).hexdigest()
        images.verify_download(None, IMAGE_ID, self.path)
        self.info['checksum'] = hashlib.md5(b'x').hexdigest()
        self.assertRaises(nova_exception.ImageUnacceptable,
                          images.verify_download, None, IMAGE_ID, self.path)

    def test_an_image_without_hashes_is_accepted(self):
        images.verify_download(None, IMAGE_ID, self.path)


class TestManage(testtools.TestCase):

    OTHER = '0f0e9b1c-6b1c-4c1a-9f7e-4a5c0e2b8d10'

    def setUp(self):
        super().setUp()
        root, self.cache_dir, vz_conf = _template_host(self)
        self.flags = self.useFixture(config_fixture.Config(openvz_conf.CONF))
        self.flags.config(group='openvz', vz_conf=vz_conf)
        self.flags.config(group='oslo_concurrency', lock_path=root)
        self.useFixture(sim_fixture.InProcessPrivsep())
        self.cache = images.TemplateCache()
        self.files = ['debian-12-nova-%s.tar.gz' % IMAGE_ID,
                      'nova-%s.tar' % self.OTHER, 'centos-7-x86_64.tar.gz']
        for name in self.files:
            path = os.path.join(self.cache_dir, name)
            open(path, 'w').close()
            os.utime(path, (1000, 1000))

    def listing(self):
        return sorted(os.listdir(self.cache_dir))

    def test_used_templates_are_touched_unused_old_ones_removed(self):
        self.flags.config(group='image_cache',
                          remove_unused_original_minimum_age_seconds=3600)
        removed = self.cache.manage([FakeInstance()])
        self.assertEqual(['nova-%s.tar' % self.OTHER], removed)
        self.assertEqual(sorted(self.files[::2]), self.listing())
        used = os.path.join(self.cache_dir, self.files[0])
        self.assertGreater(os.path.getmtime(used), 1000)
        # The operator's own template is never aged nor removed.
        self.assertEqual(1000, os.path.getmtime(
            os.path.join(self.cache_dir, self.files[2])))

    def test_young_unused_templates_stay(self):
        os.utime(os.path.join(self.cache_dir, self.files[1]))   # now
        # Unused, but only the old one goes (default minimum age: a day).
        self.assertEqual([self.files[0]], self.cache.manage([]))
        self.assertEqual(sorted(self.files[1:]), self.listing())

    def test_nothing_is_removed_when_nova_says_so(self):
        self.flags.config(group='image_cache',
                          remove_unused_base_images=False)
        self.assertEqual([], self.cache.manage([]))
        self.assertEqual(sorted(self.files), self.listing())


class TestClearStaging(testtools.TestCase):
    """What a killed nova-compute left in staging goes when it starts."""

    def setUp(self):
        super().setUp()
        self.staging = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'staging')
        flags = self.useFixture(config_fixture.Config(openvz_conf.CONF))
        flags.config(group='openvz', image_staging_dir=self.staging)

    def test_files_and_work_dirs_are_removed_links_not_followed(self):
        outside = self.useFixture(fixtures.TempDir()).path
        os.makedirs(os.path.join(self.staging, 'ploop-x', 'sub'))
        for name in ('snapshot-x.tar.gz', 'debian.part'):
            with open(os.path.join(self.staging, name), 'w') as f:
                f.write('partial')
        with open(os.path.join(outside, 'kept'), 'w') as f:
            f.write('kept')
        os.symlink(outside, os.path.join(self.staging, 'link'))
        images.clear_staging()
        self.assertEqual([], os.listdir(self.staging))
        self.assertEqual(['kept'], os.listdir(outside))

    def test_no_staging_dir_yet_is_fine(self):
        images.clear_staging()
        self.assertFalse(os.path.exists(self.staging))


class _Chunks(list):
    """What glanceclient's ``data()`` returns: chunks, ``wrapped`` set."""
    wrapped = True


class _GlanceImage(dict):
    """An image as glanceclient returns it: a dict with its schema."""
    schema = {'name': 'image', 'properties': dict.fromkeys(
        ('id', 'name', 'status', 'visibility', 'disk_format',
         'container_format', 'size', 'checksum', 'os_hash_algo',
         'os_hash_value'), {})}


class _GlanceClient(object):
    """The network side of Nova's Glance client, serving one image."""

    def __init__(self, image, data):
        self.image, self.data, self.downloads = image, data, 0

    def call(self, context, version, method, args=()):
        if method == 'get':
            return _GlanceImage(self.image)
        if method == 'data':
            self.downloads += 1
            return _Chunks([self.data[i:i + 1024]
                            for i in range(0, len(self.data), 1024)])
        raise AssertionError('unexpected Glance call %s' % method)


def _use_glance_client(test, client):
    """Nova's Glance API serves ``client``'s image to a new template cache.

    Sets ``client``, ``cache``, ``context`` and ``instance`` on ``test``.
    """
    from nova import context as nova_context
    from nova.image import glance

    test.client = client
    service = glance.GlanceImageServiceV2(client=client)
    test.useFixture(fixtures.MockPatch(
        'nova.image.glance.get_default_image_service',
        return_value=service))
    test.cache = images.TemplateCache()
    test.context = nova_context.get_admin_context()
    test.instance = FakeInstance()
    test.instance.trusted_certs = None


class TestSignatureVerification(testtools.TestCase):
    """ensure() downloads through Nova's Glance client and its verifier."""

    def setUp(self):
        super().setUp()
        root, self.cache_dir, vz_conf = _template_host(self)
        self.staging = os.path.join(root, 'staging')
        self.flags = self.useFixture(config_fixture.Config(openvz_conf.CONF))
        self.flags.config(group='openvz', vz_conf=vz_conf,
                          image_staging_dir=self.staging)
        self.flags.config(group='oslo_concurrency', lock_path=root)
        self.useFixture(sim_fixture.InProcessPrivsep())
        data = templates.minimal_template_bytes()
        _use_glance_client(self, _GlanceClient({
            'id': IMAGE_ID, 'status': 'active', 'visibility': 'public',
            'disk_format': 'raw', 'container_format': 'bare',
            'size': len(data), 'os_hash_algo': 'sha512',
            'os_hash_value': hashlib.sha512(data).hexdigest()}, data))

    def test_unsigned_image_is_refused_when_signatures_are_required(self):
        self.flags.config(group='glance', verify_glance_signatures=True)
        from cursive import exception as cursive_exception
        error = self.assertRaises(
            cursive_exception.SignatureVerificationError, self.cache.ensure,
            self.context, self.instance, image_meta(disk_format='raw'))
        self.assertIn('img_signature', str(error))
        self.assertEqual(0, self.client.downloads)
        self.assertEqual([], os.listdir(self.cache_dir))
        self.assertEqual([], os.listdir(self.staging))

    def test_without_the_option_the_image_is_streamed_and_cached(self):
        name = self.cache.ensure(self.context, self.instance,
                                 image_meta(disk_format='raw'))
        self.assertEqual(1, self.client.downloads)
        self.assertEqual([name + '.tar.gz'], os.listdir(self.cache_dir))
        self.assertEqual([], os.listdir(self.staging))


class TestPloopImages(testtools.TestCase):
    """A disk_format=ploop image becomes a template, on a simulated host.

    Nova's Glance client serves the image; the simulated host's own ploop
    (modelled kernel: a lone delta shows an empty filesystem) rebuilds its
    descriptor and mounts it; the helper packs it.
    """

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(sim_fixture.SimulatedHostFixture())
        self.useFixture(sim_fixture.InProcessPrivsep())
        self.flags = self.useFixture(config_fixture.Config(openvz_conf.CONF))
        self.flags.config(group='oslo_concurrency',
                          lock_path=self.useFixture(fixtures.TempDir()).path)
        self.staging = openvz_conf.CONF.openvz.image_staging_dir
        self.cache_dir = os.path.join(self.host.root, 'vz/template/cache')
        _use_glance_client(self, _GlanceClient({}, b''))

    def serve(self, data):
        self.client.image = {
            'id': IMAGE_ID, 'status': 'active', 'visibility': 'public',
            'disk_format': 'ploop', 'container_format': 'bare',
            'size': len(data), 'os_hash_algo': 'sha512',
            'os_hash_value': hashlib.sha512(data).hexdigest()}
        self.client.data = data

    def made_delta(self):
        """A delta made by the simulated host's ``ploop init``."""
        made = os.path.join(self.host.root, 'made')
        code, out, err = self.host.run('ploop', 'init', '-s', '8M',
                                       os.path.join(made, 'root.hdd'))
        self.assertEqual(0, code, err)
        with open(os.path.join(made, 'root.hdd'), 'rb') as f:
            return f.read()

    def ensure(self):
        return self.cache.ensure(self.context, self.instance,
                                 image_meta(disk_format='ploop',
                                            container_format='bare'))

    def ploop_calls(self):
        """The driver's ploop calls (not the test's own init and list)."""
        return [c['argv'] for c in self.host.calls() if c['tool'] == 'ploop'
                and c['argv'][0] not in ('init', 'list')]

    def assertNothingLeft(self):
        self.assertEqual([], os.listdir(self.staging))
        self.assertEqual([], [name for name in os.listdir(
            os.path.join(self.host.root, 'vz/root')) if 'ploop' in name])
        code, out, err = self.host.run('ploop', 'list', '-a')
        self.assertEqual((0, ''), (code, out), err)

    def test_a_ploop_image_is_cached_as_a_template_tarball(self):
        self.serve(self.made_delta())
        name = self.ensure()
        self.assertEqual('nova-' + IMAGE_ID, name)
        self.assertEqual([name + '.tar.gz'], os.listdir(self.cache_dir))
        with tarfile.open(os.path.join(self.cache_dir,
                                       name + '.tar.gz')) as tar:
            self.assertEqual(['.'], tar.getnames())
        work = os.path.join(self.staging, 'ploop-' + IMAGE_ID)
        mount_dir = os.path.join(self.host.root, 'vz/root',
                                 'nova-ploop-' + IMAGE_ID)
        self.assertEqual([
            ['restore-descriptor', '-f', 'ploop1', work,
             os.path.join(work, 'root.hdd')],
            ['mount', '-r', '-m', mount_dir,
             os.path.join(work, 'DiskDescriptor.xml')],
            ['umount', '-m', mount_dir]], self.ploop_calls())
        self.assertNothingLeft()
        # Cached: a second boot neither downloads nor runs ploop.
        self.assertEqual(name, self.ensure())
        self.assertEqual(1, self.client.downloads)
        self.assertEqual(3, len(self.ploop_calls()))

    def test_a_corrupt_image_is_unacceptable_with_ploop_words(self):
        self.serve(b'QFI\xfb' + b'\0' * (1024 * 1024 - 4))
        error = self.assertRaises(nova_exception.ImageUnacceptable,
                                  self.ensure)
        message = error.format_message()
        self.assertIn('ploop restore-descriptor failed with exit code 11',
                      message)
        # The staging path is left out: the whole verdict fits a fault.
        self.assertIn('Invalid image header in root.hdd: not a ploop1 delta',
                      message)
        self.assertEqual([], os.listdir(self.cache_dir))
        self.assertNothingLeft()

    def test_a_failed_mount_leaves_nothing(self):
        self.serve(self.made_delta())
        self.host.inject_fault('ploop', command='mount', exit_code=21,
                               stderr='Error in mount: bad superblock')
        error = self.assertRaises(nova_exception.ImageUnacceptable,
                                  self.ensure)
        self.assertIn('exit code 21: Error in mount: bad superblock',
                      error.format_message())
        self.assertEqual([], os.listdir(self.cache_dir))
        self.assertNothingLeft()

    def test_a_failed_pack_unmounts_and_leaves_nothing(self):
        from nova_openvz import exception

        self.serve(self.made_delta())
        tools = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(tools, 'tar'), 'w') as f:
            f.write('#!/bin/sh\necho "tar: disk read error" >&2\nexit 2\n')
        os.chmod(os.path.join(tools, 'tar'), 0o755)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_openvz.privsep.TOOL_PATH', tools))
        error = self.assertRaises(exception.HostToolError, self.ensure)
        self.assertEqual(('tar', 2), (error.tool, error.exit_code))
        self.assertEqual('umount', self.ploop_calls()[-1][0])
        self.assertEqual([], os.listdir(self.cache_dir))
        self.assertNothingLeft()

    def test_a_download_not_matching_glance_hash_runs_no_ploop(self):
        self.serve(self.made_delta())
        self.client.image['os_hash_value'] = hashlib.sha512(
            b'other').hexdigest()
        self.assertRaises(nova_exception.ImageUnacceptable, self.ensure)
        self.assertEqual([], self.ploop_calls())
        self.assertNothingLeft()

    def test_a_host_failure_is_not_blamed_on_the_image(self):
        from nova_openvz import exception

        self.serve(self.made_delta())
        self.host.inject_fault('ploop', command='restore-descriptor',
                               exit_code=4, stderr="Can't open: EIO")
        error = self.assertRaises(exception.HostToolError, self.ensure)
        self.assertNotIsInstance(error, nova_exception.ImageUnacceptable)
        self.assertEqual(4, error.exit_code)
        self.assertNothingLeft()
