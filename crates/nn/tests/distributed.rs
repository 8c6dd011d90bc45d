//! Data-parallel training on a group of threads equals one process on the whole batch.

use std::time::Duration;

use aics_nn::distributed::{
    CommError, Communicator, DdpOptions, DistributedDataParallel, ThreadGroup,
};
use aics_nn::loss::cross_entropy;
use aics_nn::optim::Optimizer;
use aics_nn::{
    parameters, state_dict, BatchNorm, Conv2d, Flatten, Linear, Module, NnError, ReLU, Sequential,
    Sgd,
};
use aics_tensor::testing::{assert_close, Tol};
use aics_tensor::{ConvParams, Rng, Tensor};

/// A small CNN, with weights drawn from `seed`, and batch norm after its convolution with `bn`.
fn model_bn(seed: u64, bn: bool) -> Sequential {
    let mut rng = Rng::new(seed);
    let p = ConvParams {
        padding: (1, 1),
        ..ConvParams::default()
    };
    let mut m = Sequential::new().push("conv", Conv2d::new(2, 4, 3, p, true, &mut rng).unwrap());
    if bn {
        m = m.push("bn", BatchNorm::new(4));
    }
    m.push("relu", ReLU)
        .push("flat", Flatten(1))
        .push("fc1", Linear::new(4 * 6 * 6, 16, true, &mut rng).unwrap())
        .push("relu2", ReLU)
        .push("fc2", Linear::new(16, 3, true, &mut rng).unwrap())
}

fn model(seed: u64) -> Sequential {
    model_bn(seed, false)
}

const RANKS: usize = 3;
const PER_RANK: usize = 4;
const STEPS: usize = 4;

/// The data of step `s`: `RANKS * PER_RANK` images and labels.
fn data(s: usize) -> (Vec<f32>, Vec<usize>) {
    let n = RANKS * PER_RANK;
    let mut rng = Rng::new(100 + s as u64);
    let x = Tensor::<f32>::randn(&[n, 2, 6, 6], 0.0, 1.0, &mut rng).to_vec();
    let y = (0..n).map(|i| (i * 7 + s) % 3).collect();
    (x, y)
}

/// Rows `rows` of a batch of images of 72 values.
fn rows(x: &[f32], y: &[usize], rows: &[usize]) -> (Tensor, Vec<usize>) {
    let per = 2 * 6 * 6;
    let xs: Vec<f32> = rows
        .iter()
        .flat_map(|&i| x[i * per..(i + 1) * per].to_vec())
        .collect();
    let t = Tensor::from_vec(xs, &[rows.len(), 2, 6, 6]).unwrap();
    (t, rows.iter().map(|&i| y[i]).collect())
}

fn sgd(m: &Sequential) -> Sgd {
    Sgd::new(parameters(m))
        .lr(0.1)
        .momentum(0.9)
        .weight_decay(1e-3)
}

/// One process, the whole batch of every step: the parameters and buffers after the last.
fn single(bn: bool) -> Vec<Vec<f32>> {
    let m = model_bn(7, bn);
    let mut opt = sgd(&m);
    let all: Vec<usize> = (0..RANKS * PER_RANK).collect();
    for s in 0..STEPS {
        let (x, y) = data(s);
        let (x, y) = rows(&x, &y, &all);
        let loss = cross_entropy(&m.forward(&x).unwrap(), &y, None, 0.0).unwrap();
        opt.zero_grad();
        loss.backward().unwrap();
        opt.step().unwrap();
    }
    state_dict(&m).iter().map(|(_, t)| t.to_vec()).collect()
}

/// `RANKS` threads, each with its own rows of every batch (rank r: rows r, r + RANKS, …, as
/// PyTorch's DistributedSampler deals them), starting from different weights that the
/// broadcast replaces by rank 0's.
fn distributed(bucket_bytes: usize) -> Vec<(Vec<Vec<f32>>, usize)> {
    distributed_bn(bucket_bytes, false, false)
}

