"""Glance images to OpenVZ OS templates."""

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
from nova_openvz import hostconfig
from nova_openvz import images
from nova_openvz.simulator import templates

IMAGE_ID = '6d3c3bd2-8d0d-4c7b-9a7e-0d9b6f1e8a21'


def image_meta(properties=None, **fields):
    """ImageMeta as Nova hands it to spawn: built from Glance's dict."""
    objects.register_all()
    image = dict(id=IMAGE_ID, properties=properties or {}, **fields)
    return objects.ImageMeta.from_dict(image)


class TestTemplateName(testtools.TestCase):

    def test_distribution_and_architecture_lead_the_name(self):
        # os_version is a Glance property Nova's image model drops.
        meta = image_meta({'os_distro': 'Ubuntu', 'os_version': '22.04',
                           'hw_architecture': 'x86_64'})
        self.assertEqual('ubuntu-x86_64-nova-' + IMAGE_ID,
                         images.template_name(meta))

    def test_parts_stop_at_the_first_missing_one(self):
        self.assertEqual('centos-nova-' + IMAGE_ID, images.template_name(
            image_meta({'os_distro': 'centos'})))
        self.assertEqual('nova-' + IMAGE_ID, images.template_name(
            image_meta({'hw_architecture': 'x86_64'})))

    def test_without_properties_the_name_is_nova_and_the_id(self):
        self.assertEqual('nova-' + IMAGE_ID,
                         images.template_name(image_meta()))

    def test_invalid_parts_are_ignored(self):
        for distro in ('my distro', '../etc', '-debian', 'debian\n', 'déb'):
            meta = image_meta({'os_distro': distro})
            self.assertEqual('nova-' + IMAGE_ID, images.template_name(meta),
                             distro)


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

    def test_qcow2_is_refused_before_any_download(self):
        error = self.assertRaises(nova_exception.ImageUnacceptable,
                                  images.check_format,
                                  image_meta(disk_format='qcow2'))
        self.assertIn('qcow2', error.format_message())

    def test_raw_and_unset_formats_pass(self):
        images.check_format(image_meta(disk_format='raw'))
        images.check_format(image_meta())


class TestTemplateCache(testtools.TestCase):

    def setUp(self):
        super().setUp()
        root = self.useFixture(fixtures.TempDir()).path
        self.cache_dir = os.path.join(root, 'template', 'cache')
        os.makedirs(self.cache_dir)
        vz_conf = os.path.join(root, 'vz.conf')
        with open(vz_conf, 'w') as f:
            f.write('TEMPLATE=%s/template\n' % root)
        self.useFixture(config_fixture.Config(openvz_conf.CONF)).config(
            group='openvz', vz_conf=vz_conf)
        self.cache = images.TemplateCache(hostconfig.HostConfig())

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
