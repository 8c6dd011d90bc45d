//! Mini-batch loading: seeded shuffling, per-sample transforms and batches
//! prepared on a background thread while the caller trains on the previous
//! ones.
//!
//! Reproducibility does not depend on thread timing:
//! * the order of an epoch is a permutation derived from `(seed, epoch)`
//!   only, so a run repeats exactly and resuming at epoch `k` sees the same
//!   order as an uninterrupted run;
//! * each sample's transform draws from a generator seeded with
//!   `(seed, epoch, sample index)`, so its augmentation is the same whichever
//!   thread prepares it and whatever the batch size.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;

use crate::dataset::{checked_volume, Dataset};
use crate::error::{DataError, Result};
use crate::rng::Rng;
use crate::transform::Transform;

/// Stream tags that keep the shuffle and augmentation generators independent.
const SHUFFLE_STREAM: u64 = 0x5348_5546; // "SHUF"
const AUGMENT_STREAM: u64 = 0x4155_474D; // "AUGM"

/// Number of batches prepared ahead of the consumer by default.
pub const DEFAULT_PREFETCH: usize = 2;

/// A mini-batch of images and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `N * C * H * W` values, sample after sample, each in CHW order.
    pub images: Vec<f32>,
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// One label per sample.
    pub labels: Vec<usize>,
    /// Index of each sample in the data set.
    pub indices: Vec<usize>,
}

impl Batch {
    /// Number of samples in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` for a batch without samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Splits a data set into shuffled, transformed mini-batches.
#[derive(Clone)]
pub struct DataLoader {
    shared: Arc<Shared>,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    prefetch: usize,
    /// `(rank, ranks)`: this loader deals only rank `rank`'s part of each epoch.
    shard: Option<(usize, usize)>,
}

/// What the background thread needs to build batches.
struct Shared {
    dataset: Arc<dyn Dataset>,
    transform: Option<Arc<dyn Transform>>,
    seed: u64,
    /// Shape of the data set's images.
    input_shape: [usize; 3],
    /// Shape of the images after the transform.
    sample_shape: [usize; 3],
}

impl std::fmt::Debug for DataLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataLoader")
            .field("samples", &self.shared.dataset.len())
            .field("batch_size", &self.batch_size)
            .field("shuffle", &self.shuffle)
            .field("seed", &self.shared.seed)
            .field("drop_last", &self.drop_last)
            .field("sample_shape", &self.shared.sample_shape)
            .finish()
    }
}

