# vagrant.mk: the Vagrant lab's targets. Include it at the end of the top-level
# Makefile (include vagrant/vagrant.mk): it uses that Makefile's OUT, BINARIES
# and IMAGES in prerequisites, which make expands as it reads them.
#   make vagrant-box    build the offline box (Debian 12 + capsec + CRIU) and add it
#   make vagrant-demo   VMs up, PLC on node1, moves node1 -> node2 -> node1, destroy
#   make vagrant-test   the same demo with assertions (slow under TCG, not in `make test`)
#   make vagrant-check  what CI runs: vagrant validate (when vagrant is installed)
#                       and provision.sh's own unit checks; no VMs
# Both vagrant-box and vagrant-demo are safe to re-run and clean up after a failure.

VAGRANT_LAB := vagrant
# The box bakes the binaries in, so it is rebuilt when they change (the
# debootstrapped base is cached: a rebuild takes about a minute).
VAGRANT_BOX := $(OUT)/vagrant/capsec-bookworm.box
VAGRANT_BOX_INPUTS := $(BINARIES) $(IMAGES)/plcsim/config.json $(wildcard $(VAGRANT_LAB)/build-box.sh $(VAGRANT_LAB)/lib.sh)

.PHONY: vagrant-deps vagrant-box vagrant-demo vagrant-test vagrant-check vagrant-down

vagrant-deps:
	$(VAGRANT_LAB)/install-deps.sh

vagrant-box: $(VAGRANT_BOX)

# deps brings CRIU to /opt/capsec/criu, vagrant-deps debootstrap and libvirt.
$(VAGRANT_BOX): $(VAGRANT_BOX_INPUTS) | deps vagrant-deps
	CAPSEC_OUT=$(abspath $(OUT)) $(VAGRANT_LAB)/build-box.sh

vagrant-demo: vagrant-deps $(VAGRANT_BOX)
	CAPSEC_OUT=$(abspath $(OUT)) $(VAGRANT_LAB)/demo.sh

vagrant-test: vagrant-deps $(VAGRANT_BOX)
	CAPSEC_OUT=$(abspath $(OUT)) $(VAGRANT_LAB)/demo.sh --test

vagrant-down:
	CAPSEC_OUT=$(abspath $(OUT)) $(VAGRANT_LAB)/demo.sh down

vagrant-check:
	@if command -v vagrant >/dev/null; then \
		echo "vagrant validate"; \
		VAGRANT_CWD=$(CURDIR)/$(VAGRANT_LAB) VAGRANT_CHECKPOINT_DISABLE=1 \
			VAGRANT_DOTFILE_PATH=$(CURDIR)/_output/vagrant/machines \
			VAGRANT_HOME=$(CURDIR)/_output/vagrant/home vagrant validate; \
	else \
		echo "vagrant-check: vagrant not installed, skipping vagrant validate"; \
	fi
	$(VAGRANT_LAB)/provision.sh --check
