# kinformer: a Lua 5.4 module with a C core.
#   make            build lua/kinformer/core.so (-Wall -Wextra -Werror)
#   make deps       install missing Debian packages (as root), else print the apt-get line
#   make cluster    build once and start the local test control plane (.cluster/); NODES=n fake Nodes (default 3)
#   make test       everything: C tests under sanitizers, specs against the control plane
#   make demo       watch namespaces on the local control plane while namespace aaa comes and goes

LUA_VERSION ?= 5.4
LUA_INCDIR  ?= /usr/include/lua$(LUA_VERSION)
LUA         ?= lua$(LUA_VERSION)
CC          ?= cc
CFLAGS      ?= -O2 -g
WARN        := -Wall -Wextra -Werror -std=gnu11
PKG_CFLAGS  := $(shell pkg-config --cflags libcurl yaml-0.1 libmicrohttpd 2>/dev/null)
PKG_LIBS    := $(shell pkg-config --libs libcurl yaml-0.1 libmicrohttpd 2>/dev/null || echo -lcurl -lyaml -lmicrohttpd)

CORE_SRC := csrc/kn_err.c csrc/kn_buf.c csrc/kn_base64.c csrc/kn_json.c csrc/kn_kubeconfig.c \
            csrc/kn_config.c csrc/kn_exec.c csrc/kn_creds.c csrc/kn_loop.c csrc/kn_client.c csrc/kn_obj.c \
            csrc/kn_watch.c csrc/kn_list.c csrc/kn_store.c csrc/kn_queue.c csrc/kn_reflector.c csrc/kn_reflector_client.c \
            csrc/kn_calls.c csrc/kn_workqueue.c csrc/kn_metrics.c csrc/kn_health.c csrc/kn_serve.c
