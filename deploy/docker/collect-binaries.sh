#!/usr/bin/env bash
# Copies the embsum-* executables of a CMake build tree into OUT/bin and,
# with --libs, the shared libraries they load into OUT/lib, so that a
# runtime image needs nothing else from the build stage. Used by the
# Dockerfile; tested by tests/deploy.
#
#   collect-binaries.sh --build_dir=DIR --out=DIR [--libs] [--strip]
#                       [--exclude_lib=REGEX]...
#
# --libs skips the C library and the GPU driver (always from the runtime
# image or the host) and whatever matches an --exclude_lib regex (a library
# file name such as libcublas.so.12 that the runtime base image provides).
# Fails when embsum-server or embsum-ingest is missing, when two executables
# share a name, or when a library cannot be resolved.
set -euo pipefail

die() { echo "collect-binaries: $*" >&2; exit 1; }

build_dir="" out="" libs=0 strip=0
excludes=(
  # glibc: must match the runtime image's own.
  '^(ld-linux.*|libc|libm|libdl|libpthread|librt|libresolv|libutil|libanl|libmvec|libnsl)\.so'
  # The NVIDIA driver: the container runtime mounts the host's.
  '^(libcuda|libnvidia-.*|libnvcuvid)\.so'
)
for arg in "$@"; do
  case "$arg" in
    --build_dir=*) build_dir=${arg#*=} ;;
    --out=*) out=${arg#*=} ;;
    --libs) libs=1 ;;
    --strip) strip=1 ;;
    --exclude_lib=*) excludes+=("${arg#*=}") ;;
    *) die "unknown argument '$arg' (see the header of $0)" ;;
  esac
done
[[ -n "$build_dir" && -n "$out" ]] || die "--build_dir and --out are required"
[[ -d "$build_dir" ]] || die "--build_dir=$build_dir: not a directory"

mkdir -p "$out/bin"
declare -A seen=()
while IFS= read -r -d '' exe; do
  name=$(basename "$exe")
  [[ -z "${seen[$name]:-}" ]] || die "two executables named $name: ${seen[$name]} and $exe"
  seen[$name]=$exe
  install -m 0755 "$exe" "$out/bin/$name"
  if ((strip)); then strip --strip-debug "$out/bin/$name"; fi
done < <(find "$build_dir" -type f -name 'embsum-*' -perm -u+x -not -path '*/CMakeFiles/*' -print0)
for required in embsum-server embsum-ingest; do
  [[ -n "${seen[$required]:-}" ]] || die "$build_dir: no $required executable (was it built?)"
done
echo "collect-binaries: ${#seen[@]} executables: $(printf '%s ' "${!seen[@]}" | tr ' ' '\n' | sort | tr '\n' ' ')"

((libs)) || exit 0
mkdir -p "$out/lib"
declare -A copied=()
for exe in "$out"/bin/*; do
  while read -r line; do
    # "libfoo.so.1 => /usr/lib/x86_64-linux-gnu/libfoo.so.1 (0x...)", or
    # "libfoo.so.1 => not found", or the vdso / loader lines without "=>".
    [[ "$line" == *"=>"* ]] || continue
    soname=${line%% =>*}
    soname=${soname//[[:space:]]/}
    path=${line#*=> }
    path=${path%% (*}
    skip=0
    for re in "${excludes[@]}"; do
      if [[ "$soname" =~ $re ]]; then skip=1; break; fi
    done
    ((skip)) && continue
    [[ "$path" == /* && -e "$path" ]] || die "$(basename "$exe"): cannot resolve $soname ($line)"
    [[ -n "${copied[$soname]:-}" ]] && continue
    copied[$soname]=1
    # Copy the file under its soname: what the dynamic loader asks for.
    cp -L "$path" "$out/lib/$soname"
  done < <(ldd "$exe")
done
echo "collect-binaries: ${#copied[@]} shared libraries into $out/lib"
