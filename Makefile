# SKIN: `make serve` runs the system, `make test` runs the suite. Both install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)

RELEASE := model_store/skin_resnet34.pt model_store/skin_resnet34.json
ARCHIVE_INPUTS := $(RELEASE) $(wildcard handler/*.py) handler/classes.json handler/model-config.yaml

.PHONY: venv archive serve test

# torch and torchvision come from this machine's local wheels through plain pip (see README).
$(INSTALLED): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

venv: $(INSTALLED)

model_store/skin.mar: $(INSTALLED) $(ARCHIVE_INPUTS)
	$(PY) -m tools.archive

archive: model_store/skin.mar

serve: model_store/skin.mar
	$(PY) -m tools.torchserve

test: $(INSTALLED)
	$(PY) -m pytest
