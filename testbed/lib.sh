# Shared functions of the test bed scripts (sourced, not run).
#
# The test bed boots Debian's stock kernel under qemu (TCG) from an initramfs that holds
# busybox, a few host tools, the IPVS/dummy/veth modules and the project's binaries. Everything a
# run builds goes to its own temporary directory, so runs from several worktrees can go on at the
# same time; only the kernel download is shared, in a cache guarded by flock.

set -euo pipefail

TESTBED_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TESTBED_REPO=$(cd "$TESTBED_DIR/.." && pwd)
# The kernel cache is shared by every worktree that runs these scripts.
TESTBED_CACHE=${TESTBED_CACHE:-$TESTBED_REPO/.testbed-cache}
# Debian package whose dependency names the kernel to boot.
TESTBED_KERNEL_META=${TESTBED_KERNEL_META:-linux-image-amd64}
# Modules the guest loads at boot: every module of kernel/net/netfilter/ipvs/ (ip_vs itself, all
# schedulers the kernel ships, the ftp helper), then these. The kernel would load schedulers on
# demand through /sbin/modprobe too; loading them up front makes a broken one fail the boot loudly.
# Each is staged with what `modprobe --show-depends` says it needs.
TESTBED_EXTRA_MODULES=(dummy veth bridge)
# nftables, for ipvsd's masquerade and filter rules: an `inet` table with nat chains (prerouting,
# output, postrouting) and filter chains (input, forward, output), `masquerade fully-random`, ct
# state and original tuple, reject, fib, counters, named objects. Set types, payload, meta, `th`,
# counters and lookups are part of nf_tables itself on the kernels we boot (6.1).
TESTBED_NFT_MODULES=(nf_tables nft_chain_nat nft_nat nft_masq nft_ct nft_reject nft_reject_inet
    nft_reject_ipv4 nft_reject_ipv6 nft_fib nft_fib_inet nft_fib_ipv4 nft_fib_ipv6 nft_objref nf_conntrack_netlink)

# kube-proxy's IPVS mode (staged only when TESTBED_KUBE_PROXY=1): iptables (legacy: x_tables
# modules, no nft_compat) and ipset for its masquerade and filter rules, and its sets.
TESTBED_KUBE_PROXY_MODULES=(ip_tables ip6_tables iptable_nat iptable_filter iptable_mangle
    ip6table_nat ip6table_filter ip6table_mangle xt_comment xt_mark xt_MASQUERADE xt_conntrack
    xt_addrtype xt_nat xt_tcpudp xt_set xt_multiport xt_physdev xt_statistic ip_set
    ip_set_hash_ip ip_set_hash_ipport ip_set_hash_ipportip ip_set_hash_ipportnet ip_set_hash_net
    ip_set_bitmap_port xt_ipvs ipt_REJECT ip6t_REJECT)
# The VM's network card when TESTBED_QEMU_NIC=user (qemu's user-mode network, for runs that reach
# an API server on the host's loopback as 10.0.2.2).
TESTBED_NIC_MODULES=(virtio_pci virtio_net)

log() { printf 'testbed: %s\n' "$*" >&2; }
die() {
    printf 'testbed: error: %s\n' "$*" >&2
    exit 1
}

# Host packages the test bed needs, as "command:package" pairs.
TESTBED_PACKAGES=(
    qemu-system-x86_64:qemu-system-x86
    busybox:busybox-static
    depmod:kmod
    cpio:cpio
    ipvsadm:ipvsadm
    ip:iproute2
    nft:nftables
    jq:jq
    strip:binutils
    flock:util-linux
    bash:bash
    dpkg-deb:dpkg
    apt-get:apt
    xtables-legacy-multi:iptables
    ipset:ipset
    openssl:openssl
    curl:curl
    python3:python3
    setpriv:util-linux
)