/// [`distributed`] of the model with batch norm (`bn`), synchronized over the ranks or not.
fn distributed_bn(bucket_bytes: usize, bn: bool, sync: bool) -> Vec<(Vec<Vec<f32>>, usize)> {
    let handles: Vec<_> = ThreadGroup::members(RANKS)
        .into_iter()
        .map(|comm| {
            std::thread::spawn(move || {
                let r = comm.rank();
                let m = model_bn(if r == 0 { 7 } else { 1000 + r as u64 }, bn);
                let options = DdpOptions {
                    bucket_bytes,
                    timeout: Some(Duration::from_secs(60)),
                };
                let mut ddp = DistributedDataParallel::new(
                    &m,
                    move || Ok(Box::new(comm) as Box<dyn Communicator>),
                    options,
                )
                .unwrap();
                let _sync = sync.then(|| ddp.sync_batch_norm());
                let mut opt = sgd(&m);
                let mine: Vec<usize> = (r..RANKS * PER_RANK).step_by(RANKS).collect();
                for s in 0..STEPS {
                    let (x, y) = data(s);
                    let (x, y) = rows(&x, &y, &mine);
                    let loss = cross_entropy(&m.forward(&x).unwrap(), &y, None, 0.0).unwrap();
                    opt.zero_grad();
                    ddp.backward(&loss).unwrap();
                    opt.step().unwrap();
                }
                let p: Vec<Vec<f32>> = state_dict(&m).iter().map(|(_, t)| t.to_vec()).collect();
                (p, ddp.num_buckets())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn ranks_on_parts_of_the_batch_train_as_one_process_on_all_of_it() {
    let want = single(false);
    // one bucket; and buckets of 1 KB, so several go out while backward runs
    for bucket_bytes in [25 << 20, 1024] {
        let got = distributed(bucket_bytes);
        let buckets = got[0].1;
        if bucket_bytes == 1024 {
            assert_eq!(
                buckets, 3,
                "buckets of 1 KB: fc2 and fc1.bias, fc1.weight, conv"
            );
        } else {
            assert_eq!(buckets, 1);
        }
        for (r, (params, _)) in got.iter().enumerate() {
            for (i, (g, w)) in params.iter().zip(&want).enumerate() {
                let what = format!("bucket {bucket_bytes} B, rank {r}, parameter {i}");
                assert_close(&what, g, w, Tol::new(1e-6, 1e-5));
            }
            // the replicas are not just close: they are the same
            assert_eq!(params, &got[0].0, "rank {r} differs from rank 0");
        }
    }
}

/// With batch norm synchronized, the ranks train as one process on the whole batch too, running
/// statistics included; without it each rank normalises over its own part, and they do not.
#[test]
fn synchronized_batch_norm_trains_as_one_process() {
    let want = single(true);
    let got = distributed_bn(1024, true, true);
    for (r, (state, _)) in got.iter().enumerate() {
        assert_eq!(state.len(), want.len());
        for (i, (g, w)) in state.iter().zip(&want).enumerate() {
            let what = format!("synchronized batch norm, rank {r}, tensor {i}");
            assert_close(&what, g, w, Tol::new(1e-6, 1e-5));
        }
    }
    let per_rank = distributed_bn(1024, true, false);
    let differs = per_rank[0].0.iter().zip(&want).any(|(g, w)| {
        g.iter()
            .zip(w)
            .any(|(a, b)| (a - b).abs() > 1e-3 * (1.0 + b.abs()))
    });
    assert!(
        differs,
        "batch norm per rank should not equal the whole batch's"
    );
}

/// Two runs with the same number of ranks give the same bits.
#[test]
fn a_distributed_run_is_reproducible() {
    let a = distributed(1024);
    let b = distributed(1024);
    assert_eq!(a[0].0, b[0].0);
}

/// The error of a data-parallel backward on rows `rows` of step 0's batch, made by a member of
/// a group in which another never joins, with a timeout of `ms` milliseconds.
fn backward_in_vain(comm: aics_nn::distributed::ThreadComm, ms: u64, rows_of: &[usize]) -> NnError {
    let m = model(7);
    let options = DdpOptions {
        timeout: Some(Duration::from_millis(ms)),
        ..DdpOptions::default()
    };
    let mut ddp = DistributedDataParallel::new(
        &m,
        move || Ok(Box::new(comm) as Box<dyn Communicator>),
        options,
    )
    .unwrap();
    let (x, y) = data(0);
    let (x, y) = rows(&x, &y, rows_of);
    let loss = cross_entropy(&m.forward(&x).unwrap(), &y, None, 0.0).unwrap();
    ddp.backward(&loss).unwrap_err()
}

/// A rank that never joins the backward makes the others fail within the timeout, naming it,
/// instead of hanging.
#[test]
fn a_silent_rank_is_named_within_the_timeout() {
    let mut group = ThreadGroup::members(2);
    let silent = group.pop().unwrap();
    let comm = group.pop().unwrap();
    // rank 1 takes part in the start-up broadcast, then stops answering
    let quiet = std::thread::spawn(move || {
        let m = model(1);
        let ddp = DistributedDataParallel::new(
            &m,
            move || Ok(Box::new(silent) as Box<dyn Communicator>),
            DdpOptions::default(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_secs(3));
        drop(ddp);
    });
    let err = backward_in_vain(comm, 300, &[0, 1]);
    assert!(
        matches!(
            err,
            NnError::Comm(CommError::Timeout {
                rank: 0,
                peer: 1,
                ..
            })
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("rank 1") && msg.contains("gradient bucket 0"),
        "{msg}"
    );
    quiet.join().unwrap();
}

/// Of three ranks, rank 1 hangs after the start: ranks 0 and 2 time out, and both name rank 1,
/// although rank 0 receives from rank 2 on the ring (and rank 2, waiting on rank 1, holds rank
/// 0 up): their roll call hears each other and not rank 1.
#[test]
fn a_hung_rank_among_three_is_named_by_every_other() {
    let mut group = ThreadGroup::members(3);
    let hung = group.remove(1);
    let quiet = std::thread::spawn(move || {
        let m = model(1);
        let ddp = DistributedDataParallel::new(
            &m,
            move || Ok(Box::new(hung) as Box<dyn Communicator>),
            DdpOptions::default(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_secs(4));
        drop(ddp);
    });
    let waiting: Vec<_> = group
        .into_iter()
        .map(|comm| {
            std::thread::spawn(move || {
                let r = comm.rank();
                (r, backward_in_vain(comm, 500, &[r]))
            })
        })
        .collect();
    for h in waiting {
        let (r, err) = h.join().unwrap();
        let peer = (r + 2) % 3;
        assert!(
            matches!(&err, NnError::Comm(CommError::Timeout { rank, peer: p, silent: Some(s), .. })
                if *rank == r && *p == peer && s == &vec![1]),
            "rank {r}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("rank {r}: no answer"))
                && msg.contains("rank 1 did not answer a roll call"),
            "{msg}"
        );
    }
    quiet.join().unwrap();
}

/// One rank's dropout masks, one a forward.
type Masks = Vec<Vec<f32>>;

/// The masks of `draws` training forwards of a dropout model on a group of `RANKS` threads:
/// per rank, those drawn after the start-up broadcast, then those drawn after a second
/// broadcast, once rank r has drawn `extra[r]` masks more than rank 0 (as the ranks' streams
/// drift apart in training).
fn dropout_masks(extra: [usize; RANKS], draws: usize) -> Vec<(Masks, Masks)> {
    let handles: Vec<_> = ThreadGroup::members(RANKS)
        .into_iter()
        .map(|comm| {
            std::thread::spawn(move || {
                let r = comm.rank();
                // every rank seeds its dropout alike, as the training commands do
                let m = Sequential::new().push("drop", aics_nn::Dropout::new(0.5, 3).unwrap());
                let mut ddp = DistributedDataParallel::new(
                    &m,
                    move || Ok(Box::new(comm) as Box<dyn Communicator>),
                    DdpOptions::default(),
                )
                .unwrap();
                let x = Tensor::<f32>::ones(&[64]);
                let masks = || -> Vec<Vec<f32>> {
                    (0..draws)
                        .map(|_| m.forward(&x).unwrap().to_vec())
                        .collect()
                };
                let first = masks();
                for _ in 0..extra[r] {
                    m.forward(&x).unwrap();
                }
                ddp.broadcast_state(&m).unwrap();
                (first, masks())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Dropout draws other masks on every rank (rank 0 its own seed's), and after a broadcast each
/// rank's stream depends on rank 0's alone, so a group resumed from rank 0's checkpoint draws
/// what the unbroken run would.
#[test]
fn dropout_draws_other_masks_on_each_rank_and_resumes_from_rank_0s_stream() {
    let a = dropout_masks([0, 0, 0], 3);
    let b = dropout_masks([0, 5, 2], 3);
    // rank 0 keeps the stream its seed gives
    let alone = aics_nn::Dropout::new(0.5, 3).unwrap();
    let x = Tensor::<f32>::ones(&[64]);
    let want: Vec<Vec<f32>> = (0..3)
        .map(|_| alone.forward(&x).unwrap().to_vec())
        .collect();
    assert_eq!(a[0].0, want);
    for r in 0..RANKS {
        for masks in [&a[r].0, &a[r].1] {
            for m in masks {
                assert!(m.iter().all(|&v| v == 0.0 || v == 2.0), "rank {r}: {m:?}");
            }
        }
        for q in 0..r {
            assert_ne!(a[r].0, a[q].0, "ranks {q} and {r} drew the same masks");
            assert_ne!(a[r].1, a[q].1, "ranks {q} and {r}, after the broadcast");
        }
        // after the second broadcast: the same masks however far rank r had drawn ahead
        assert_eq!(a[r].1, b[r].1, "rank {r} after the broadcast");
    }
}
