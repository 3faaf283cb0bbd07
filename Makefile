# SKIN: `make serve` runs the system, `make test` runs the suite. Both install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# One stamp per set of extras and pyproject.toml's content: `make serve` installs what serving and
# the page need, everything else the lot (pyproject.toml says which extra holds what).
PINS := $(shell sha1sum pyproject.toml | cut -c1-12)
SERVING := $(VENV)/.installed-serve-$(PINS)
INSTALLED := $(VENV)/.installed-all-$(PINS)

# The browser test drives Debian's Chromium; CI runs as root, a developer through sudo.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: venv archive precision precision-avx2 serve test lint

# Editable, so that `python -m` and TorchServe's workers run this checkout; pip shows its progress.
# torch and torchvision resolve from this machine's local wheels through plain pip.
$(SERVING): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[serve,page]"
	rm -f $(VENV)/.installed-serve-* && touch $@

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[serve,page,train,dev]"
	rm -f $(VENV)/.installed-* && touch $@ $(SERVING)

venv: $(INSTALLED)

# The archive runs the precision chosen for this kind of CPU (model_store/skin_precision/<kind>.json);
# where there is none, tools.archive measures it first (about half a minute, docs/configuration.md).
# PRECISION=fp32|bf16|int8|int8-7bit overrides it. tools.archive rebuilds
# only when the hash of its inputs (weights, gate, calibration, the handler, contract and imaging
# packages, model-config, precision choices) differs from the one the archive recorded, whatever the
# files' times say.
PRECISION ?=
archive: $(SERVING)
	$(PY) -m tools.archive $(if $(PRECISION),--precision $(PRECISION))

# Calibrate both int8 variants on training images, write the check images (validation) and choose
# for this kind of CPU (about 2 min on 2 cores; speed wants a quiet CPU). `make precision-avx2`
# makes the AVX2-only choice on a larger CPU by capping torch's kernels at AVX2.
PRECISION_FLAGS ?=
precision: $(INSTALLED)
	$(PY) -m training.choose_precision $(RELEASE_WEIGHTS) $(DATA) $(PRECISION_FLAGS)

AVX2_ONLY := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2
precision-avx2: $(INSTALLED)
	rm -f model_store/skin_precision/avx2.json
	$(AVX2_ONLY) $(PY) -c "import settings; from tools.precision_choice import choose_here; choose_here(settings.WEIGHTS, 'make precision-avx2 (kernels capped at AVX2)')"

# TorchServe and the Streamlit page together; Ctrl-C stops both. SKIN_SSL=1 serves HTTPS for phones;
# SKIN_PROTOCOL=v2 serves KServe's v2 protocol (same archive, and the page speaks it too).
serve: archive
	$(PY) -m serve.launcher

/usr/bin/chromedriver:
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-wqy-zenhei

lint: $(INSTALLED)
	$(PY) -m ruff check .

# The slowest tests are printed on every run, to watch the suite's 20-minute budget.
test: lint /usr/bin/chromedriver
	$(PY) -m pytest --durations=20

# Training: `make train-cpu` trains the next release where the machine has no GPU (release 3.0's
# recipe, about 1.5 hours on 2 cores): the ResNet34 student on the labels alone for 12 epochs, a
# last phase at the served framing, then every decision on validation. TRAIN_FLAGS="--kd-alpha 0.5"
# distils instead: an EfficientNet-Lite0 teacher fine-tuned at 150x200 (its stem and first five
# blocks frozen; about 2 hours more), which labels stored views of each image (--views; 8 take
# about 25 minutes). It always continues the run in RUN, stage by stage and from the last
# checkpoint within an epoch, so running it again after a stop (or in a later session) picks up
# where it was; delete RUN to start over. RUN lives outside the work tree so that a fresh checkout
# finds it. `make train-cpu-detached` runs it in its own session, so closing the terminal does not
# end it. TRAIN_DATA takes any list of data folders (e.g. the full-size ISIC 2019). The student
# warm-starts from INIT (release 2.0, from git history). A run ships only if, at the same
# operating point (logit biases holding validation MEL sensitivity at decisions.py's floor), it
# beats the shipped release on validation BMA and on HAM10000's melanoma sensitivity, its referral
# flag is at least as specific, and an added circle hardly moves its validation melanoma calls.
# Empty: settings.py's data folders and release.
TRAIN_DATA ?=
DATA := $(if $(TRAIN_DATA),--data $(TRAIN_DATA))
RUN ?= $(HOME)/skin-runs/3.0-r7-labels
TRAIN_FLAGS ?=
RELEASE_1_0 := 40b1b1f
RELEASE_2_0 := 738423a
RELEASE_3_0 := 5056cb1
RELEASE_3_0_1 := ff565e3
INIT ?= runs/init-2.0.pt
SPLIT ?= test
WEIGHTS ?=
RELEASE_WEIGHTS := $(if $(WEIGHTS),--weights $(WEIGHTS))

