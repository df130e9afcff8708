# debian/deb.mk - the Debian package; GNUmakefile includes it.
#
#   make deb         build/deb/usbsync_<version>_<arch>.deb, checked by lintian
#   make deb-check   make deb, then install, upgrade, remove and purge it on
#                    this machine (as root) and check what each step leaves
#
# The package is built from a copy of the tree under $(DEB_BUILD), since
# dpkg-buildpackage writes its results beside the source, and without its
# tests (nocheck): `make check` has already run them on the same code.

DEB_BUILD ?= $(BUILD)/deb
DEB_ARCH = $(shell dpkg-architecture -qDEB_HOST_ARCH 2>/dev/null)
DEB_FILE = $(DEB_BUILD)/usbsync_$(VERSION)_$(DEB_ARCH).deb

.PHONY: deb deb-check

deb: deps
	@scripts/build-deb $(DEB_BUILD) $(VERSION)

deb-check: deb
	@tests/deb-check.sh $(DEB_FILE)
