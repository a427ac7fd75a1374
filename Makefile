# Set-up pins torch to the CPU build 2.13.0: an unpinned torch pulls a multi-GB CUDA build.
PY ?= python3
SETUP = $(PY) -m pip install -q "torch==2.13.0" -e ".[test]"

.PHONY: setup test demo
setup:
	$(SETUP)

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) -m damoyolo demo --out runs/demo