BIND_SRC := csrc/lk_core.c csrc/lk_json.c csrc/lk_informer.c csrc/lk_workqueue.c csrc/lk_signal.c csrc/lk_serve.c
HDRS     := $(wildcard csrc/*.h)
MODULE   := lua/kinformer/core.so

DEB_PKGS := lua5.4 liblua5.4-dev lua-cjson libcurl4-openssl-dev libyaml-dev lua-busted lua-check \
            luarocks pkg-config openssl curl ca-certificates gcc make python3 strace clang valgrind libmicrohttpd-dev

export LUA_PATH  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;
export LUA_CPATH := $(CURDIR)/lua/?.so;;

.PHONY: all deps cluster cluster-down test test-c test-lua test-rock lint demo clean bench bench-build bench-smoke soak

all: $(MODULE)

$(MODULE): $(CORE_SRC) $(BIND_SRC) $(HDRS)
	$(CC) $(CFLAGS) $(WARN) -fPIC -shared -I$(LUA_INCDIR) $(PKG_CFLAGS) -o $@ $(CORE_SRC) $(BIND_SRC) $(PKG_LIBS) -lpthread -lm

deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "make deps: installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
	  echo "make deps: missing Debian packages; run:"; \
	  echo "  sudo apt-get install -y $$missing"; exit 1; \
	fi

cluster: deps
	$(if $(NODES),KINFORMER_NODES=$(NODES) )spec/cluster/up.sh

cluster-down:
	spec/cluster/down.sh

lint: deps
	luacheck -q --std lua54 lua examples
	luacheck -q --std lua54+busted --max-line-length 130 spec

# C unit tests, under AddressSanitizer and UndefinedBehaviorSanitizer. Allocations pass through
# spec/c/alloc_fail.c, which can fail the n-th one (out-of-memory paths, for every n of a scenario);
# KN_TEST_ALLOC lets spec/c/test_creds.c fail the allocation of a credential.
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
build/ctest: spec/c/test_main.c $(wildcard spec/c/*.c spec/c/*.h) $(CORE_SRC) $(HDRS)
	@mkdir -p build
	$(CC) -O1 -g $(WARN) $(SAN) -DKN_TEST_ALLOC -Icsrc $(PKG_CFLAGS) -o $@ $(wildcard spec/c/*.c) $(CORE_SRC) $(PKG_LIBS) -lpthread -lm \
	  -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup

test-c: deps build/ctest build/ctest-binding
	cd spec/c && ../../build/ctest
	build/ctest-binding

# The binding (lk_*.c) in a lua_State whose allocator fails from the Nth allocation on, for every N:
# an out-of-memory raise midway leaks nothing and loses no event.
build/ctest-binding: spec/c/binding/test_binding_oom.c $(CORE_SRC) $(BIND_SRC) $(HDRS)
	@mkdir -p build
	$(CC) -O1 -g $(WARN) $(SAN) -Icsrc -I$(LUA_INCDIR) $(PKG_CFLAGS) -o $@ $< $(CORE_SRC) $(BIND_SRC) \
	  -llua$(LUA_VERSION) $(PKG_LIBS) -lpthread -lm

# libFuzzer targets (clang), under AddressSanitizer and UndefinedBehaviorSanitizer: the watch framer and
# event parser, list pages, kubeconfig files, exec credentials, the binding's JSON codec. `make fuzz` runs
# each for FUZZ_SECONDS from the seeds in spec/fuzz/corpus/<target>/; what they find goes to
# build/fuzz/corpus-<target>/.
.PHONY: fuzz fuzz-smoke test-valgrind
FUZZ_TARGETS := watch list kubeconfig exec luajson
FUZZ_SECONDS ?= 300
FUZZ_CC      ?= clang
FUZZ_SRC     := csrc/kn_err.c csrc/kn_buf.c csrc/kn_base64.c csrc/kn_json.c csrc/kn_obj.c csrc/kn_watch.c \
                csrc/kn_list.c csrc/kn_exec.c csrc/kn_config.c csrc/kn_kubeconfig.c
FUZZ_LIBS    := $(shell pkg-config --libs yaml-0.1 2>/dev/null || echo -lyaml)
# the kubeconfig target confines the files a fuzzed kubeconfig may name (see fuzz_kubeconfig.c)
FUZZ_LDFLAGS_kubeconfig := -Wl,--wrap=fopen
# the binding's codec runs inside a Lua state
FUZZ_EXTRA_luajson := -I$(LUA_INCDIR) csrc/lk_json.c -llua$(LUA_VERSION)
build/fuzz/fuzz_%: spec/fuzz/fuzz_%.c $(FUZZ_SRC) $(HDRS)
	@mkdir -p build/fuzz
	$(FUZZ_CC) -g -O1 $(WARN) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
	  -Icsrc $(PKG_CFLAGS) -o $@ $< $(FUZZ_SRC) $(FUZZ_EXTRA_$*) $(FUZZ_LIBS) $(FUZZ_LDFLAGS_$*)

fuzz: deps $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	spec/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The short run of every target that `make test` does.
fuzz-smoke: deps $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	spec/fuzz/run.sh 30 $(FUZZ_TARGETS)

# The informer specs (churn at KINFORMER_SPEC_SCALE=small, clear, faults, misbehaving callbacks, close,
# by_index), exec plugins and dead HTTP/2 connections under valgrind memcheck, against a control plane
# of their own (so that make -j can run it beside the specs).
test-valgrind: deps all
	KINFORMER_CLUSTER_DIR=$(CURDIR)/build/valgrind-cluster spec/with_cluster.sh spec/valgrind/run.sh

# Installs the rock with Debian's lua-cjson (no luarocks server) into a throwaway tree.
test-rock: deps
	spec/rock_install.sh

test-lua: deps $(MODULE)
	spec/run_specs.sh

test: deps all lint test-c test-rock fuzz-smoke test-valgrind bench-build
	spec/with_cluster.sh sh -c 'spec/run_specs.sh && python3 bench/run.py --smoke'


# The namespace watch, while a second client creates and deletes namespace aaa: ADDED, MODIFIED (the
# deletion starts), DELETED (the controller-manager has emptied it). Fails if the watch fails or times out.
demo: export KUBECONFIG := $(CURDIR)/.cluster/kubeconfig
demo: deps all cluster
	@$(LUA) examples/namespace_aaa.lua --clean aaa
	@out=$$(mktemp); \
	$(LUA) examples/watch_namespaces.lua --until-deleted aaa --timeout 60 >$$out & w=$$!; \
	tail -s 0.2 --pid=$$w -n +1 -f $$out & t=$$!; \
	while [ ! -s $$out ] && kill -0 $$w 2>/dev/null; do sleep 0.1; done; \
	$(LUA) examples/namespace_aaa.lua aaa || kill $$w; \
	wait $$w; rc=$$?; wait $$t; rm -f $$out; \
	if [ $$rc = 0 ]; then echo "make demo: saw aaa come and go"; else echo "make demo: the watch failed" >&2; fi; \
	exit $$rc

# A long churn with RSS sampled every 10 s (not in make test): SOAK_SECONDS (default 1800), SOAK_RATE.
soak: deps all
	KINFORMER_CLUSTER_DIR=$(CURDIR)/build/soak-cluster spec/with_cluster.sh lua5.4 spec/soak/soak.lua

# Benchmarks (bench/README.md). The peers build into caches outside the checkout.
BENCH_CACHE := $(HOME)/.cache/kinformer
CARGO       ?= $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
GOENV       := GOTOOLCHAIN=local GOSUMDB=off GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
bench-build: deps all
	cd bench/replay && $(GOENV) go build -trimpath -o ../bin/replay .
	cd bench/peers/client-go && $(GOENV) go build -trimpath -o ../../bin/client-go-peer .
	CARGO_TARGET_DIR=$(BENCH_CACHE)/cargo-target $(CARGO) build -q --release --locked \
	  --manifest-path bench/peers/kube-rs/Cargo.toml
	@venv=$(BENCH_CACHE)/bench-venv; req=bench/peers/python/requirements.txt; \
	if ! cmp -s $$req $$venv/requirements.txt 2>/dev/null; then \
	  rm -rf $$venv && python3 -m venv $$venv && $$venv/bin/pip install -q -r $$req && cp $$req $$venv/; fi

bench: bench-build cluster
	python3 bench/run.py

# In make test: the harness builds and every peer and the replay server run a tiny workload.
bench-smoke: bench-build
	python3 bench/run.py --smoke

clean:
	rm -rf build $(MODULE)
