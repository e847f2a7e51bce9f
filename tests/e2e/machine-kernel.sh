# shellcheck shell=bash disable=SC2154  # tmp, log: set by the caller (cached_dir_begin)
# Sourced by make-arm64-machine.sh and make-x86-machine.sh: Debian's kernel and a static busybox
# for one architecture, fetched with apt-get and a state directory of our own (the host's dpkg
# gets no foreign architecture), and the small initramfs both machines boot: busybox, the
# kernel's modules each after what it depends on, and init-machine.sh as /init. The caller
# defines die and say and sources progress.sh.

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=${DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}

# private_apt ARCH SUITE: sets apt_dir and the apt command (an array) for ARCH packages of
# SUITE, and defines download (apt-get download into $apt_dir/debs).
private_apt() {
    apt_dir=$tmp/apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/parts" "$apt_dir/debs"
    : >"$apt_dir/status"
    echo "deb [signed-by=$KEYRING] $MIRROR $2 main" >"$apt_dir/sources.list"
    apt=(apt-get -q
        -o "Dir::State=$apt_dir" -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::State::status=$apt_dir/status" -o "Dir::Cache=$apt_dir"
        -o "Dir::Cache::archives=$apt_dir/archives"
        -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
        -o "Dir::Etc::Preferences=$apt_dir/parts/none" -o "Dir::Etc::PreferencesParts=$apt_dir/parts"
        -o "APT::Architecture=$1" -o "APT::Architectures::=$1"
        -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
}

# apt-get download writes into the current directory.
download() { (cd "$apt_dir/debs" && "${apt[@]}" download "$@"); }

# fetch_kernel ARCH: after private_apt, updates its lists, downloads linux-image-ARCH,
# busybox-static and the versioned kernel package linux-image-ARCH depends on, unpacks both into
# $tmp/kernel and $tmp/busybox, copies the kernel to $tmp/vmlinuz and sets kernel_package,
# kernel_release and module_tree.
fetch_kernel() {
    with_heartbeat "apt-get update" "$log" "${apt[@]}" update || {
        tail -n 20 "$log" >&2
        die "apt-get update for $1 failed (its log is above)"
    }
    with_heartbeat "downloading the kernel" "$log" download "linux-image-$1" busybox-static || {
        tail -n 20 "$log" >&2
        die "apt-get download failed (its log is above)"
    }
    # linux-image-ARCH only depends on the versioned kernel package.
    kernel_package=$(dpkg-deb -f "$apt_dir/debs/linux-image-$1"_*.deb Depends | sed 's/ (.*//')
    case $kernel_package in
    linux-image-[0-9]*-"$1") ;;
    *) die "linux-image-$1 depends on '$kernel_package', not one linux-image-VERSION-$1" ;;
    esac
    with_heartbeat "downloading $kernel_package" "$log" download "$kernel_package" || {
        tail -n 20 "$log" >&2
        die "apt-get download $kernel_package failed (its log is above)"
    }
    dpkg-deb -x "$apt_dir/debs/${kernel_package}"_*.deb "$tmp/kernel"
    dpkg-deb -x "$apt_dir"/debs/busybox-static_*.deb "$tmp/busybox"
    kernel_release=${kernel_package#linux-image-}
    cp "$tmp/kernel/boot/vmlinuz-$kernel_release" "$tmp/vmlinuz"
    # /lib/modules up to Debian 12, /usr/lib/modules from Debian 13 on.
    module_tree=$(find "$tmp/kernel" -path "*/modules/$kernel_release" -type d | head -n 1)
    [ -n "$module_tree" ] || die "$kernel_package holds no modules/$kernel_release"
}

# add_module NAME: NAME's module (uncompressed) into the initramfs after those it depends on,
# once; nothing for a module built into the kernel.
add_module() {
    local name=${1//-/_} file depends dep
    case $loaded in *" $name "*) return ;; esac
    loaded="$loaded$name "
    file=$(find "$module_tree/kernel" \( -name "$name.ko*" -o -name "${name//_/-}.ko*" \) |
        head -n 1)
    if [ -z "$file" ]; then
        grep -Eq "/($name|${name//_/-})\.ko\$" "$module_tree/modules.builtin" ||
            die "no module $name in $kernel_package"
        return
    fi
    local module=$initramfs/modules/$name.ko
    case $file in
    *.ko) cp "$file" "$module" ;;
    *.ko.xz) xz -dc "$file" >"$module" ;;
    *.ko.zst) zstd -qdc "$file" >"$module" ;;
    *) die "cannot unpack the module $file" ;;
    esac
    # .modinfo holds NUL-separated key=value strings, one of them depends=a,b.
    depends=$(tr '\0' '\n' <"$module" | sed -n 's/^depends=//p' | head -n 1)
    for dep in ${depends//,/ }; do
        add_module "$dep"
    done
    echo "$name" >>"$initramfs/modules/order"
}

# make_initramfs MODULES...: $tmp/initrd.img, from fetch_kernel's kernel and busybox.
make_initramfs() {
    initramfs=$tmp/initramfs
    mkdir -p "$initramfs/bin" "$initramfs/modules" "$initramfs/dev" "$initramfs/proc" \
        "$initramfs/sys" "$initramfs/newroot"
    # /bin/busybox up to Debian 12, /usr/bin/busybox from Debian 13 on.
    local busybox=$tmp/busybox/usr/bin/busybox
    [ -f "$busybox" ] || busybox=$tmp/busybox/bin/busybox
    cp "$busybox" "$initramfs/bin/busybox"
    cp "$HERE/init-machine.sh" "$initramfs/init"
    chmod 0755 "$initramfs/init" "$initramfs/bin/busybox"
    loaded=" "
    local module
    for module in "$@"; do
        add_module "$module"
    done
    (cd "$initramfs" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) |
        gzip -9 >"$tmp/initrd.img"
}
