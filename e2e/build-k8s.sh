#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler and kubelet
# v1.20.2 (plus a static `pause`) from Debian bookworm's own `kubernetes`
# source package with Debian's Go, offline, from its vendored sources.
#
#   e2e/build-k8s.sh          build if not cached; print the bin directory
#   e2e/build-k8s.sh --force  rebuild even if cached
#
# Output: ${UNROOT_E2E_CACHE:-$HOME/.cache/unroot-e2e}/v1.20.2/bin/
# A cached run returns in well under a second. A cold one takes ~5 minutes on
# 2 cores; its log goes to .../v1.20.2/build.log.
set -euo pipefail

K8S_VERSION=v1.20.2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${UNROOT_E2E_CACHE:-$HOME/.cache/unroot-e2e}/$K8S_VERSION
bin=$cache/bin
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubelet pause)

force=0
case "${1:-}" in
    --force) force=1 ;;
    "") ;;
    -h | --help)
        sed -n '2,11p' "$0"
        exit 0
        ;;
    *)
        echo "build-k8s.sh: unknown argument: $1" >&2
        exit 2
        ;;
esac

log() { echo "build-k8s.sh: $*" >&2; }

cached() {
    [[ -f $bin/.complete ]] || return 1
    local b
    for b in "${binaries[@]}"; do
        [[ -x $bin/$b ]] || return 1
    done
}

if ((!force)) && cached; then
    echo "$bin"
    exit 0
fi

mkdir -p "$cache"
# One build at a time per cache (a second caller waits, then finds it cached).
exec 9>"$cache/.lock"
if ! flock -n 9; then
    log "another build holds $cache/.lock; waiting for it"
    flock 9
fi
if ((!force)) && cached; then
    echo "$bin"
    exit 0
fi

"$here/deps.sh" --source