impl DataLoader {
    /// A loader of `dataset` in batches of `batch_size`, reshuffled every
    /// epoch when `shuffle` is set, with `transform` applied to each sample.
    /// With `drop_last`, a final batch smaller than `batch_size` is skipped.
    ///
    /// Fails when `batch_size` is 0, the data set is empty, or the transform
    /// does not accept the data set's image shape.
    pub fn new(
        dataset: Arc<dyn Dataset>,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        transform: Option<Arc<dyn Transform>>,
        drop_last: bool,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(DataError::invalid("batch size must be at least 1"));
        }
        if dataset.is_empty() {
            return Err(DataError::empty("the data loader was given no samples"));
        }
        let input_shape = dataset.shape();
        if checked_volume(&input_shape).is_none_or(|v| v == 0) {
            return Err(DataError::invalid(format!(
                "data set image shape {input_shape:?} is not usable"
            )));
        }
        let sample_shape = match &transform {
            Some(t) => t.output_shape(input_shape)?,
            None => input_shape,
        };
        if checked_volume(&sample_shape).is_none_or(|v| v == 0) {
            return Err(DataError::invalid(format!(
                "transformed image shape {sample_shape:?} is not usable"
            )));
        }
        Ok(DataLoader {
            shared: Arc::new(Shared {
                dataset,
                transform,
                seed,
                input_shape,
                sample_shape,
            }),
            batch_size,
            shuffle,
            drop_last,
            prefetch: DEFAULT_PREFETCH,
            shard: None,
        })
    }

    /// Deals this loader only rank `rank`'s part of each epoch out of `ranks`, as PyTorch's
    /// `DistributedSampler` does: the epoch's order (the same permutation on every rank) is
    /// padded by its own first samples to a multiple of `ranks`, and rank `r` takes positions
    /// `r`, `r + ranks`, `r + 2·ranks`, … So every rank has the same number of samples, and
    /// batch `i` of all the ranks together holds the samples of batch `i` of one loader with
    /// `ranks` times the batch size.
    pub fn with_shard(mut self, rank: usize, ranks: usize) -> Result<Self> {
        if ranks == 0 || rank >= ranks {
            return Err(DataError::invalid(format!(
                "rank {rank} of {ranks}: expected a rank below the number of ranks"
            )));
        }
        self.shard = (ranks > 1).then_some((rank, ranks));
        Ok(self)
    }

    /// Samples this loader deals per epoch: the data set's, or one rank's part of them.
    pub fn epoch_samples(&self) -> usize {
        let n = self.shared.dataset.len();
        match self.shard {
            Some((_, ranks)) => n.div_ceil(ranks),
            None => n,
        }
    }

    /// Sets how many batches the background thread prepares ahead (at
    /// least 1).
    pub fn with_prefetch(mut self, batches: usize) -> Self {
        self.prefetch = batches.max(1);
        self
    }

    /// Number of batches per epoch.
    pub fn len(&self) -> usize {
        let n = self.epoch_samples();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// `true` when an epoch yields no batch (fewer samples than one batch
    /// with `drop_last`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of samples in the data set.
    pub fn num_samples(&self) -> usize {
        self.shared.dataset.len()
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The underlying data set.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.shared.dataset
    }

    /// Shape `[C, H, W]` of each sample of a batch (after the transform).
    pub fn sample_shape(&self) -> [usize; 3] {
        self.shared.sample_shape
    }

    /// The order in which epoch `epoch` visits the data set: a permutation of
    /// `0..len` that depends only on the seed and `epoch` (the identity when
    /// shuffling is off); with a shard, this rank's part of it.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let n = self.shared.dataset.len();
        let order: Vec<usize> = if self.shuffle {
            Rng::from_parts(&[self.shared.seed, SHUFFLE_STREAM, epoch as u64]).permutation(n)
        } else {
            (0..n).collect()
        };
        match self.shard {
            Some((rank, ranks)) => {
                let total = n.div_ceil(ranks) * ranks;
                (rank..total).step_by(ranks).map(|i| order[i % n]).collect()
            }
            None => order,
        }
    }

    /// Builds batch `index` of epoch `epoch` on the calling thread (the same
    /// batch the iterator of [`DataLoader::epoch`] yields at that position).
    pub fn batch(&self, epoch: usize, index: usize) -> Result<Batch> {
        let order = self.order(epoch);
        let start = index
            .checked_mul(self.batch_size)
            .filter(|_| index < self.len());
        let Some(start) = start else {
            return Err(DataError::IndexOutOfRange {
                index,
                len: self.len(),
            });
        };
        let end = (start + self.batch_size).min(order.len());
        self.shared.build_batch(epoch as u64, &order[start..end])
    }

    /// The batches of epoch `epoch`, prepared on a background thread up to
    /// the prefetch depth ahead of the consumer. The iterator stops after the
    /// first error. Dropping it early stops the background thread.
    pub fn epoch(&self, epoch: usize) -> Epoch {
        let order = self.order(epoch);
        let num_batches = self.len();
        let batch_size = self.batch_size;
        let shared = Arc::clone(&self.shared);
        let (tx, rx) = sync_channel(self.prefetch);

        let spawned = std::thread::Builder::new()
            .name("aics-data-loader".into())
            .spawn(move || {
                for chunk in order.chunks(batch_size).take(num_batches) {
                    let build = || shared.build_batch(epoch as u64, chunk);
                    let batch = match loader_pool() {
                        Some(pool) => pool.install(build),
                        None => build(),
                    };
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            });
        match spawned {
            Ok(handle) => Epoch {
                rx: Some(rx),
                handle: Some(handle),
                remaining: num_batches,
                pending_error: None,
            },
            Err(e) => Epoch {
                rx: None,
                handle: None,
                remaining: 0,
                pending_error: Some(DataError::Worker {
                    msg: format!("cannot start the loader thread: {e}"),
                }),
            },
        }
    }
}

