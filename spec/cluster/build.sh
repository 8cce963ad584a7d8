#!/usr/bin/env bash
# Builds, once, the binaries of the test control plane from the pinned build
# modules next to this script, into a cache outside the repository keyed by
# version. Prints the cache directory that holds etcd, kube-apiserver,
# kube-controller-manager and kubectl. Later runs find the binaries and return
# at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

k8s_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/k8s/go.mod")
etcd_version=$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' "$here/etcd/go.mod")
cache=${KINFORMER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kinformer}
out="$cache/bin/k8s-$k8s_version-etcd-$etcd_version"

if [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ] &&
   [ -x "$out/kubectl" ] && [ -x "$out/etcd" ]; then
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

echo "build.sh: building kube-apiserver, kube-controller-manager and kubectl $k8s_version (slow the first time)" >&2
(cd "$here/k8s" && go build -p "$par" -trimpath -tags selinux,notest -ldflags "-s -w $ldflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
echo "build.sh: building etcd $etcd_version" >&2
(cd "$here/etcd" && go build -p "$par" -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)

mkdir -p "$(dirname "$out")"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out"
