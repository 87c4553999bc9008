# Kubernetes components for the test bed (sourced after lib.sh, not run).
#
# kube-apiserver and kube-proxy of one Kubernetes release, and the etcd that release's go.mod
# pins, are built from the Go module proxy by module name and version: a throwaway module in the
# cache requires k8s.io/kubernetes at TESTBED_K8S_VERSION and replaces every k8s.io staging module
# (k8s.io/api, k8s.io/client-go, ...; the list is k8s.io/kubernetes' own go.mod) by its v0.x
# counterpart, since `go install k8s.io/kubernetes/cmd/...@v1.x` refuses a module with replace
# directives. etcd's server module has its main package at its root. Nothing of theirs is in the
# repository. The binaries are cached in $TESTBED_CACHE/k8s-<version>/bin, under a flock of $TESTBED_CACHE/k8s.lock;
# Go's own caches (GOMODCACHE, GOCACHE) keep the downloads and the compiled packages.

# The release: the latest 1.35 patch the module proxy serves; IPVS mode is still in kube-proxy
# (deprecated since 1.35, KEP-5495) and etcd is the one its go.mod requires.
TESTBED_K8S_VERSION=${TESTBED_K8S_VERSION:-v1.35.4}
TESTBED_ETCD_VERSION=${TESTBED_ETCD_VERSION:-v3.6.5}

# Go: the machines have it; a fresh Debian machine without it gets Debian's golang-go, which must
# be new enough for k8s.io/kubernetes' go directive (the go command then fetches the toolchain it
# names from the module proxy, GOTOOLCHAIN=auto).
ensure_go() {
    if ! command -v go >/dev/null 2>&1; then
        [ -x /usr/local/go/bin/go ] && export PATH=$PATH:/usr/local/go/bin
    fi
    if ! command -v go >/dev/null 2>&1; then
        log "installing golang-go"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 golang-go >&2 ||
            { apt-get update >&2 && apt-get install -y --no-install-recommends golang-go >&2; } ||
            die "apt-get install golang-go failed"
    fi
}

