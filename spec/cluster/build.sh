#!/usr/bin/env bash
# Builds, once, the binaries of the test control plane from the pinned build
# modules next to this script, into a cache outside the repository keyed by
# version. Prints the cache directory that holds etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl and kwok. Later runs find
# the binaries and return at once; a binary that is missing (one added to the
# control plane since the cache was filled) is built alone. The directory is
# named for the Kubernetes and etcd versions; kwok's version is recorded in
# kwok.version beside it, and kwok is rebuilt when its go.mod pins another.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

k8s_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/k8s/go.mod")
etcd_version=$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' "$here/etcd/go.mod")
kwok_version=$(awk '$1 == "require" && $2 == "sigs.k8s.io/kwok" {print $3}' "$here/kwok/go.mod")
cache=${KINFORMER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kinformer}
out="$cache/bin/k8s-$k8s_version-etcd-$etcd_version"

k8s_cmds=()
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  [ -x "$out/$cmd" ] || k8s_cmds+=("$cmd")
done
build_etcd=0
[ -x "$out/etcd" ] || build_etcd=1
build_kwok=0
{ [ -x "$out/kwok" ] && [ "$(cat "$out/kwok.version" 2>/dev/null)" = "$kwok_version" ]; } || build_kwok=1

if [ ${#k8s_cmds[@]} = 0 ] && [ $build_etcd = 0 ] && [ $build_kwok = 0 ]; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: the Go toolchain (go >= 1.26) is needed to build the test control plane" >&2; exit 1; }

# The committed go.sum files are the source of truth: no checksum database
# (it may be unreachable), no toolchain switch, no silent go.mod edits.
export GOTOOLCHAIN=local GOSUMDB=off GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
# Each package in flight may take about 2 GiB; two at a time fits small machines.
par=${KINFORMER_BUILD_JOBS:-2}

tmp=$(mktemp -d "$cache/build.XXXXXX" 2>/dev/null || { mkdir -p "$cache"; mktemp -d "$cache/build.XXXXXX"; })
trap 'rm -rf "$tmp"' EXIT

minor=$(echo "$k8s_version" | cut -d. -f2)
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# Prints how long the step that started at $1 (EPOCHSECONDS) took.
took() { echo "build.sh: $2 built in $((EPOCHSECONDS - $1))s" >&2; }

if [ ${#k8s_cmds[@]} -gt 0 ]; then
  echo "build.sh: building ${k8s_cmds[*]} $k8s_version (slow the first time)" >&2
  t0=$EPOCHSECONDS
  (cd "$here/k8s" && go build -p "$par" -trimpath -tags selinux,notest -ldflags "-s -w $ldflags" -o "$tmp/" \
    "${k8s_cmds[@]/#/k8s.io/kubernetes/cmd/}")
  took "$t0" "${k8s_cmds[*]}"
fi
if [ $build_etcd = 1 ]; then
  echo "build.sh: building etcd $etcd_version" >&2
  t0=$EPOCHSECONDS
  (cd "$here/etcd" && go build -p "$par" -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
  took "$t0" etcd
fi
if [ $build_kwok = 1 ]; then
  echo "build.sh: building kwok $kwok_version" >&2
  t0=$EPOCHSECONDS
  (cd "$here/kwok" && go build -p "$par" -trimpath -ldflags "-s -w" -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok)
  echo "$kwok_version" >"$tmp/kwok.version"
  took "$t0" kwok
fi

# Each file is renamed into place (the same file system), so the binaries
# already there stay, and a reader never sees half a binary.
mkdir -p "$out"
for f in "$tmp"/*; do
  mv -f "$f" "$out/"
done
echo "$out"