/// The threads that build prefetched batches: a pool of their own, as many as the kernels'.
/// The consumer may be a worker of the kernels' pool waiting for its next batch (the `aics`
/// binary runs its commands on one), and a pool of one thread would then have none free for
/// the batch it waits for. None if its threads cannot start (then the loader thread builds
/// batches on the kernels' pool, as before).
fn loader_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|i| format!("aics-data-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

impl Shared {
    /// Loads, checks and transforms the samples at `indices` in parallel into
    /// one batch.
    fn build_batch(&self, epoch: u64, indices: &[usize]) -> Result<Batch> {
        let [c, h, w] = self.sample_shape;
        let per_sample = c * h * w;
        let input_len: usize = self.input_shape.iter().product();
        let num_classes = self.dataset.num_classes();
        let mut images = vec![0.0f32; indices.len() * per_sample];

        let labels: Vec<usize> = images
            .par_chunks_mut(per_sample)
            .zip(indices.par_iter())
            .map(|(dst, &idx)| {
                let (img, label) = self.dataset.get(idx)?;
                if img.len() != input_len {
                    return Err(DataError::mismatch(format!(
                        "sample {idx} has {} values, expected {input_len} for shape {:?}",
                        img.len(),
                        self.input_shape
                    )));
                }
                if label >= num_classes {
                    return Err(DataError::mismatch(format!(
                        "sample {idx} has label {label}, expected below {num_classes}"
                    )));
                }
                let (img, shape) = match &self.transform {
                    Some(t) => {
                        let mut rng =
                            Rng::from_parts(&[self.seed, AUGMENT_STREAM, epoch, idx as u64]);
                        t.apply(img, self.input_shape, &mut rng)
                    }
                    None => (img, self.input_shape),
                };
                if shape != self.sample_shape || img.len() != per_sample {
                    return Err(DataError::mismatch(format!(
                        "transformed sample {idx} has shape {shape:?} ({} values), expected {:?}",
                        img.len(),
                        self.sample_shape
                    )));
                }
                dst.copy_from_slice(&img);
                Ok(label)
            })
            .collect::<Result<_>>()?;

        Ok(Batch {
            images,
            shape: [indices.len(), c, h, w],
            labels,
            indices: indices.to_vec(),
        })
    }
}

/// Iterator over the batches of one epoch; see [`DataLoader::epoch`].
pub struct Epoch {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
    pending_error: Option<DataError>,
}

impl Epoch {
    /// Joins the background thread and describes why it stopped early.
    fn worker_failure(&mut self) -> DataError {
        let msg = match self.handle.take().map(JoinHandle::join) {
            Some(Err(payload)) => {
                let reason = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown reason".to_string());
                format!("the loader thread panicked: {reason}")
            }
            _ => "the loader thread stopped before the end of the epoch".to_string(),
        };
        DataError::Worker { msg }
    }
}

impl Iterator for Epoch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending_error.take() {
            return Some(Err(e));
        }
        if self.remaining == 0 {
            return None;
        }
        let received = self.rx.as_ref()?.recv();
        match received {
            Ok(Ok(batch)) => {
                self.remaining -= 1;
                Some(Ok(batch))
            }
            Ok(Err(e)) => {
                self.remaining = 0;
                Some(Err(e))
            }
            Err(_) => {
                self.remaining = 0;
                Some(Err(self.worker_failure()))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let errors = usize::from(self.pending_error.is_some());
        (0, Some(self.remaining + errors))
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        // Closing the channel makes a blocked send fail, so the thread ends
        // after at most the batch it is building.
        drop(self.rx.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::InMemoryDataset;
    use crate::transform::{Compose, RandomCrop, RandomHorizontalFlip};
    use std::collections::HashSet;

    /// `n` images of 1x2x3 whose pixels encode the sample index; label `i % 4`.
    fn numbered(n: usize) -> Arc<dyn Dataset> {
        let images: Vec<u8> = (0..n)
            .flat_map(|i| (0..6).map(move |p| (i * 6 + p) as u8))
            .collect();
        let labels = (0..n).map(|i| i % 4).collect();
        Arc::new(InMemoryDataset::new(images, labels, [1, 2, 3], 4).expect("valid"))
    }

    fn augment() -> Option<Arc<dyn Transform>> {
        Some(Arc::new(
            Compose::default()
                .then(RandomCrop::new(2, 1))
                .then(RandomHorizontalFlip::new(0.5)),
        ))
    }

    fn collect(loader: &DataLoader, epoch: usize) -> Vec<Batch> {
        loader
            .epoch(epoch)
            .collect::<Result<Vec<_>>>()
            .expect("epoch loads")
    }

    #[test]
    fn every_index_once_per_epoch_and_batch_count() {
        let loader = DataLoader::new(numbered(10), 3, true, 7, None, false).expect("valid");
        assert_eq!(loader.len(), 4);
        let batches = collect(&loader, 0);
        assert_eq!(batches.len(), 4);
        assert_eq!(batches[3].shape, [1, 1, 2, 3]);
        assert_eq!(batches[0].shape, [3, 1, 2, 3]);
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        assert_eq!(seen, loader.order(0));
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());

        // Images and labels belong to the listed indices.
        for b in &batches {
            for (k, &idx) in b.indices.iter().enumerate() {
                assert_eq!(b.labels[k], idx % 4);
                assert_eq!(b.images[k * 6], (idx * 6) as f32 / 255.0);
            }
        }

        let dropping = DataLoader::new(numbered(10), 3, true, 7, None, true).expect("valid");
        assert_eq!(dropping.len(), 3);
        let batches = collect(&dropping, 0);
        assert_eq!(batches.len(), 3);
        assert!(batches.iter().all(|b| b.len() == 3));
    }

    /// Shards deal what PyTorch's DistributedSampler deals: the ranks' batches `i` together are
    /// the whole loader's batch `i` at `ranks` times the size (augmented alike), each rank has
    /// the same count, and the padding repeats the epoch's first samples.
    #[test]
    fn shards_split_each_batch_of_the_whole_loader() {
        let (ranks, b) = (3, 2);
        let whole =
            DataLoader::new(numbered(18), ranks * b, true, 5, augment(), false).expect("valid");
        let shards: Vec<DataLoader> = (0..ranks)
            .map(|r| {
                DataLoader::new(numbered(18), b, true, 5, augment(), false)
                    .and_then(|l| l.with_shard(r, ranks))
                    .expect("valid")
            })
            .collect();
        for epoch in 0..2 {
            let big = collect(&whole, epoch);
            let parts: Vec<Vec<Batch>> = shards.iter().map(|l| collect(l, epoch)).collect();
            assert!(parts.iter().all(|p| p.len() == big.len()));
            for (i, batch) in big.iter().enumerate() {
                for (k, &idx) in batch.indices.iter().enumerate() {
                    let part = &parts[k % ranks][i];
                    let j = k / ranks;
                    assert_eq!(part.indices[j], idx);
                    let per = part.images.len() / part.len();
                    assert_eq!(
                        part.images[j * per..(j + 1) * per],
                        batch.images[k * per..(k + 1) * per]
                    );
                }
            }
        }
        // 10 samples over 4 ranks: 3 each, padded by the epoch's first two
        let order = DataLoader::new(numbered(10), 1, true, 5, None, false)
            .expect("valid")
            .order(1);
        let dealt: Vec<Vec<usize>> = (0..4)
            .map(|r| {
                let l = DataLoader::new(numbered(10), 1, true, 5, None, false).expect("valid");
                l.with_shard(r, 4).expect("valid").order(1)
            })
            .collect();
        assert!(dealt.iter().all(|d| d.len() == 3));
        assert_eq!(dealt[0], vec![order[0], order[4], order[8]]);
        assert_eq!(dealt[1], vec![order[1], order[5], order[9]]);
        assert_eq!(dealt[2], vec![order[2], order[6], order[0]]);
        assert_eq!(dealt[3], vec![order[3], order[7], order[1]]);
        let l = DataLoader::new(numbered(10), 1, true, 5, None, false).expect("valid");
        assert!(l.with_shard(4, 4).is_err());
    }

    #[test]
    fn shuffle_depends_on_seed_and_epoch_only() {
        let a = DataLoader::new(numbered(50), 8, true, 42, augment(), false).expect("valid");
        let b = DataLoader::new(numbered(50), 8, true, 42, augment(), false)
            .expect("valid")
            .with_prefetch(4);
        assert_eq!(collect(&a, 3), collect(&b, 3));
        assert_ne!(a.order(3), a.order(4));
        let other_seed = DataLoader::new(numbered(50), 8, true, 43, None, false).expect("valid");
        assert_ne!(a.order(3), other_seed.order(3));

        let plain = DataLoader::new(numbered(5), 2, false, 42, None, false).expect("valid");
        assert_eq!(plain.order(0), vec![0, 1, 2, 3, 4]);
        assert_eq!(plain.order(9), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn augmentation_is_per_sample_not_per_batch() {
        // The same sample gets the same augmentation whatever the batch size.
        let small = DataLoader::new(numbered(20), 3, true, 5, augment(), false).expect("valid");
        let large = DataLoader::new(numbered(20), 20, true, 5, augment(), false).expect("valid");
        assert_eq!(small.sample_shape(), [1, 2, 2]);
        let per_sample = |batches: Vec<Batch>| {
            let mut v: Vec<(usize, Vec<f32>)> = batches
                .iter()
                .flat_map(|b| {
                    b.indices
                        .iter()
                        .enumerate()
                        .map(|(k, &i)| (i, b.images[k * 4..(k + 1) * 4].to_vec()))
                        .collect::<Vec<_>>()
                })
                .collect();
            v.sort_by_key(|(i, _)| *i);
            v
        };
        let s = per_sample(collect(&small, 1));
        assert_eq!(s, per_sample(collect(&large, 1)));
        // ... and changes between epochs.
        assert_ne!(s, per_sample(collect(&small, 2)));
        // The synchronous path builds the same batches.
        assert_eq!(small.batch(1, 2).expect("exists"), collect(&small, 1)[2]);
        assert!(small.batch(1, small.len()).is_err());
    }

    struct Faulty {
        fail_at: usize,
        panic: bool,
    }

    impl Dataset for Faulty {
        fn len(&self) -> usize {
            10
        }
        fn shape(&self) -> [usize; 3] {
            [1, 1, 1]
        }
        fn num_classes(&self) -> usize {
            2
        }
        fn get(&self, i: usize) -> Result<(Vec<f32>, usize)> {
            if i == self.fail_at {
                if self.panic {
                    panic!("sample {i} exploded");
                }
                return Err(DataError::format("fake.bin", "broken sample"));
            }
            Ok((vec![i as f32], i % 2))
        }
    }

    #[test]
    fn errors_end_the_epoch() {
        let ds = Arc::new(Faulty {
            fail_at: 5,
            panic: false,
        });
        let loader = DataLoader::new(ds, 2, false, 0, None, false).expect("valid");
        let items: Vec<_> = loader.epoch(0).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        assert!(matches!(items[2], Err(DataError::Format { .. })));
    }

    #[test]
    fn a_panicking_dataset_is_reported() {
        let ds = Arc::new(Faulty {
            fail_at: 3,
            panic: true,
        });
        let loader = DataLoader::new(ds, 2, false, 0, None, false).expect("valid");
        let items: Vec<_> = loader.epoch(0).collect();
        assert_eq!(items.len(), 2);
        match &items[1] {
            Err(DataError::Worker { msg }) => assert!(msg.contains("exploded"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn dropping_an_epoch_early_does_not_hang() {
        let loader = DataLoader::new(numbered(200), 1, true, 0, None, false)
            .expect("valid")
            .with_prefetch(1);
        let mut it = loader.epoch(0);
        assert!(it.next().is_some());
        drop(it);
        let first: HashSet<usize> = loader
            .epoch(0)
            .take(2)
            .flat_map(|b| b.expect("loads").indices)
            .collect();
        assert_eq!(first.len(), 2);
    }

    #[test]
    fn invalid_configurations() {
        assert!(matches!(
            DataLoader::new(numbered(4), 0, false, 0, None, false),
            Err(DataError::InvalidArgument { .. })
        ));
        let empty: Arc<dyn Dataset> =
            Arc::new(InMemoryDataset::new(vec![], vec![], [1, 2, 3], 4).expect("valid"));
        assert!(matches!(
            DataLoader::new(empty, 4, false, 0, None, false),
            Err(DataError::Empty { .. })
        ));
        let too_big: Option<Arc<dyn Transform>> = Some(Arc::new(RandomCrop::new(9, 0)));
        assert!(DataLoader::new(numbered(4), 2, false, 0, too_big, false).is_err());
        let short = DataLoader::new(numbered(4), 8, false, 0, None, true).expect("valid");
        assert!(short.is_empty());
        assert_eq!(short.epoch(0).count(), 0);
    }
}
