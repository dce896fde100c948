#!/usr/bin/env bash
# Assemble an ONNX Runtime C/C++ SDK (the layout of Microsoft's release tarballs: include/ + lib/) from
# what the package registries reachable here carry:
#   - the library: libonnxruntime.so from the PyPI `onnxruntime` wheel installed in PYTHON's environment;
#   - the headers: Debian's libonnxruntime-dev (trixie, 1.21), which ships no library we could use on bookworm.
# ONNX Runtime's C API is backward compatible (a header for API version N runs on any library >= N), so
# the older headers drive the newer wheel library. This script refuses the reverse.
#
# With an official release tarball (github.com/microsoft/onnxruntime/releases) or JetPack's build, skip
# this and pass -DONNXRUNTIME_ROOT=<its folder> to CMake directly.
#
#   usage: onnxruntime-from-registries.sh DEST [PYTHON]
# The Debian mirror is this machine's own (its apt sources), or $DEBIAN_MIRROR.
set -euo pipefail

apt_mirror() {  # the first non-security Debian URI of the apt sources (deb822 .sources files, then one-line .list files)
    local etc=${APT_ETC:-/etc/apt}
    {
        grep -hs '^URIs:' "$etc"/sources.list.d/*.sources | awk '{for (i = 2; i <= NF; i++) print $i}'
        grep -hsE '^deb ' "$etc"/sources.list "$etc"/sources.list.d/*.list |
            awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) {print $i; break}}'
    } | grep -v -- '-security' | head -1 || true
}

if [ "${1:-}" = --print-mirror ]; then apt_mirror; exit 0; fi
dest=${1:?usage: $0 DEST [PYTHON]}
python=${2:-python3}
suite=trixie
mirror=${DEBIAN_MIRROR:-$(apt_mirror)}
[ -n "$mirror" ] || { echo "no Debian mirror found in /etc/apt/sources.list*; set DEBIAN_MIRROR to one" >&2; exit 2; }
mirror=${mirror%/}

lib=$("$python" - <<'EOF'
import glob, os, sys
try:
    import onnxruntime
except ImportError:
    sys.exit("onnxruntime is not installed for this Python; pip install onnxruntime")
found = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.*")))
if not found:
    sys.exit(f"onnxruntime {onnxruntime.__version__} has no libonnxruntime.so in its wheel")
print(found[-1])
EOF
)
lib_version=${lib##*.so.}

arch=$(dpkg --print-architecture)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL "$mirror/dists/$suite/main/binary-$arch/Packages.xz" | xz -dc > "$tmp/Packages"
deb=$(awk '/^Package: libonnxruntime-dev$/{p=1} p&&/^Filename:/{print $2; exit}' "$tmp/Packages")
[ -n "$deb" ] || { echo "no libonnxruntime-dev for $arch in Debian $suite" >&2; exit 1; }
curl -fsSL "$mirror/$deb" -o "$tmp/dev.deb"
dpkg-deb -x "$tmp/dev.deb" "$tmp/x"
header_version=$(basename "$deb" | sed -E 's/^libonnxruntime-dev_([0-9]+\.[0-9]+)\..*/\1/')

older() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -1)" = "$1" ]; }
if ! older "$header_version" "$lib_version"; then
    echo "headers $header_version are newer than the library $lib_version; upgrade onnxruntime in $python's environment" >&2
    exit 1
fi

rm -rf "$dest"
mkdir -p "$dest/include" "$dest/lib"
cp -r "$tmp/x/usr/include/onnxruntime/." "$dest/include/"
ln -s "$lib" "$dest/lib/libonnxruntime.so.1"
ln -s libonnxruntime.so.1 "$dest/lib/libonnxruntime.so"
printf 'headers %s (Debian %s %s)\nlibrary %s (%s)\n' "$header_version" "$suite" "$(basename "$deb")" "$lib_version" "$lib" > "$dest/VERSION"
cat "$dest/VERSION"
