//! `--distributed`: data-parallel training over MPI, shared by the training commands. Each rank
//! trains on its own shard of every epoch, the gradients are averaged in buckets while backward
//! runs ([`DistributedDataParallel`]), and rank 0 alone prints, logs and writes checkpoints.

use std::time::Duration;

use aics_mpi::MpiComm;
use aics_nn::distributed::{Communicator, DdpOptions, DistributedDataParallel, SyncBatchNorm};
use aics_nn::Module;
use aics_tensor::Tensor;
use anyhow::{bail, Result};

const DEFAULT_BUCKET_MB: f64 = 25.0;
const DEFAULT_TIMEOUT_S: f64 = 300.0;

#[derive(clap::Args, Debug, Clone)]
pub struct DistArgs {
    /// Train on every rank of an MPI job (`mpirun -np N aics train --distributed …`): each rank
    /// reads its own shard of each epoch with --batch-size images a step, and the gradients
    /// are averaged over the ranks (needs a build with `--features mpi`).
    #[arg(long)]
    pub distributed: bool,
    /// Gradient megabytes per all-reduce bucket (--distributed).
    #[arg(long, default_value_t = DEFAULT_BUCKET_MB)]
    pub bucket_mb: f64,
    /// Seconds a rank waits for the others before it stops; it then holds a roll call (as long
    /// again, at most a minute) and names the ranks that did not answer (--distributed).
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_S)]
    pub dist_timeout: f64,
    /// Batch norm over the batches of all ranks together, as PyTorch's SyncBatchNorm
    /// (--distributed; by default each rank normalises over its own batch).
    #[arg(long)]
    pub sync_batchnorm: bool,
}

/// Where this process stands in its group: the communicator's side of a distributed run, or
/// a group of one.
pub struct Group {
    pub ddp: Option<DistributedDataParallel>,
    sync_batchnorm: bool,
    options: DdpOptions,
}

impl Group {
    /// Starts MPI and the gradient reducer for `model` when `--distributed` is given (making
    /// every rank's model rank 0's); a group of one otherwise. Options that only a distributed
    /// run uses are refused without it.
    pub fn start(a: &DistArgs, model: &dyn Module) -> Result<Group> {
        if !a.distributed {
            if a.bucket_mb != DEFAULT_BUCKET_MB
                || a.dist_timeout != DEFAULT_TIMEOUT_S
                || a.sync_batchnorm
            {
                bail!("--bucket-mb, --dist-timeout and --sync-batchnorm apply to --distributed runs only");
            }
            return Ok(Group {
                ddp: None,
                sync_batchnorm: false,
                options: DdpOptions::default(),
            });
        }
        if !(a.bucket_mb > 0.0 && a.bucket_mb.is_finite()) {
            bail!("--bucket-mb {}: expected a positive size", a.bucket_mb);
        }
        if !(a.dist_timeout > 0.0 && a.dist_timeout.is_finite()) {
            bail!(
                "--dist-timeout {}: expected a positive number of seconds",
                a.dist_timeout
            );
        }
        if !aics_mpi::AVAILABLE {
            bail!("--distributed: this aics was built without MPI; install Open MPI (apt-get install libopenmpi-dev openmpi-bin libclang-dev) and build with `cargo build --release -p aics-cli --features mpi`");
        }
        let options = DdpOptions {
            bucket_bytes: (a.bucket_mb * 1048576.0) as usize,
            timeout: Some(Duration::from_secs_f64(a.dist_timeout)),
        };
        let make = || MpiComm::init().map(|c| Box::new(c) as Box<dyn Communicator>);
        let ddp = DistributedDataParallel::new(model, make, options.clone())?;
        Ok(Group {
            ddp: Some(ddp),
            sync_batchnorm: a.sync_batchnorm,
            options,
        })
    }

    /// The bucket size and timeout of the run, for reducers of further models.
    pub fn options(&self) -> DdpOptions {
        self.options.clone()
    }

    /// With `--sync-batchnorm`, a guard under which the batch norm of forwards on this thread
    /// takes its statistics over all ranks.
    pub fn sync_batch_norm(&self) -> Option<SyncBatchNorm> {
        self.ddp
            .as_ref()
            .filter(|_| self.sync_batchnorm)
            .map(|d| d.sync_batch_norm())
    }

    pub fn rank(&self) -> usize {
        self.ddp.as_ref().map_or(0, |d| d.rank())
    }

    pub fn size(&self) -> usize {
        self.ddp.as_ref().map_or(1, |d| d.size())
    }

    /// Rank 0: the one that prints, logs and writes.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// Back-propagates `loss`, averaging the gradients over the ranks.
    pub fn backward(&mut self, loss: &Tensor) -> Result<()> {
        match self.ddp.as_mut() {
            Some(d) => d.backward(loss)?,
            None => loss.backward()?,
        }
        Ok(())
    }

    /// Sums `values` over the ranks.
    pub fn sum(&mut self, values: &mut [f64]) -> Result<()> {
        if let Some(d) = self.ddp.as_mut() {
            // counts and sums of losses: f32 carries them to 1e-7 relative, enough for a log
            let mut v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
            d.all_reduce_sum(&mut v)?;
            values.iter_mut().zip(v).for_each(|(x, s)| *x = s as f64);
        }
        Ok(())
    }

    /// Every rank's `mine` (their lengths may differ), rank 0's first, on every rank: a sum in
    /// which each rank gives its own values in its place and zeros elsewhere, so exact.
    pub fn gather(&mut self, mine: &[f32]) -> Result<Vec<f32>> {
        let Some(d) = self.ddp.as_mut() else {
            return Ok(mine.to_vec());
        };
        let (rank, ranks) = (d.rank(), d.size());
        // the lengths travel as f32, exact below 2^24
        if mine.len() >= 1 << 24 {
            bail!("{} values to gather: at most 2^24 a rank", mine.len());
        }
        let mut lengths = vec![0f32; ranks];
        lengths[rank] = mine.len() as f32;
        d.all_reduce_sum(&mut lengths)?;
        let before: usize = lengths[..rank].iter().map(|&n| n as usize).sum();
        let total: usize = lengths.iter().map(|&n| n as usize).sum();
        let mut all = vec![0f32; total];
        all[before..before + mine.len()].copy_from_slice(mine);
        d.all_reduce_sum(&mut all)?;
        Ok(all)
    }

    /// Makes every rank's parameters and buffers rank 0's (before evaluating).
    pub fn sync_state(&mut self, model: &dyn Module) -> Result<()> {
        if let Some(d) = self.ddp.as_mut() {
            d.broadcast_state(model)?;
        }
        Ok(())
    }

    /// Ends a run that went well: waits for every rank and shuts MPI down. After an error the
    /// group is dropped instead, and the process's exit makes `mpirun` stop the other ranks.
    pub fn finish(self) -> Result<()> {
        if let Some(d) = self.ddp {
            d.finish()?;
        }
        Ok(())
    }
}

/// Kernel threads for a rank of an MPI job started on this machine, when `--threads` is not
/// given: the machine's cores shared among the job's ranks on it (Open MPI says how many).
pub fn default_threads(cores: usize) -> usize {
    let local = std::env::var("OMPI_COMM_WORLD_LOCAL_SIZE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1);
    (cores / local).max(1)
}