.PHONY: train train-cpu train-cpu-detached evaluate compare recalibrate gate screenshots release-files ablate train-speed

# INIT=runs/init-3.0.pt (any release above) warm-starts from that release's weights in git history.
runs/init-%.pt:
	mkdir -p runs && git show $(RELEASE_$(subst .,_,$*)):model_store/skin_resnet34.pt > $@

TRAIN := $(PY) -m training.train $(DATA) --init $(INIT) --resume $(TRAIN_FLAGS)

train-cpu: $(INSTALLED) $(INIT)
	$(TRAIN) --output $(RUN) --threads 2

# The same run on a machine with a GPU (fp16 there), in its own folder.
train: $(INSTALLED) $(INIT)
	$(TRAIN) --output $(RUN)-gpu

train-cpu-detached: $(INSTALLED) $(INIT)
	mkdir -p $(RUN)
	setsid nohup $(MAKE) train-cpu >> $(RUN)/train.log 2>&1 < /dev/null &
	@echo "training in the background: tail -f $(RUN)/train.log; after a stop, run make train-cpu-detached again"

# The release on SPLIT (per source, MEL sensitivity, referral) and the table of MEL calls with one
# thing changed (a dermatoscope's circle added, blur, zoom): whether it reads the lesion or the equipment.
evaluate: $(INSTALLED)
	$(PY) -m training.evaluate $(DATA) --split $(SPLIT) $(RELEASE_WEIGHTS)

# 1.0, 2.0, 3.0 (from git history) and the shipped release (or WEIGHTS) on the same SPLIT images, each
# through its own preprocessing: the model card's side-by-side table, per source, MEL sensitivity in
# its own column, and how much a dermatoscope's circle moves the melanoma calls. SPLIT=val adds
# the figures the ship rule compares (biases refitted for decisions.py's MEL floor), in _val.json.
# RESCORE=shipped scores only the shipped release and keeps the others' figures (after recalibrate).
compare: $(INSTALLED)
	$(PY) -m training.compare $(DATA) --split $(SPLIT) $(if $(RESCORE),--rescore $(RESCORE)) \
		--release 1.0=$(RELEASE_1_0) 2.0=$(RELEASE_2_0) 3.0=$(RELEASE_3_0) 3.0.1=$(RELEASE_3_0_1) shipped=$(or $(WEIGHTS),model_store/skin_resnet34.pt)

# The release's logit biases, temperature and referral threshold decided again on validation by
# today's rules, without retraining; answers change, so give it a new VERSION. Then `make archive`
# and `make release-files`.
recalibrate: $(INSTALLED)
	$(PY) -m training.recalibrate $(DATA) $(RELEASE_WEIGHTS) $(if $(VERSION),--version $(VERSION))

# The release's gate (handler/gate.py): fitted on its own split and features, written beside the
# weights as model_store/skin_gate.pt, with its figures in docs/gate_report.json. Run it after every
# new release; the archive refuses a gate fitted for other weights (a few minutes on 2 cores).
gate: $(INSTALLED)
	$(PY) -m training.gate $(RELEASE_WEIGHTS) $(DATA)

# The page's screenshots in README.md and docs/api.md: the browser test run on the shipped release
# (or WEIGHTS) instead of a random one. It needs that release's gate.
screenshots: $(INSTALLED) /usr/bin/chromedriver
	SKIN_SCREENSHOTS=1 SKIN_TEST_WEIGHTS=$(or $(WEIGHTS),model_store/skin_resnet34.pt) $(PY) -m pytest tests/test_frontend_browser.py