# Installs the missing host packages with apt-get; runs `apt-get update` only when an install
# fails, since on a fresh machine the package lists may be missing or stale.
ensure_host_packages() {
    local missing=() pair cmd pkg
    for pair in "${TESTBED_PACKAGES[@]}"; do
        cmd=${pair%%:*}
        pkg=${pair#*:}
        if ! PATH=$PATH:/sbin:/usr/sbin command -v "$cmd" >/dev/null 2>&1; then
            missing+=("$pkg")
        fi
    done
    # busybox-static specifically: a dynamic busybox can't run in the initramfs without its libs.
    if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
        missing+=(busybox-static)
    fi
    # netbase's /etc/protocols: nft names protocols with it ("tcp", not "6"), as on a real node.
    [ -f /etc/protocols ] || missing+=(netbase)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]}; install them as root"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}"; then
        apt-get update
        apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" ||
            die "apt-get install ${missing[*]} failed"
    fi
}

# Downloads and unpacks the kernel once, into $TESTBED_CACHE/kernel-<version>/, and sets
# KERNEL_VERSION, KERNEL_IMAGE and KERNEL_MODULES (the lib/modules/<version> directory, with
# modules.dep made by depmod since the package ships none).
fetch_kernel() {
    mkdir -p "$TESTBED_CACHE"
    local pkg
    if [ -n "${TESTBED_KERNEL_PACKAGE:-}" ]; then
        pkg=$TESTBED_KERNEL_PACKAGE
    else
        pkg=$(apt-cache depends "$TESTBED_KERNEL_META" 2>/dev/null |
            sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1)
        if [ -z "$pkg" ]; then
            # No package lists yet (fresh machine): fall back to what an earlier run cached.
            pkg=$(cat "$TESTBED_CACHE/kernel-package" 2>/dev/null || true)
        fi
        if [ -z "$pkg" ]; then
            log "apt-cache knows no $TESTBED_KERNEL_META; running apt-get update"
            apt-get update >&2
            pkg=$(apt-cache depends "$TESTBED_KERNEL_META" |
                sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1)
        fi
        [ -n "$pkg" ] || die "cannot find the kernel package that $TESTBED_KERNEL_META depends on"
    fi
    local dir=$TESTBED_CACHE/$pkg
    (
        flock 9
        if [ ! -f "$dir/.complete" ]; then
            log "downloading and unpacking $pkg into $dir"
            rm -rf "$dir"
            local work
            work=$(mktemp -d "$TESTBED_CACHE/.download.XXXXXX")
            (cd "$work" && apt-get download "$pkg") >&2 ||
                (apt-get update >&2 && cd "$work" && apt-get download "$pkg" >&2) ||
                die "apt-get download $pkg failed"
            mkdir -p "$dir/root"
            dpkg -x "$work"/*.deb "$dir/root"
            mv "$work"/*.deb "$dir/"
            rm -rf "$work"
            local moddir
            moddir=$(find "$dir/root" -maxdepth 4 -type d -path '*/lib/modules/*' | head -n1)
            [ -n "$moddir" ] || die "$pkg holds no lib/modules directory"
            local version
            version=$(basename "$moddir")
            local base=${moddir%/lib/modules/*}
            depmod -b "$base" "$version"
            ln -s "${moddir#"$dir"/}" "$dir/modules"
            local images=("$dir"/root/boot/vmlinuz-*) image
            image=${images[0]}
            [ -f "$image" ] || die "$pkg holds no /boot/vmlinuz-*"
            ln -s "${image#"$dir"/}" "$dir/vmlinuz"
            echo "$version" >"$dir/version"
            touch "$dir/.complete"
        fi
        echo "$pkg" >"$TESTBED_CACHE/kernel-package"
    ) 9>"$TESTBED_CACHE/lock"
    KERNEL_VERSION=$(cat "$dir/version")
    KERNEL_IMAGE=$dir/vmlinuz
    KERNEL_MODULES=$(readlink -f "$dir/modules")
}

# Builds, in the workspace $1, the kernel test binaries of every crate (test targets named
# `kernel`), the binaries and the examples, all with the `kernel-tests` feature so that one set
# of library builds serves them all. Sets KERNEL_TEST_BINS ("<crate>-kernel=<path>" entries),
# EXAMPLE_BINS ("<name>=<path>") and IPVSD_BIN.
#
# With $2 = release: the binaries and examples only, in the release profile, without the
# kernel-tests feature (what the benchmarks that stand for users' builds run); no test binaries.
build_workspace() {
    local workspace=$1 profile=${2:-dev} json
    json=$(mktemp "${TMPDIR:-/tmp}/testbed-cargo.XXXXXX")
    log "building in $workspace ($profile)"
    (
        cd "$workspace"
        if [ "$profile" = release ]; then
            cargo build --release --workspace --bins --examples --message-format=json-render-diagnostics
        else
            cargo build --workspace --bins --examples --features kernel-tests --message-format=json-render-diagnostics
            cargo test --workspace --features kernel-tests --no-run --message-format=json-render-diagnostics
        fi
    ) >"$json" || {
        rm -f "$json"
        die "cargo build in $workspace failed"
    }
    KERNEL_TEST_BINS=()
    EXAMPLE_BINS=()
    IPVSD_BIN=
    local kind name package path
    while IFS=$'\t' read -r kind name package path; do
        case $kind in
        test-test) [ "$name" = kernel ] && KERNEL_TEST_BINS+=("$package-kernel=$path") ;;
        example) EXAMPLE_BINS+=("$name=$path") ;;
        bin) [ "$name" = ipvsd ] && IPVSD_BIN=$path ;;
        esac
    done < <(jq -r 'select(.reason == "compiler-artifact" and .executable != null)
        | [(if .profile.test then "test-" else "" end) + .target.kind[0], .target.name, (.package_id | capture("(?<n>[A-Za-z0-9_-]+)[@#][^@#]*$").n // .package_id), .executable]
        | @tsv' "$json" | sort -u)
    rm -f "$json"
    [ "$profile" = release ] || [ ${#KERNEL_TEST_BINS[@]} -gt 0 ] ||
        die "cargo built no test target named 'kernel' in $workspace"
    [ -n "$IPVSD_BIN" ] || die "cargo built no ipvsd binary in $workspace"
}

# Copies a dynamically linked program's shared libraries (as `ldd` finds them on this host) into
# the staged root, each under the path the program's loader asks for.
copy_shared_libs() {
    local root=$1 program=$2 lib
    # Static programs make ldd fail; they need nothing.
    ldd "$program" >/dev/null 2>&1 || return 0
    for lib in $(ldd "$program" | sed -n 's/.*=> \(\/[^ ]*\) (.*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p'); do
        if [ ! -e "$root$lib" ]; then
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        fi
    done
}

# Copies a host program to a path in the staged root, with its libraries. The destination is
# removed first: it may be a busybox applet link, and copying through it would overwrite busybox.
install_host_program() {
    local root=$1 source=$2 dest=$3
    [ -x "$source" ] || die "host program $source is missing"
    mkdir -p "$root$(dirname "$dest")"
    rm -f "$root$dest"
    cp -L "$source" "$root$dest"
    copy_shared_libs "$root" "$source"
}

# Copies a binary built by cargo, stripped: debug info would make the initramfs several times
# larger and slower to load.
install_built_binary() {
    local root=$1 source=$2 dest=$3
    mkdir -p "$root$(dirname "$dest")"
    strip --strip-debug -o "$root$dest" "$source" || die "strip $source failed"
    copy_shared_libs "$root" "$source"
}

# Copies the modules the guest needs and all they depend on, then indexes them with depmod.
stage_modules() {
    local root=$1 src=$KERNEL_MODULES dest=$1/lib/modules/$KERNEL_VERSION
    local base=${KERNEL_MODULES%/lib/modules/*}
    local files=() file name dep
    local names=() deps
    mapfile -t files < <(find "$src/kernel/net/netfilter/ipvs" -name '*.ko*')
    files+=("$src"/kernel/crypto/crc32c_generic.ko*)
    for file in "${files[@]}"; do
        [ -f "$file" ] || die "kernel module $file is missing"
        name=$(basename "$file")
        names+=("${name%%.ko*}")
    done
    local extra=("${TESTBED_EXTRA_MODULES[@]}" "${TESTBED_NFT_MODULES[@]}")
    [ "${TESTBED_KUBE_PROXY:-0}" = 1 ] && extra+=("${TESTBED_KUBE_PROXY_MODULES[@]}")
    [ "${TESTBED_QEMU_NIC:-none}" = user ] && extra+=("${TESTBED_NIC_MODULES[@]}")
    names+=("${extra[@]}")
    for name in "${names[@]}"; do
        # A module the kernel lacks (or has built in) must fail here, not at boot.
        deps=$(/sbin/modprobe -d "$base" -S "$KERNEL_VERSION" --show-depends "$name" 2>&1) ||
            die "kernel module $name: $deps"
        deps=$(sed -n 's/^insmod \([^ ]*\).*/\1/p' <<<"$deps")
        [ -n "$deps" ] || die "kernel module $name is not a loadable module of $KERNEL_VERSION"
        for dep in $deps; do
            mkdir -p "$dest/$(dirname "${dep#"$src"/}")"
            cp -n "$dep" "$dest/${dep#"$src"/}"
        done
    done
    # modules.alias (made by depmod) lets the kernel load the rest on demand: nf_tables asks for
    # "nft-expr-..." and "nft-chain-..." aliases when a ruleset uses them.
    cp "$src"/modules.order "$src"/modules.builtin* "$dest"/ 2>/dev/null || true
    depmod -b "$root" "$KERNEL_VERSION"
    {
        echo ip_vs
        find "$src/kernel/net/netfilter/ipvs" -name '*.ko*' -printf '%f\n' | sed 's/\.ko.*//' |
            grep -vx ip_vs | sort
        printf '%s\n' "${extra[@]}"
    } >"$root/testbed/modules"
}

# Stages the guest's root file system in $1/root and packs it into $1/initrd.cpio (uncompressed:
# gzip costs more time on big test binaries than the kernel saves reading them).
# $2: workspace; $3: job script the guest runs; remaining args: NAME=VALUE environment entries.
stage_initramfs() {
    local run=$1 workspace=$2 job=$3
    shift 3
    local root=$run/root entry applet busybox
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,proc,sys,dev,run,tmp,root,etc}
    mkdir -p "$root"/testbed/{bin,tests,examples}

    busybox=$(command -v busybox)
    if ldd "$busybox" 2>/dev/null | grep -q '=>'; then
        die "$busybox is dynamically linked; install busybox-static"
    fi
    cp "$busybox" "$root/bin/busybox"
    for applet in $("$busybox" --list); do
        [ "$applet" = busybox ] && continue
        ln -s busybox "$root/bin/$applet"
    done
    install_host_program "$root" "$(command -v bash)" /bin/bash
    install_host_program "$root" "$(PATH=$PATH:/sbin:/usr/sbin command -v ip)" /sbin/ip
    install_host_program "$root" "$(PATH=$PATH:/sbin:/usr/sbin command -v kmod)" /sbin/modprobe
    install_host_program "$root" "$(PATH=$PATH:/sbin:/usr/sbin command -v ipvsadm)" /sbin/ipvsadm
    install_host_program "$root" "$(PATH=$PATH:/sbin:/usr/sbin command -v nft)" /usr/sbin/nft
    # setpriv (util-linux's, over busybox's applet, which lacks --bounding-set) runs ipvsd
    # with only CAP_NET_ADMIN in the privileges test.
    install_host_program "$root" "$(command -v setpriv)" /bin/setpriv
    if [ "${TESTBED_KUBE_PROXY:-0}" = 1 ]; then
        # kube-proxy runs iptables, ip6tables (their -save and -restore) and ipset.
        install_host_program "$root" /usr/sbin/xtables-legacy-multi /usr/sbin/xtables-legacy-multi
        local tool
        for tool in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
            ln -sf xtables-legacy-multi "$root/usr/sbin/$tool"
        done
        mkdir -p "$root/usr/lib/x86_64-linux-gnu"
        cp -r /usr/lib/x86_64-linux-gnu/xtables "$root/usr/lib/x86_64-linux-gnu/"
        install_host_program "$root" /usr/sbin/ipset /usr/sbin/ipset
        mkdir -p "$root/run/xtables" "$root/var/lib"
    fi
    echo 'root:x:0:0:root:/root:/bin/bash' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"
    printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
    cp /etc/protocols "$root/etc/protocols"

    stage_modules "$root"

    for entry in "${KERNEL_TEST_BINS[@]}"; do
        install_built_binary "$root" "${entry#*=}" "/testbed/tests/${entry%%=*}"
    done
    for entry in "${EXAMPLE_BINS[@]}"; do
        install_built_binary "$root" "${entry#*=}" "/testbed/bin/${entry%%=*}"
    done
    install_built_binary "$root" "$IPVSD_BIN" /testbed/bin/ipvsd
    if [ -d "$workspace/examples" ]; then
        cp -r "$workspace/examples/." "$root/testbed/examples/"
    fi
    # Further files or directories a script wants in the guest, as "HOST_PATH=GUEST_PATH".
    for entry in "${STAGE_EXTRA[@]+"${STAGE_EXTRA[@]}"}"; do
        mkdir -p "$root$(dirname "${entry#*=}")"
        cp -r "${entry%%=*}" "$root${entry#*=}"
    done

    {
        echo "PATH=/sbin:/usr/sbin:/bin:/usr/bin"
        echo "IPVSD_BIN=/testbed/bin/ipvsd"
        echo "POD_SERVER=/testbed/bin/pod_server"
        echo "IPVSADM=/sbin/ipvsadm"
        echo "IPVSD_EXAMPLES=/testbed/examples"
        echo "IPVSD_TESTBED=1"
        echo "RUST_BACKTRACE=1"
        for entry in "$@"; do
            printf '%s=%q\n' "${entry%%=*}" "${entry#*=}"
        done
    } >"$root/testbed/env"
    cp "$TESTBED_DIR/guest/init" "$root/init"
    cp "$job" "$root/testbed/job"
    chmod +x "$root/init" "$root/testbed/job"

    (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) >"$run/initrd.cpio"
    log "initramfs: $(du -h "$run/initrd.cpio" | cut -f1)"
}

# Boots the VM on the staged initramfs. $1: run directory; $2: overall timeout in seconds (0:
# none); $3: "interactive" to hand the terminal to the guest. The console goes to the terminal
# and to $1/console.log. Returns qemu's exit status (124 on timeout).
boot_vm() {
    local run=$1 limit=$2 mode=$3
    local nic=(-nic none)
    [ "${TESTBED_QEMU_NIC:-none}" = user ] && nic=(-nic user,model=virtio-net-pci)
    local qemu=(qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m "${TESTBED_QEMU_MEMORY:-2048}" -nographic -no-reboot
        "${nic[@]}" -kernel "$KERNEL_IMAGE" -initrd "$run/initrd.cpio"
        -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init")
    local status=0
    if [ "$mode" = interactive ]; then
        log "booting Linux $KERNEL_VERSION (leave with 'exit' or Ctrl-A x)"
        "${qemu[@]}" || status=$?
    else
        log "booting Linux $KERNEL_VERSION (timeout ${limit}s)"
        if [ "$limit" -gt 0 ]; then
            timeout -k 10 "$limit" "${qemu[@]}" </dev/null 2>&1 | tee "$run/console.log" || status=${PIPESTATUS[0]}
        else
            "${qemu[@]}" </dev/null 2>&1 | tee "$run/console.log" || status=${PIPESTATUS[0]}
        fi
    fi
    return "$status"
}

# Prints the value of the last "@@<marker> <value>" line of the console log $1.
console_marker() {
    tr -d '\r' <"$1" | sed -n "s/.*@@$2 \(.*\)$/\1/p" | tail -n1
}

# Parses --workspace DIR from the arguments into WORKSPACE (default: this repository) and leaves
# the rest in ARGS.
parse_workspace_arg() {
    WORKSPACE=$TESTBED_REPO
    ARGS=()
    while [ $# -gt 0 ]; do
        case $1 in
        --workspace)
            [ $# -ge 2 ] || die "--workspace needs a directory"
            WORKSPACE=$2
            shift 2
            ;;
        --workspace=*)
            WORKSPACE=${1#--workspace=}
            shift
            ;;
        *)
            ARGS+=("$1")
            shift
            ;;
        esac
    done
    [ -f "$WORKSPACE/Cargo.toml" ] || die "$WORKSPACE is not a cargo workspace"
    WORKSPACE=$(cd "$WORKSPACE" && pwd)
}

# Makes the per-run directory (removed on exit) and sets RUN_DIR.
make_run_dir() {
    RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/testbed-run.XXXXXX")
    trap 'rm -rf "$RUN_DIR"' EXIT
}

# Keeps the console log of the run as <target dir>/testbed/<name>.log.
keep_console_log() {
    local name=$1 dir
    [ -f "$RUN_DIR/console.log" ] || return 0
    dir=$(dirname "$(dirname "$IPVSD_BIN")")/testbed
    mkdir -p "$dir"
    cp "$RUN_DIR/console.log" "$dir/$name.$$.log.tmp"
    mv "$dir/$name.$$.log.tmp" "$dir/$name.log"
    log "console log: $dir/$name.log"
}

# Reads the result markers of a kernel test run from the console log $1 (qemu's exit status $2,
# filter $3, overall timeout $4), prints the failed tests, every problem with the run and the
# summary line, and returns non-zero unless every planned test ran and none failed. A run that did
# not boot, hung, ran no test or lost a result is a failure, never a skip.
report_kernel_suite() {
    local log=$1 qemu_status=$2 filter=$3 limit=$4
    local console guest_kernel boot_failure planned exit_status started passed failed ignored
    local problems=() problem summary
    console=$(mktemp "${TMPDIR:-/tmp}/testbed-console.XXXXXX")
    tr -d '\r' <"$log" >"$console"
    guest_kernel=$(console_marker "$console" TESTBED-BOOTED)
    boot_failure=$(console_marker "$console" TESTBED-BOOT-FAILED)
    planned=$(console_marker "$console" TESTBED-PLANNED)
    exit_status=$(console_marker "$console" TESTBED-EXIT)
    started=$(grep -c '@@TESTBED-START ' "$console" || true)
    passed=$(grep -c '@@TESTBED-RESULT ok ' "$console" || true)
    failed=$(grep -c '@@TESTBED-RESULT FAILED ' "$console" || true)
    ignored=$(grep -c '@@TESTBED-RESULT ignored ' "$console" || true)

    [ "$qemu_status" -eq 124 ] && problems+=("the VM did not finish within ${limit}s")
    [ "$qemu_status" -ne 0 ] && [ "$qemu_status" -ne 124 ] && problems+=("qemu exited with status $qemu_status")
    [ -n "$boot_failure" ] && problems+=("the VM failed to boot: $boot_failure")
    [ -z "$guest_kernel" ] && [ -z "$boot_failure" ] && problems+=("the VM never reached the test runner")
    if [ -n "$guest_kernel" ]; then
        if [ -z "$planned" ]; then
            problems+=("the test runner did not finish (last test started: $(sed -n 's/.*@@TESTBED-START //p' "$console" | tail -n1))")
        elif [ "$planned" -eq 0 ]; then
            problems+=("no kernel test matched${filter:+ the filter '$filter'}")
        elif [ $((passed + failed + ignored)) -ne "$planned" ]; then
            problems+=("$planned tests planned but $((passed + failed + ignored)) results reported")
        fi
        [ "$started" -gt $((passed + failed + ignored)) ] && problems+=("a test started but reported no result")
        [ -n "$exit_status" ] && [ "$exit_status" -ne 0 ] && problems+=("the test runner exited with status $exit_status")
    fi

    echo
    if [ "$failed" -gt 0 ]; then
        echo "failed kernel tests:"
        sed -n 's/.*@@TESTBED-RESULT FAILED /  /p' "$console"
    fi
    for problem in "${problems[@]}"; do
        echo "testbed: error: $problem"
    done
    summary="kernel suite: $passed passed, $failed failed"
    [ "$ignored" -gt 0 ] && summary+=", $ignored ignored"
    echo "$summary (Linux ${guest_kernel:-?, did not boot})"
    rm -f "$console"
    [ "$failed" -eq 0 ] && [ ${#problems[@]} -eq 0 ]
}
