//! `aics`: train, evaluate, inspect and benchmark the classic deep-learning models.

mod anchors_cmd;
mod bench;
mod bench_detect;
mod bench_gan;
mod bench_rnn;
mod classify;
mod data_cmd;
mod data_spec;
mod detect;
mod detect_rcnn;
mod detect_train;
mod detect_tv;
mod dist;
mod eval;
mod export_cmd;
mod features;
mod filters;
mod g2p_cmd;
mod gan_cmd;
mod gradcheck_cmd;
mod lm;
mod map;
mod meta;
mod onnx_cmd;
mod plot;
mod proposals_cmd;
mod stylize;
mod stylize_train;
mod summary;
mod train;
mod visual;
mod weights_cmd;

use clap::{Parser, Subcommand};

// Training allocates and frees the same large buffers every step; mimalloc keeps them mapped
// instead of returning them to the kernel and faulting them back in (measured: see `aics bench`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "aics",
    version,
    about = "Deep learning from the tensor up: train, evaluate, inspect and benchmark classic models"
)]
struct Cli {
    /// Worker threads for all kernels (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)]
enum Cmd {
    /// Train a classifier (default: LeNet-5 on Fashion-MNIST).
    Train(train::TrainArgs),
    /// Evaluate a checkpoint on a test set.
    Eval(eval::EvalArgs),
    /// Classify image files with a checkpoint.
    Predict(eval::PredictArgs),
    /// Classify images with an ImageNet model and published weights (default: MobileNetV2).
    Classify(classify::ClassifyArgs),
    /// Draw one layer's feature maps for an image as a grid.
    Features(features::FeaturesArgs),
    /// Draw a convolution layer's filters as an image grid.
    Filters(filters::FiltersArgs),
    /// Per-layer shapes, parameters and multiply-adds of a model.
    Summary(summary::SummaryArgs),
    /// Finite-difference (f64) gradient check of every operator.
    Gradcheck(gradcheck_cmd::GradcheckArgs),
    /// Make data sets (synthetic detection scenes).
    Data(data_cmd::DataArgs),
    /// Find objects in photos with a pretrained detector (default: YOLOv3-tiny) and draw them.
    Detect(detect::DetectArgs),
    /// Train a detector (YOLOv1, SSD, Fast or Faster R-CNN) on a detection data set, with mAP on
    /// held-out images.
    DetectTrain(detect_train::DetectTrainArgs),
    /// Draw the RPN's 9 anchors at a location of a photo, and a trained Faster R-CNN's proposals.
    Anchors(anchors_cmd::AnchorsArgs),
    /// R-CNN's region proposals by selective search: drawn on a photo, or their recall of a data set.
    Proposals(proposals_cmd::ProposalsArgs),
    /// Score detections against ground truth: COCO's mAP or Pascal VOC's.
    Map(map::MapArgs),
    /// Time the speed workloads (one JSON line each with --json).
    Bench(bench::BenchArgs),
    /// List, locate and download torchvision's published ImageNet weights.
    Weights(weights_cmd::WeightsArgs),
    /// Neural style transfer: repaint a photo in the style of a painting (Gatys et al.).
    Stylize(stylize::StylizeArgs),
    /// Train a feed-forward style network for one painting (Johnson et al.).
    StylizeTrain(stylize_train::StylizeTrainArgs),
    /// Character-level language models: `lm train` (RNN, LSTM and its variants, GRU) and
    /// `lm sample`.
    Lm(lm::LmArgs),
    /// English words to ARPAbet phonemes with g2p_en's trained GRU encoder–decoder.
    G2p(g2p_cmd::G2pArgs),
    /// ONNX models: `onnx check` lists a model's inputs, outputs, opsets and ops, and what aics
    /// cannot run.
    Onnx(onnx_cmd::OnnxArgs),
    /// Write a model as ONNX (`--onnx OUT.onnx`): a zoo classifier, the fast style network,
    /// YOLOv3-tiny or MTCNN's networks, traced and then checked by running the written graph.
    Export(export_cmd::ExportArgs),
    /// Generative adversarial networks: `gan train` (GAN, DCGAN, WGAN), `gan sample`,
    /// `gan interpolate`, `gan eval` (mode collapse measured).
    Gan(gan_cmd::GanArgs),
}

/// mimalloc's `mi_option_purge_delay`: how long freed memory stays committed before it is given
/// back to the kernel. Never giving it back keeps the per-step buffers of training and inference
/// mapped, so they are not zero-filled by page faults again each step; peak memory is unchanged.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // SAFETY: sets a global allocator option before any threads exist; no memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // No transparent huge pages for this process. The allocator asks for them on its segments,
    // and a 2 MB page is resident as a whole however little of it is used, so a model's
    // tensors spread over many of them: MobileNetV2's 13.5 MB of weights made 29 MB resident,
    // its inference peak 73 MB (49–55 MB without), ResNet-50's 257 MB (231). The kernels' times
    // did not change beyond the machine's noise (ResNet-50, MobileNetV2, VGG19, sgemm 2048,
    // the ResNet-18 and LeNet-5 training steps, alternated).
    #[cfg(target_os = "linux")]
    // SAFETY: sets a flag of this process; it only changes how later page faults are served.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    // Exit quietly when the reader of stdout goes away (`aics weights list | head`), like other
    // Unix tools, instead of failing on every later print.
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal before any threads exist.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if cli.threads == Some(0) {
        eprintln!("error: --threads must be at least 1");
        std::process::exit(2);
    }
    // subnormals flushed to zero here and on every worker (see aics_tensor::flush_denormals)
    aics_tensor::flush_denormals();
    let n = cli.threads.unwrap_or_else(|| {
        dist::default_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
    });
    if let Err(e) = aics_tensor::set_num_threads(n) {
        eprintln!("error: cannot start {n} threads: {e}");
        std::process::exit(2);
    }
    // The command runs on one of the pool's workers, not beside them: a parallel op then
    // starts its first part on the calling worker while the others pick up the rest, instead
    // of the main thread handing all of it over and sleeping until it is done (two thread
    // switches an op; a LeNet-5 training step runs about 30 such ops in 5 ms).
    let result = rayon::scope(|_| run(cli.cmd));
    if let Err(e) = result {
        // one line: the error and each cause that adds something (typed errors often repeat
        // their source in their own message)
        let mut msg = e.to_string();
        for cause in e.chain().skip(1) {
            let c = cause.to_string();
            if !msg.contains(&c) {
                msg = format!("{msg}: {c}");
            }
        }
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}

/// The subcommand's work.
fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Train(a) => train::run(a),
        Cmd::Eval(a) => eval::run_eval(a),
        Cmd::Predict(a) => eval::run_predict(a),
        Cmd::Classify(a) => classify::run(a),
        Cmd::Weights(a) => weights_cmd::run(a),
        Cmd::Stylize(a) => stylize::run(a),
        Cmd::StylizeTrain(a) => stylize_train::run(a),
        Cmd::Lm(a) => lm::run(a),
        Cmd::G2p(a) => g2p_cmd::run(a),
        Cmd::Gan(a) => gan_cmd::run(a),
        Cmd::Onnx(a) => onnx_cmd::run(a),
        Cmd::Export(a) => export_cmd::run(a),
        Cmd::Features(a) => features::run(a),
        Cmd::Filters(a) => filters::run(a),
        Cmd::Summary(a) => summary::run(a),
        Cmd::Gradcheck(a) => gradcheck_cmd::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Map(a) => map::run(a),
        Cmd::Detect(a) => detect::run(a),
        Cmd::DetectTrain(a) => detect_train::run(a),
        Cmd::Anchors(a) => anchors_cmd::run(a),
        Cmd::Proposals(a) => proposals_cmd::run(a),
        Cmd::Data(a) => data_cmd::run(a),
    }
}