# After a run writes a new release to model_store/: what is fitted or measured on its weights (the
# gate, the screenshots, the precision choices for this CPU and for AVX2-only ones), then the model
# card's table. The gate's non-lesion set holds the screenshots, so it is fitted again after them.
release-files: $(INSTALLED)
	$(MAKE) gate
	$(MAKE) screenshots
	$(MAKE) gate precision precision-avx2 compare

# Short runs for the model card's ablations, each fine-tuning the ImageNet EfficientNet-Lite0 with
# one choice changed or one source left out; writes docs/ablations.json. Run again after a stop (or in
# a later session), it trains only the variants not yet finished.
ablate: $(INSTALLED)
	$(PY) -m training.ablate $(DATA)

# Train-step and data-path img/s per precision and input size; run it on a quiet CPU.
train-speed: $(INSTALLED)
	$(PY) -m training.speed

# Ops, load and speed. Each works against `make serve` (keys from .run/serve/key_file.json),
# except bench and soak, which start their own TorchServe instances.
USERS ?= 8
DURATION ?= 60s
MODEL ?= skin
# v1 (/predictions/skin) or v2 (KServe's /v2/models/skin/infer); LOADTEST_FLAGS passes the rest,
# e.g. --token and --host-header for a cluster's ingress (docs/deploy.md).
PROTOCOL ?= v1
LOADTEST_FLAGS ?=

.PHONY: loadtest bench bench-avx2 soak models describe metrics profile

loadtest: $(INSTALLED)
	$(PY) -m loadtest --users $(USERS) --duration $(DURATION) --protocol $(PROTOCOL) $(LOADTEST_FLAGS)

# Own TorchServe instances; run on a quiet CPU. A full bench writes the best set-up to its report's
# recommended.json for a person to apply; it edits no tracked file.
bench: $(INSTALLED)
	$(PY) -m bench $(RELEASE_WEIGHTS)

# The same on a larger CPU with torch's kernels capped at AVX2, where no AVX2-only machine is at
# hand: the servers inherit the caps, and the archive serves the avx2 choice (make precision-avx2).
bench-avx2: $(INSTALLED)
	$(AVX2_ONLY) $(PY) -m bench $(RELEASE_WEIGHTS)

soak: $(INSTALLED)
	$(PY) -m loadtest.soak $(RELEASE_WEIGHTS)

models: $(SERVING)
	$(PY) -m ops models

describe: $(SERVING)
	$(PY) -m ops describe $(MODEL)

metrics: $(SERVING)
	$(PY) -m ops metrics

# Lone requests to `make serve`, each taken apart: decode, framing, task network, gate, answer,
# TorchServe's queue, its frontend-to-worker hop and HTTP (medians, ms).
profile: $(INSTALLED)
	$(PY) -m bench.request_profile

# Beyond one machine (docs/deploy.md). `make image` builds the container
# (GPU=1: CUDA wheels) where Docker exists; `make kserve-bundle` lays out what an InferenceService's
# storageUri points at (GPU=1: the GPU service's workers and batching).
IMAGE ?= skin
CUDA_TORCH_INDEX ?= https://download.pytorch.org/whl/cu128
KSERVE_BUNDLE ?= .run/kserve-bundle/$(if $(GPU),gpu,cpu)

.PHONY: image lock kserve-bundle

image: archive
	@command -v docker >/dev/null || { echo "make image needs Docker, which this machine lacks"; exit 1; }
	docker build $(if $(GPU),--build-arg TORCH_INDEX=$(CUDA_TORCH_INDEX) --build-arg TORCH_DEPS=) -t $(IMAGE):$(if $(GPU),gpu,cpu) .

# requirements-serve.lock: the image's PyPI packages with their hashes; after changing the serve extra.
lock: $(INSTALLED)
	$(PY) -m tools.lock

kserve-bundle: archive
	$(PY) -m tools.kserve_bundle --out $(KSERVE_BUNDLE) \
		$(if $(GPU),--model-config bench/gpu-model-config.yaml)