# Builds (once) kube-apiserver, kube-proxy and etcd; sets K8S_BIN to their directory.
build_k8s() {
    local version=$TESTBED_K8S_VERSION
    local dir=$TESTBED_CACHE/k8s-$version
    K8S_BIN=$dir/bin
    mkdir -p "$TESTBED_CACHE"
    if [ -f "$dir/.complete" ]; then
        return 0
    fi
    ensure_go
    (
        flock 9
        [ -f "$dir/.complete" ] && exit 0
        log "building kube-apiserver, kube-proxy $version and etcd $TESTBED_ETCD_VERSION into $dir (a fresh machine: ~20 min)"
        local start=$SECONDS
        rm -rf "$dir"
        mkdir -p "$dir/src" "$dir/bin"
        cd "$dir/src"
        local gomod
        gomod=$(go mod download -json "k8s.io/kubernetes@$version" | jq -r .GoMod) ||
            die "go mod download k8s.io/kubernetes@$version failed"
        local staging_version=v0.${version#v1.}
        {
            echo "module ipvsd.testbed/k8s"
            echo
            echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
            echo
            echo "require ("
            echo "	k8s.io/kubernetes $version"
            echo "	go.etcd.io/etcd/server/v3 $TESTBED_ETCD_VERSION"
            echo ")"
            echo
            echo "replace ("
            sed -n 's|^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*$|\t\1 => \1 '"$staging_version"'|p' "$gomod"
            echo ")"
        } >go.mod
        grep -q 'k8s.io/api => k8s.io/api' go.mod || die "no staging modules found in $gomod"
        local ldflags="-s -w"
        local minor=${version#v1.}
        minor=${minor%%.*}
        ldflags+=" -X k8s.io/component-base/version.gitVersion=$version"
        ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
        ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor"
        ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
        ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$version"
        export CGO_ENABLED=0 GOFLAGS=-mod=mod
        # The compiled packages (~3 GB) are needed only for this build, since the binaries are
        # cached: a throwaway build cache, in memory where /dev/shm has room (the machines' disks
        # are small), removed afterwards. Downloads stay in GOMODCACHE.
        local gocache
        if [ "$(df -k --output=avail /dev/shm 2>/dev/null | tail -n1)" -gt 8000000 ] 2>/dev/null; then
            gocache=$(mktemp -d /dev/shm/testbed-gocache.XXXXXX)
        else
            gocache=$(mktemp -d "$TESTBED_CACHE/.gocache.XXXXXX")
        fi
        # shellcheck disable=SC2064
        trap "rm -rf '$gocache'" EXIT
        export GOCACHE=$gocache GOTMPDIR=$gocache
        go build -trimpath -ldflags "$ldflags" -o bin/ \
            k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-proxy >&2 ||
            die "go build of kube-apiserver, kube-proxy $version failed (in $dir/src)"
        go build -trimpath -ldflags "-s -w" -o bin/etcd go.etcd.io/etcd/server/v3 >&2 ||
            die "go build of etcd $TESTBED_ETCD_VERSION failed (in $dir/src)"
        mv bin/* "$dir/bin/"
        "$dir/bin/kube-apiserver" --version >&2
        "$dir/bin/etcd" --version | head -n1 >&2
        echo "$((SECONDS - start))" >"$dir/build-seconds"
        touch "$dir/.complete"
        log "built in $((SECONDS - start)) s"
    ) 9>"$TESTBED_CACHE/k8s.lock" || die "building the Kubernetes components failed"
}

# The cluster's address ranges, as kube-apiserver, kube-proxy and ipvsd are given them.
K8S_SERVICE_CIDRS=10.96.0.0/16,fd00:96::/108
K8S_CLUSTER_CIDRS=10.244.0.0/16,fd00:244::/56
# The token the tests and nodes present (a static token file: kube-rs and kube-proxy take it as
# a bearer token from the kubeconfig); the user is in system:masters.
K8S_TOKEN=ipvsd-testbed-token

# Prints a free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Writes a kubeconfig for SERVER ($2) to $1, trusting the CA of the control plane directory $3.
write_kubeconfig() {
    local file=$1 server=$2 dir=$3
    cat >"$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$dir/ca.crt")
users:
- name: testbed
  user:
    token: $K8S_TOKEN
contexts:
- name: testbed
  context: {cluster: testbed, user: testbed}
current-context: testbed
KUBECONFIG
}

# Starts etcd and kube-apiserver on 127.0.0.1 with their data and logs in $1 (made here), and
# waits until the API server is ready. Sets K8S_API_PORT, K8S_KUBECONFIG (for the host: server
# https://127.0.0.1:PORT) and K8S_GUEST_KUBECONFIG (for the VM with user-mode networking: server
# https://10.0.2.2:PORT, the host's loopback as qemu's slirp shows it). The server certificate is
# made with openssl for both addresses, signed by a CA made for this run. The processes are
# stopped by stop_control_plane (call it from an EXIT trap).
start_control_plane() {
    local dir=$1
    build_k8s
    mkdir -p "$dir"
    (
        cd "$dir"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=testbed-ca \
            -keyout ca.key -out ca.crt 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout server.key \
            -out server.csr 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,IP:10.0.2.2,IP:10.96.0.1,DNS:localhost,DNS:kubernetes.default\n' >san.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile san.ext -out server.crt 2>/dev/null
        openssl genrsa -out sa.key 2048 2>/dev/null
        echo "$K8S_TOKEN,testbed-admin,testbed-admin,system:masters" >tokens.csv
    ) || die "making the control plane's certificates failed"
    local etcd_port etcd_peer
    etcd_port=$(free_port)
    etcd_peer=$(free_port)
    K8S_API_PORT=$(free_port)
    "$K8S_BIN/etcd" --data-dir "$dir/etcd" --name testbed \
        --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-cluster "testbed=http://127.0.0.1:$etcd_peer" --log-level warn \
        --unsafe-no-fsync >"$dir/etcd.log" 2>&1 &
    echo $! >"$dir/etcd.pid"
    disown $! 2>/dev/null || true
    K8S_ETCD=http://127.0.0.1:$etcd_port
    start_api_server "$dir"
    write_kubeconfig "$dir/kubeconfig" "https://127.0.0.1:$K8S_API_PORT" "$dir"
    write_kubeconfig "$dir/guest-kubeconfig" "https://10.0.2.2:$K8S_API_PORT" "$dir"
    K8S_KUBECONFIG=$dir/kubeconfig
    K8S_GUEST_KUBECONFIG=$dir/guest-kubeconfig
    K8S_DIR=$dir
}

# Starts kube-apiserver (again) on the port and etcd of start_control_plane, and waits until
# /readyz answers.
start_api_server() {
    local dir=$1
    "$K8S_BIN/kube-apiserver" \
        --etcd-servers "$K8S_ETCD" \
        --bind-address 127.0.0.1 --secure-port "$K8S_API_PORT" --advertise-address 10.0.2.2 \
        --tls-cert-file "$dir/server.crt" --tls-private-key-file "$dir/server.key" \
        --client-ca-file "$dir/ca.crt" --token-auth-file "$dir/tokens.csv" \
        --authorization-mode AlwaysAllow \
        --service-account-key-file "$dir/sa.key" --service-account-signing-key-file "$dir/sa.key" \
        --service-account-issuer https://kubernetes.default.svc \
        --service-cluster-ip-range "$K8S_SERVICE_CIDRS" \
        --service-node-port-range "${K8S_NODEPORT_RANGE:-30000-32767}" \
        --enable-priority-and-fairness=false \
        --v 1 >>"$dir/kube-apiserver.log" 2>&1 &
    echo $! >"$dir/kube-apiserver.pid"
    disown $! 2>/dev/null || true
    local i
    for i in $(seq 600); do
        if curl -sf --cacert "$dir/ca.crt" -H "Authorization: Bearer $K8S_TOKEN" \
            "https://127.0.0.1:$K8S_API_PORT/readyz" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null || {
            tail -n 30 "$dir/kube-apiserver.log" >&2
            die "kube-apiserver exited (log: $dir/kube-apiserver.log)"
        }
        sleep 0.2
    done
    tail -n 30 "$dir/kube-apiserver.log" >&2
    die "kube-apiserver not ready after 120 s (log: $dir/kube-apiserver.log)"
}

# Stops the process whose pid is in file $1, if any: SIGTERM, then SIGKILL after 10 s.
stop_pid_file() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

# Stops kube-apiserver.
stop_api_server() {
    stop_pid_file "$1/kube-apiserver.pid"
}

# Stops the control plane started in $1.
stop_control_plane() {
    stop_api_server "$1"
    stop_pid_file "$1/etcd.pid"
}

# Writes $1/api-server, a command taking `stop` or `start` that stops or starts the API server of
# the control plane in $1 (etcd keeps running), for the tests that restart it.
write_api_server_ctl() {
    local dir=$1
    cat >"$dir/api-server" <<CTL
#!/bin/bash
source $(printf %q "$TESTBED_DIR/lib.sh")
source $(printf %q "$TESTBED_DIR/k8s.sh")
K8S_BIN=$(printf %q "$K8S_BIN")
K8S_ETCD=$(printf %q "$K8S_ETCD")
K8S_API_PORT=$K8S_API_PORT
case \$1 in
stop) stop_api_server $(printf %q "$dir") ;;
start) start_api_server $(printf %q "$dir") ;;
*) die "usage: \$0 stop|start" ;;
esac
CTL
    chmod +x "$dir/api-server"
}

# Creates the Node $2 with the InternalIP addresses $3... through the API server of the control
# plane in $1 (the addresses go through the status subresource, as a kubelet sets them).
create_node() {
    local dir=$1 name=$2
    shift 2
    local addresses="" address
    for address in "$@"; do
        addresses+="${addresses:+,}{\"type\":\"InternalIP\",\"address\":\"$address\"}"
    done
    local api=(curl -sSf --cacert "$dir/ca.crt" -H "Authorization: Bearer $K8S_TOKEN")
    "${api[@]}" -X POST -H 'Content-Type: application/json' "https://127.0.0.1:$K8S_API_PORT/api/v1/nodes" \
        -d "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"$name\"}}" >/dev/null ||
        die "creating Node $name failed"
    "${api[@]}" -X PATCH -H 'Content-Type: application/merge-patch+json' \
        "https://127.0.0.1:$K8S_API_PORT/api/v1/nodes/$name/status" \
        -d "{\"status\":{\"addresses\":[$addresses]}}" >/dev/null ||
        die "setting the addresses of Node $name failed"
}