work=$(mktemp -d "${TMPDIR:-/tmp}/unroot-k8s-build.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

buildlog=$cache/build.log
: >"$buildlog"
log "building Kubernetes $K8S_VERSION in $work (log: $buildlog)"
start=$SECONDS

fail() {
    log "FAILED: $*"
    log "last lines of $buildlog:"
    tail -n 30 "$buildlog" >&2
    exit 1
}

# --- source ------------------------------------------------------------------
mkdir -p "$work/dl"
(cd "$work/dl" && apt-get source --download-only kubernetes) >>"$buildlog" 2>&1 ||
    {
        # deb-src lists may be missing or stale: refresh once and retry.
        apt-get update -qq >>"$buildlog" 2>&1
        (cd "$work/dl" && apt-get source --download-only kubernetes) >>"$buildlog" 2>&1
    } || fail "apt-get source kubernetes"
dsc=$(echo "$work"/dl/kubernetes_*.dsc)
[[ -f $dsc ]] || fail "no kubernetes .dsc downloaded"

export GOPATH=$work/gopath
src=$GOPATH/src/k8s.io/kubernetes
mkdir -p "$(dirname "$src")"
dpkg-source --no-check -x "$dsc" "$src" >>"$buildlog" 2>&1 || fail "dpkg-source -x $dsc"
rm -rf "$work/dl"

upstream=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
[[ $upstream == *"${K8S_VERSION#v}"-* ]] ||
    fail "Debian's kubernetes source is $upstream, expected upstream ${K8S_VERSION#v}"
log "source: kubernetes $upstream"

# --- reflect2: v1.0.1 (vendored) crashes the API server under Go >= 1.18 ----
reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2
[[ -f $reflect2_src/go_above_118.go ]] ||
    fail "$reflect2_src (golang-github-modern-go-reflect2-dev >= 1.0.2) is missing"
rm -rf "$src/vendor/github.com/modern-go/reflect2"
mkdir -p "$src/vendor/github.com/modern-go/reflect2"
cp "$reflect2_src"/*.go "$reflect2_src"/*.s "$src/vendor/github.com/modern-go/reflect2/"
rm -f "$src/vendor/github.com/modern-go/reflect2/"*_test.go

# --- Go environment: GOPATH mode from vendor/, as hack/lib/golang.sh does -----
export GO111MODULE=off GOFLAGS='' GOPROXY=off
export GOCACHE=$work/go-build # scratch: the binaries are what we keep
export CGO_ENABLED=1
cd "$src"

# --- pkg/generated/openapi/zz_generated.openapi.go (not in the tarball) -------
go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen >>"$buildlog" 2>&1 ||
    fail "building openapi-gen"
# The directories Makefile.generated_files feeds to openapi-gen for KUBE:
# every Go dir (staging named as vendor/, the rest of vendor/ pruned) holding a
# file tagged +k8s:openapi-gen=, minus code-generator and sample-apiserver.
mapfile -t openapi_dirs < <(
    find -H . \( -path './_*' -o -path './.*' -o -path ./vendor -o -path ./debian \) -prune \
        -o -type f -name '*.go' -print |
        sed 's|^\./staging/src|./vendor|' |
        xargs grep -l --color=never '^// *+k8s:' 2>/dev/null |
        grep -v -e '^\./vendor/k8s.io/code-generator/' -e '^\./vendor/k8s.io/sample-apiserver/' |
        xargs grep -l --color=never '+k8s:openapi-gen=' |
        sed -e 's|/[^/]*$||' -e 's|^\./|k8s.io/kubernetes/|' |
        LC_ALL=C sort -u
)
((${#openapi_dirs[@]} > 50)) || fail "found only ${#openapi_dirs[@]} openapi-gen input dirs"
inputs=$(
    IFS=,
    echo "${openapi_dirs[*]}"
)
"$work/openapi-gen" --logtostderr \
    -i "$inputs" \
    -p k8s.io/kubernetes/pkg/generated/openapi \
    -O zz_generated.openapi \
    -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
    -r "$work/openapi-violations.report" >>"$buildlog" 2>&1 || fail "openapi-gen"
[[ -s pkg/generated/openapi/zz_generated.openapi.go ]] || fail "openapi-gen wrote no zz_generated.openapi.go"
log "generated pkg/generated/openapi/zz_generated.openapi.go ($((SECONDS - start)) s)"

# --- the binaries -------------------------------------------------------------
pkg=k8s.io/kubernetes
ldflags="-s -w"
for v in client-go/pkg/version component-base/version; do
    ldflags+=" -X $pkg/vendor/k8s.io/$v.gitVersion=$K8S_VERSION"
    ldflags+=" -X $pkg/vendor/k8s.io/$v.gitMajor=1"
    ldflags+=" -X $pkg/vendor/k8s.io/$v.gitMinor=20"
    ldflags+=" -X $pkg/vendor/k8s.io/$v.gitTreeState=archive"
    ldflags+=" -X $pkg/vendor/k8s.io/$v.buildDate=$(date -u -d "@$(stat -c %Y "$src/CHANGELOG.md")" +%Y-%m-%dT%H:%M:%SZ)"
done
mkdir -p "$work/out"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
    t=$SECONDS
    go build -tags selinux,notest -ldflags "$ldflags" -o "$work/out/$b" "./cmd/$b" >>"$buildlog" 2>&1 ||
        fail "go build ./cmd/$b"
    log "built $b ($((SECONDS - t)) s)"
done

# --- pause: static, from build/pause/linux/pause.c ----------------------------
gcc -Os -Wall -Werror -static -DVERSION="${K8S_VERSION}-unroot-e2e" \
    -o "$work/out/pause" build/pause/linux/pause.c >>"$buildlog" 2>&1 || fail "gcc pause.c"
strip "$work/out/pause"

"$work/out/kube-apiserver" --version >>"$buildlog" 2>&1
[[ $("$work/out/kube-apiserver" --version) == "Kubernetes $K8S_VERSION" ]] ||
    fail "kube-apiserver --version says '$("$work/out/kube-apiserver" --version)'"

cd /
rm -rf "$bin.new" "$bin"
mv "$work/out" "$bin"
echo "kubernetes $upstream built $(date -u +%FT%TZ) with $(go version)" >"$bin/.complete"
log "done in $((SECONDS - start)) s: $bin"
echo "$bin"
