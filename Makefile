# galaxy_vae: `make run` starts the app, `make test` runs every test. Both install what is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SHARED ?= ../shared/data
SAMPLE_DIR := $(SHARED)/gz1_small_eggochi
SAMPLE := data/gz1_sample.h5
PORT   ?= 8501

STATMORPH_VERSION := 0.7.2
# statmorph's reference stamp (its own tests' data), taken from its published sdist, never committed
STATMORPH_STAMP := tests/data/statmorph/slice.fits

.PHONY: install browser sample run test lint fuzz bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q -e '.[test,scale]'
	touch $@

# Debian's chromium for the real-browser tests (installed when running as root, e.g. in CI).
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "chromium is missing: browser tests will be skipped. Install it with: sudo apt-get install -y chromium"; \
	fi

sample: $(SAMPLE)

$(SAMPLE): | install
	@if [ ! -d "$(SAMPLE_DIR)/Imagenes" ]; then \
		echo "The offline sample $(SAMPLE_DIR) is not here, so $(SAMPLE) cannot be built."; \
		echo "Get data another way:"; \
		echo "  $(BIN)/python -m galaxy_vae fetch galaxy10            # Galaxy10 SDSS, 21,785 galaxies (needs a network)"; \
		echo "  $(BIN)/python -m galaxy_vae import DIR --labels CSV --out data/mine.h5   # your own cutouts"; \
		exit 1; \
	fi
	$(BIN)/python -m galaxy_vae import $(SAMPLE_DIR)/Imagenes --labels $(SAMPLE_DIR)/smallCSV_class.csv \
		--out $(SAMPLE) --class-names "Elliptical" "Spiral CW" "Spiral ACW" "Edge-on" "Don't know" "Merger" \
		--source "SDSS DR7 cutouts with Galaxy Zoo 1 labels (gz1_small_eggochi sample)"

run: install sample
	$(BIN)/streamlit run streamlit_app.py --server.port $(PORT)

$(STATMORPH_STAMP): | install
	mkdir -p $(@D)/sdist
	$(BIN)/pip download --disable-pip-version-check -q --no-deps --no-binary statmorph -d $(@D)/sdist \
		statmorph==$(STATMORPH_VERSION)
	tar -xzf $(@D)/sdist/statmorph-$(STATMORPH_VERSION).tar.gz -C $(@D) --strip-components=4 \
		statmorph-$(STATMORPH_VERSION)/statmorph/tests/data/slice.fits
	rm -rf $(@D)/sdist

lint: install
	$(BIN)/ruff check .

test: install browser sample $(STATMORPH_STAMP) lint
	$(BIN)/python -m pytest -q

# A long fuzzing run (the test suite runs a bounded one): FUZZ_EXAMPLES cases per target.
FUZZ_EXAMPLES ?= 5000
fuzz: install sample
	GALAXY_VAE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/test_fuzz.py --hypothesis-show-statistics

bench: install sample
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info tests/data/statmorph
