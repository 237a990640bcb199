# The project's commands. Each one creates .venv and installs the project (editable, with the dev
# extra) at the exact versions of constraints.txt when .venv is missing or when pyproject.toml or
# constraints.txt changed since the last install. Needs only Python >= 3.10 with pip and venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The stamp is named by a hash of the install inputs' content, not their times: nbdev-export rewrites
# pyproject.toml with the same content, which must not trigger a reinstall.
HASH   := $(shell cat pyproject.toml constraints.txt | $(PYTHON) -c "import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])")
STAMP  := $(VENV)/.installed-$(HASH)

# The lock file goes through the environment so that it replaces any machine-wide pip constraint.
export PIP_CONSTRAINT := $(abspath constraints.txt)
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install export test check lock clean demo docs docs-check nbs bench gpu-check

install: $(STAMP)

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --editable '.[dev]'
	@rm -f $(VENV)/.installed*
	@touch $(STAMP)

# The main job: gift-eval on the embedded Fashion-MNIST RDED set, GIFT vs KL (a few minutes on 2 CPU cores).
demo: $(STAMP)
	$(BIN)/gift-eval --epochs 100 --out demo-results

# The speed benchmarks (by hand, not part of `test`; the default-setting run alone took 11 min on 2 CPU cores): images/s of the compute bound, our
# path and a reference-style loop at the default settings (fp32), in bfloat16, and with each speed lever off
# (channels-last layout, the allocator; "before" = both off), then each setting's accuracy on real data.
# Tables printed, results in bench/results/*.json (the README's performance section reads them).
bench: export PYTHONWARNINGS := ignore:`torch.jit.script` is deprecated:FutureWarning,ignore:The 'mode.chained_assignment' option is deprecated:Warning
bench: $(STAMP)
	$(BIN)/python bench/bench.py
	$(BIN)/python bench/bench.py --precision bf16 --skip reference,rded
	$(BIN)/python bench/bench.py --channels-last off --malloc default --skip loss,teacher,rded
	$(BIN)/python bench/bench.py --malloc default --cases c3-32-n100,c4-64-n100 --skip reference,loss,teacher,rded
	$(BIN)/python bench/bench.py --channels-last off --cases c3-32-n100,c4-64-n100 --skip reference,loss,teacher,rded
	$(BIN)/python bench/dsa_throughput.py
	$(BIN)/python bench/levers_tried.py
	$(BIN)/python bench/accuracy.py --settings fp32-nchw,fp32-cl,bf16-cl,bf16teacher-cl

# The GPU check (by hand, on a machine with a CUDA GPU; under 8 minutes on one H100/H200): bench.py on cuda in fp32/bf16/fp16, the
# CUDA-only tests, a checkpoint written on CUDA and resumed on the CPU, a 1-GPU nccl launch, several runs per GPU against one,
# GPU against CPU accuracy, the paper's grid extrapolated; writes bench/results/gpu-check.json. Without a GPU it says so and exits 0.
gpu-check: export PYTHONWARNINGS := ignore:`torch.jit.script` is deprecated:FutureWarning,ignore:The 'mode.chained_assignment' option is deprecated:Warning
gpu-check: $(STAMP)
	$(BIN)/python bench/gpu_check.py

# Write gift_fastai/ and README.md from the notebooks (the notebooks are the source; README.md is nbs/index.ipynb).
export: $(STAMP)
	$(BIN)/nbdev-export
	$(BIN)/python tools/build_docs.py readme

# Run notebooks in a Jupyter kernel and save their outputs, which the docs show (NBS=nbs/05_data.ipynb for one).
NBS ?= nbs/*.ipynb
nbs: $(STAMP)
	$(BIN)/python tools/run_nbs.py $(NBS)
	$(BIN)/nbdev-clean

# The documentation site, offline, into _docs/ (nbdev's processed notebooks rendered by Sphinx + MyST-NB; see README).
docs: export PYTHONWARNINGS := ignore:`torch.jit.script` is deprecated:FutureWarning,ignore:The 'mode.chained_assignment' option is deprecated:Warning
docs: $(STAMP)
	$(BIN)/python tools/build_docs.py

# The built site in headless Chromium (Debian's chromium, driven by Playwright): pages, links, images, signatures, math,
# search; screenshots in _docs/screenshots/.
docs-check: docs
	$(BIN)/python -m pytest -p no:cacheprovider docs/test_site.py docs/test_report.py

# Every notebook under nbdev-test, then the pytest suite. Only fastai's two import-time warnings
# (torch.jit.script's deprecation, pandas' mode.chained_assignment) are filtered
# (here for the notebooks, in pyproject.toml for pytest).
test: export PYTHONWARNINGS := ignore:`torch.jit.script` is deprecated:FutureWarning,ignore:The 'mode.chained_assignment' option is deprecated:Warning
test: $(STAMP)
	$(BIN)/nbdev-test
	$(BIN)/python -m pytest tests/

# The committed package and notebooks are exactly what nbdev-export and nbdev-clean produce.
check: $(STAMP)
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	$(BIN)/python tools/build_docs.py readme
	@if [ -n "$$(git status --porcelain -- gift_fastai nbs README.md)" ]; then git status --short -- gift_fastai nbs README.md; \
	  echo "gift_fastai/, nbs/ or README.md is out of sync with the notebooks: run 'make export' and 'nbdev-clean', then commit."; exit 1; fi

# Re-pin constraints.txt from the current environment (after a deliberate upgrade).
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^gift-fastai' > constraints.txt

clean:
	rm -rf $(VENV) _proc _docs _docs_src .pytest_cache
