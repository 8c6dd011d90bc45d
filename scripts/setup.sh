#!/usr/bin/env bash
# Prepares a checkout for building and testing:
#   * checks that a Rust toolchain (cargo) is on PATH;
#   * installs Open MPI and libclang from Debian when missing (for `--features mpi`);
#   * fetches the Fashion-MNIST data set from Debian's archive (package
#     dataset-fashion-mnist, pinned and checksummed) into .cache/fashion-mnist/.
#
# Safe to run repeatedly: once the four data files are present it does nothing.
set -euo pipefail

readonly PKG="dataset-fashion-mnist"
readonly PKG_VERSION="0.0~git20200523.55506a9-1"
readonly PIN="${PKG}=${PKG_VERSION}"
readonly DEB_SHA256="39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"
readonly SRC_SUBDIR="usr/share/datasets/fashion-mnist"
readonly FILES=(
    train-images-idx3-ubyte.gz
    train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz
    t10k-labels-idx1-ubyte.gz
)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly DEST="${REPO_ROOT}/.cache/fashion-mnist"

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when already root, through sudo otherwise.
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "'$*' needs root and sudo is not available"
    fi
}

check_toolchain() {
    if command -v cargo >/dev/null 2>&1; then
        log "Rust toolchain: $(cargo --version)"
    else
        cat >&2 <<'EOF'
[setup] warning: cargo was not found on PATH.
[setup] Install a Rust toolchain, for example with rustup:
[setup]     curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh
[setup] or from Debian packages:
[setup]     apt-get install cargo rustc
EOF
    fi
}

have_dataset() {
    local f
    for f in "${FILES[@]}"; do
        [[ -s "${DEST}/${f}" ]] || return 1
    done
}

# Downloads the pinned .deb into the current directory.
download_deb() {
    if apt-get download "${PIN}" >/dev/null 2>&1; then
        return 0
    fi
    log "apt-get download ${PIN} failed; refreshing package lists"
    as_root apt-get update -qq || die "apt-get update failed"
    apt-get download "${PIN}" \
        || die "could not download ${PIN}: the pinned version is not available from the configured apt sources"
}

fetch_fashion_mnist() {
    if have_dataset; then
        log "Fashion-MNIST already present in ${DEST}"
        return 0
    fi
    local tool
    for tool in apt-get dpkg-deb sha256sum; do
        command -v "${tool}" >/dev/null 2>&1 \
            || die "'${tool}' is not available to fetch the Debian package ${PIN}; instead put ${FILES[*]} (the Fashion-MNIST IDX files) into ${DEST}/ and run this again, or give aics their folder with --dataset fashion-mnist:DIR"
    done

    local tmp
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand $tmp now, on purpose
    trap "rm -rf '${tmp}'" EXIT
    # apt fetches as the unprivileged _apt user when it can; let it write here.
    if [[ "$(id -u)" -eq 0 ]] && id _apt >/dev/null 2>&1; then
        chown _apt "${tmp}"
    fi

    log "downloading ${PIN}"
    (cd "${tmp}" && download_deb)

    local debs=("${tmp}"/*.deb)
    [[ -f "${debs[0]}" ]] || die "apt-get download ${PIN} produced no .deb file"
    local deb="${debs[0]}"

    local actual
    actual="$(sha256sum "${deb}" | cut -d' ' -f1)"
    if [[ "${actual}" != "${DEB_SHA256}" ]]; then
        die "SHA-256 mismatch for ${PIN}: expected ${DEB_SHA256}, got ${actual}"
    fi
    log "checksum OK (${DEB_SHA256})"

    dpkg-deb -x "${deb}" "${tmp}/root"
    mkdir -p "${DEST}"
    local f
    for f in "${FILES[@]}"; do
        local src="${tmp}/root/${SRC_SUBDIR}/${f}"
        [[ -s "${src}" ]] || die "${PIN} does not contain ${SRC_SUBDIR}/${f}"
        # Copy under a temporary name first so an interrupted run never leaves
        # a partial file that a later run would take for complete.
        cp "${src}" "${DEST}/${f}.part"
        mv "${DEST}/${f}.part" "${DEST}/${f}"
    done
    rm -rf "${tmp}"
    trap - EXIT
    log "Fashion-MNIST installed in ${DEST}"
}

# Open MPI and libclang (for the `mpi` crate's bindings), for `--features mpi` builds and their
# tests (`aics train --distributed`). Set AICS_NO_MPI=1 to skip.
install_mpi() {
    if [[ "${AICS_NO_MPI:-0}" == 1 ]]; then
        log "AICS_NO_MPI=1: not installing Open MPI"
        return 0
    fi
    if command -v mpirun >/dev/null 2>&1 && command -v mpicc >/dev/null 2>&1 \
        && ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
        log "Open MPI present: $(mpirun --version 2>/dev/null | head -n 1)"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "warning: Open MPI is missing and apt-get is not available; install Open MPI's development files, mpirun and libclang for --features mpi builds (the default build needs none of them)"
        return 0
    fi
    log "installing Open MPI and libclang (libopenmpi-dev openmpi-bin libclang-dev)"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        libopenmpi-dev openmpi-bin libclang-dev >/dev/null; then
        as_root apt-get update -qq || die "apt-get update failed"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            libopenmpi-dev openmpi-bin libclang-dev >/dev/null \
            || die "could not install libopenmpi-dev openmpi-bin libclang-dev"
    fi
}

main() {
    check_toolchain
    fetch_fashion_mnist
    bash "${REPO_ROOT}/scripts/fetch-assets.sh"
    install_mpi
}

main "$@"
