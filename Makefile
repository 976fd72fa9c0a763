# Two commands do everything on a fresh machine (see README):
#   make demo    set up, generate demo data, train a WSCNN, show the result in napari
#                (make demo ARGS=--headless writes files and a screenshot instead)
#   make test    set up and run the whole test suite under Xvfb
VENV ?= .venv
PY := $(VENV)/bin/python
XVFB := xvfb-run -a -s "-screen 0 1600x1200x24"
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	@if [ -z "$$DISPLAY" ] || echo " $(ARGS) " | grep -q -- " --headless "; then \
	  $(XVFB) $(VENV)/bin/rarepheno demo $(if $(findstring --headless,$(ARGS)),,--headless) $(ARGS); \
	else $(VENV)/bin/rarepheno demo $(ARGS); fi

test: setup
	QT_API=pyqt6 QT_QPA_PLATFORM=xcb $(XVFB) $(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/run_all.py $(ARGS)

clean:
	rm -rf demo-output .pytest_cache build dist
