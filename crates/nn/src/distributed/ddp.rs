//! [`DistributedDataParallel`]: PyTorch's DDP for aics. Each rank runs the same model on its
//! own part of the batch; the model's parameters start equal (broadcast from rank 0), and after
//! each backward every rank holds the average of all ranks' gradients, so the optimizer steps
//! keep the replicas equal.
//!
//! The gradients are averaged in buckets of about `bucket_bytes`, formed from the parameters in
//! reverse order (the order backward finishes them). A bucket is handed to a communication
//! thread as soon as autograd reports its last gradient final
//! ([`aics_tensor::Tensor::backward_with_ready_hook`]), so its all-reduce runs while the rest
//! of backward does. Buckets go out strictly in index order on every rank, which keeps the
//! ranks' collectives matched.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use aics_tensor::{GroupStats, Rng, Tensor};

use super::{CommError, CommResult, Communicator, RollCall, SyncBatchNorm};
use crate::module::{state_dict, Module};
use crate::{parameters, Result};

/// Settings of [`DistributedDataParallel`].
#[derive(Clone, Debug)]
pub struct DdpOptions {
    /// Gradient bytes per bucket (PyTorch's `bucket_cap_mb`, default 25 MB).
    pub bucket_bytes: usize,
    /// How long a collective may wait for the other ranks before this rank gives up, naming
    /// the rank it was waiting on. `None` waits for ever.
    pub timeout: Option<Duration>,
}

impl Default for DdpOptions {
    fn default() -> Self {
        DdpOptions {
            bucket_bytes: 25 << 20,
            timeout: Some(Duration::from_secs(300)),
        }
    }
}

type Reply = Sender<CommResult<Vec<f32>>>;

enum Job {
    AllReduce(Vec<f32>, Reply),
    Broadcast(Vec<f32>, usize, Reply),
    /// End the thread (and the engine with it), whoever still holds a handle.
    Stop,
}

/// A way to the communication thread (which owns the communicator: an MPI engine must be used
/// from the thread that started it, and runs the collectives in the order they are handed
/// over). Cloned into layers that need collectives of their own, such as synchronized batch
/// norm; every rank must hand over the same collectives in the same order.
#[derive(Clone)]
pub struct CommHandle {
    jobs: Sender<Job>,
    rank: usize,
    size: usize,
    timeout: Option<Duration>,
    /// A failure met where it could not be returned (inside a backward pass), for the
    /// data-parallel step to report.
    failed: Arc<Mutex<Option<CommError>>>,
    /// The engine's roll call, held after a timeout to name the ranks at fault.
    roll_call: Arc<Mutex<Option<Box<dyn RollCall>>>>,
}

impl GroupStats for CommHandle {
    fn rank(&self) -> usize {
        self.rank
    }

    fn ranks(&self) -> usize {
        self.size
    }

    fn all_gather(&self, buf: &mut [f32]) -> std::result::Result<(), String> {
        // the slots of the other ranks are zero here: their sum is the gather, bit for bit
        self.all_reduce_sum(buf, "synchronized batch norm")
            .map_err(|e| {
                let msg = e.to_string();
                let mut slot = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
                msg
            })
    }
}

/// The answer to one collective handed to the communication thread.
struct Pending {
    reply: Receiver<CommResult<Vec<f32>>>,
    what: String,
}

impl CommHandle {
    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    fn submit(&self, make: impl FnOnce(Reply) -> Job, what: String) -> CommResult<Pending> {
        let (tx, reply) = channel();
        self.jobs.send(make(tx)).map_err(|_| self.stopped(&what))?;
        Ok(Pending { reply, what })
    }

    fn wait(&self, p: Pending) -> CommResult<Vec<f32>> {
        // on a ring the rank before is the one this rank receives from
        let peer = (self.rank + self.size - 1) % self.size.max(1);
        match self.timeout {
            Some(t) => p.reply.recv_timeout(t).map_err(|e| match e {
                RecvTimeoutError::Timeout => CommError::Timeout {
                    rank: self.rank,
                    peer,
                    seconds: t.as_secs_f64(),
                    op: p.what.clone(),
                    // the ranks that time out too answer within as long again (at most a
                    // minute); the ones that do not are named
                    silent: self
                        .roll_call
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .as_mut()
                        .map(|r| r.silent(t.min(Duration::from_secs(60)))),
                },
                RecvTimeoutError::Disconnected => self.stopped(&p.what),
            })?,
            None => p.reply.recv().map_err(|_| self.stopped(&p.what))?,
        }
    }

    /// Sums `values` over the ranks, in place, bit-identical on every rank.
    pub fn all_reduce_sum(&self, values: &mut [f32], what: &str) -> CommResult<()> {
        let p = self.submit(|tx| Job::AllReduce(values.to_vec(), tx), what.to_string())?;
        values.copy_from_slice(&self.wait(p)?);
        Ok(())
    }

    fn stopped(&self, what: &str) -> CommError {
        CommError::Engine {
            rank: self.rank,
            msg: format!(
                "the communication thread has stopped (after an earlier failure) during {what}"
            ),
        }
    }
}

/// Keeps the replicas of a model equal across the ranks of a group; see the module docs.
pub struct DistributedDataParallel {
    comm: CommHandle,
    params: Vec<Tensor>,
    /// tensor id → index into `params`
    index: HashMap<usize, usize>,
    /// parameter indices of each bucket, the last parameters first
    buckets: Vec<Vec<usize>>,
    bucket_of: Vec<usize>,
    thread: Option<JoinHandle<()>>,
    step: u64,
}

impl DistributedDataParallel {
    /// Starts the communication thread with the communicator `make` returns there, and makes
    /// every rank's parameters and buffers rank 0's.
    pub fn new<F>(model: &dyn Module, make: F, options: DdpOptions) -> Result<Self>
    where
        F: FnOnce() -> CommResult<Box<dyn Communicator>> + Send + 'static,
    {
        let (job_tx, job_rx) = channel::<Job>();
        type Hello = (usize, usize, Option<Box<dyn RollCall>>);
        let (hello_tx, hello_rx) = channel::<CommResult<Hello>>();
        let thread = std::thread::Builder::new()
            .name("aics-comm".into())
            .spawn(move || {
                let mut comm = match make() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = hello_tx.send(Err(e));
                        return;
                    }
                };
                let roll_call = comm.roll_call();
                if hello_tx
                    .send(Ok((comm.rank(), comm.size(), roll_call)))
                    .is_err()
                {
                    return;
                }
                for job in job_rx {
                    let (out, reply) = match job {
                        Job::AllReduce(mut v, r) => (comm.all_reduce_sum(&mut v).map(|_| v), r),
                        Job::Broadcast(mut v, root, r) => {
                            (comm.broadcast(&mut v, root).map(|_| v), r)
                        }
                        Job::Stop => return,
                    };
                    let failed = out.is_err();
                    // a caller that gave up waiting has dropped its end; nothing to tell it
                    let _ = reply.send(out);
                    if failed {
                        return;
                    }
                }
            })
            .map_err(|e| CommError::Engine {
                rank: 0,
                msg: format!("cannot start the communication thread: {e}"),
            })?;
        let (rank, size, roll_call) = hello_rx.recv().map_err(|_| CommError::Engine {
            rank: 0,
            msg: "the communication thread stopped before it started".into(),
        })??;
        let comm = CommHandle {
            jobs: job_tx,
            rank,
            size,
            timeout: options.timeout,
            failed: Arc::new(Mutex::new(None)),
            roll_call: Arc::new(Mutex::new(roll_call)),
        };
        Self::build(model, comm, Some(thread), options)
    }

    /// A reducer for another model of the same group, on the communication thread of `handle`
    /// (a GAN's two networks, each stepped by its own optimizer). Makes every rank's copy of
    /// `model` rank 0's. The reducer that started the thread ends it in
    /// [`DistributedDataParallel::finish`].
    pub fn with_handle(
        model: &dyn Module,
        handle: &CommHandle,
        options: DdpOptions,
    ) -> Result<Self> {
        let mut comm = handle.clone();
        comm.timeout = options.timeout;
        Self::build(model, comm, None, options)
    }

    fn build(
        model: &dyn Module,
        comm: CommHandle,
        thread: Option<JoinHandle<()>>,
        options: DdpOptions,
    ) -> Result<Self> {
        let params: Vec<Tensor> = parameters(model)
            .into_iter()
            .map(|(_, t)| t)
            .filter(|t| t.requires_grad())
            .collect();
        let index = params
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id(), i))
            .collect();
        let mut buckets: Vec<Vec<usize>> = Vec::new();
        let mut bytes = usize::MAX;
        for i in (0..params.len()).rev() {
            let b = params[i].numel() * 4;
            if bytes.saturating_add(b) > options.bucket_bytes.max(1) && bytes > 0 {
                buckets.push(Vec::new());
                bytes = 0;
            }
            buckets.last_mut().expect("a bucket").push(i);
            bytes += b;
        }
        let mut bucket_of = vec![0; params.len()];
        for (b, ps) in buckets.iter().enumerate() {
            for &p in ps {
                bucket_of[p] = b;
            }
        }
        let mut ddp = DistributedDataParallel {
            comm,
            params,
            index,
            buckets,
            bucket_of,
            thread,
            step: 0,
        };
        ddp.broadcast_state(model)?;
        Ok(ddp)
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.comm.rank
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.comm.size
    }

    /// Rank 0, the one that writes checkpoints and logs.
    pub fn is_main(&self) -> bool {
        self.comm.rank == 0
    }

    /// A handle for collectives of the model's own (synchronized batch norm).
    pub fn handle(&self) -> CommHandle {
        self.comm.clone()
    }

    /// Synchronizes batch norm over the ranks for forwards on this thread until the guard is
    /// dropped (PyTorch's `SyncBatchNorm`): then N ranks with batch B train a model with batch
    /// norm as one process with batch N·B does.
    pub fn sync_batch_norm(&self) -> SyncBatchNorm {
        SyncBatchNorm::enable(Arc::new(self.comm.clone()))
    }

    /// How many buckets the gradients travel in.
    pub fn num_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Back-propagates `loss` and leaves in every parameter's `.grad` the average over the
    /// ranks of their gradients (a parameter no rank has a gradient for keeps none).
    pub fn backward(&mut self, loss: &Tensor) -> Result<()> {
        self.step += 1;
        let step = self.step;
        let nb = self.buckets.len();
        // a bucket is ready when none of its parameters is still waiting for its gradient
        let mut remaining: Vec<usize> = self.buckets.iter().map(Vec::len).collect();
        let mut pending: Vec<CommResult<Pending>> = Vec::with_capacity(nb);
        {
            let (params, buckets, index, bucket_of, comm) = (
                &self.params,
                &self.buckets,
                &self.index,
                &self.bucket_of,
                &self.comm,
            );
            // buckets go out in index order: each once it and all before it are ready (or,
            // with `all`, now)
            let launch =
                |remaining: &[usize], all: bool, pending: &mut Vec<CommResult<Pending>>| {
                    while pending.len() < nb && (all || remaining[pending.len()] == 0) {
                        let b = pending.len();
                        let flat = gather(params, &buckets[b]);
                        let what = format!("the all-reduce of gradient bucket {b} of step {step}");
                        pending.push(comm.submit(|tx| Job::AllReduce(flat, tx), what));
                    }
                };
            let mut on_ready = |id: usize| {
                let Some(&p) = index.get(&id) else { return };
                let b = bucket_of[p];
                if remaining[b] > 0 {
                    remaining[b] -= 1;
                    if remaining[b] == 0 {
                        launch(&remaining, false, &mut pending);
                    }
                }
            };
            loss.backward_with_ready_hook(&mut on_ready)?;
            // parameters the loss does not reach: their buckets go out now, in order
            launch(&remaining, true, &mut pending);
        }
        let failed = self
            .comm
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(e) = failed {
            return Err(e.into());
        }
        let scale = 1.0 / self.comm.size as f32;
        for (b, p) in pending.into_iter().enumerate() {
            let flat = self.comm.wait(p?)?;
            scatter(&self.params, &self.buckets[b], &flat, scale);
        }
        Ok(())
    }

    /// Sums `values` over the ranks (for metrics: losses, counts), every rank getting the sum.
    pub fn all_reduce_sum(&mut self, values: &mut [f32]) -> Result<()> {
        Ok(self
            .comm
            .all_reduce_sum(values, "an all-reduce of metrics")?)
    }

    /// Returns once every rank has called it.
    pub fn barrier(&mut self) -> Result<()> {
        Ok(self.comm.all_reduce_sum(&mut [1.0], "a barrier")?)
    }

    /// Gives every rank rank 0's parameters and buffers (batch-norm statistics), as at start.
    /// Call it before evaluating, so that every rank evaluates the model rank 0 saves.
    ///
    /// The model's random streams (dropout's) are set from rank 0's too, but not to them:
    /// rank 0 keeps its own, and rank r > 0 takes a stream forked from rank 0's for r
    /// ([`Rng::digest`], [`Rng::derive`]), so that no two ranks draw the same masks. After
    /// each broadcast the ranks' streams are thus a function of rank 0's alone, the ones rank 0
    /// saves in its checkpoint: a resumed group draws what the unbroken run would have.
    pub fn broadcast_state(&mut self, model: &dyn Module) -> Result<()> {
        let tensors: Vec<Tensor> = state_dict(model).into_iter().map(|(_, t)| t).collect();
        let mut flat: Vec<f32> = tensors.iter().flat_map(|t| t.to_vec()).collect();
        let mut digests = Vec::new();
        model.visit_rngs("", &mut |_, r| {
            digests.push(r.lock().unwrap_or_else(|p| p.into_inner()).digest())
        });
        // each digest as four 16-bit pieces, which f32 carries exactly
        flat.extend(
            digests
                .iter()
                .flat_map(|d| (0..4).map(move |i| ((d >> (16 * i)) & 0xffff) as f32)),
        );
        let what = "the broadcast of rank 0's model".to_string();
        let p = self.comm.submit(|tx| Job::Broadcast(flat, 0, tx), what)?;
        let out = self.comm.wait(p)?;
        let mut at = 0;
        for t in &tensors {
            let n = t.numel();
            t.update_data(|d| d.copy_from_slice(&out[at..at + n]));
            at += n;
        }
        let rank = self.comm.rank;
        if rank > 0 {
            let mut pieces = out[at..].chunks_exact(4);
            model.visit_rngs("", &mut |_, r| {
                if let Some(p) = pieces.next() {
                    let d = p
                        .iter()
                        .enumerate()
                        .fold(0u64, |d, (i, &v)| d | ((v as u64) << (16 * i)));
                    *r.lock().unwrap_or_else(|p| p.into_inner()) = Rng::derive(d, rank as u64);
                }
            });
        }
        Ok(())
    }

    /// Ends a run that went well: waits for every rank, then stops the communication thread
    /// and lets its engine shut down (MPI's `Finalize`). Dropping the reducer without this,
    /// after an error, leaves the thread behind instead of waiting on ranks that may be gone;
    /// the process then exits without shutting MPI down, which makes `mpirun` stop the others.
    pub fn finish(mut self) -> Result<()> {
        self.barrier()?;
        let rank = self.comm.rank;
        let Some(thread) = self.thread.take() else {
            // a reducer on another's thread: that one ends it
            return Ok(());
        };
        // the thread ends here and its engine shuts down (MPI's Finalize)
        let _ = self.comm.jobs.send(Job::Stop);
        thread.join().map_err(|_| CommError::Engine {
            rank,
            msg: "the communication thread panicked".into(),
        })?;
        Ok(())
    }
}

/// A bucket's gradients, one after another, then one flag per parameter: 1 where this rank has
/// a gradient (so that after the sum, 0 means no rank has one).
fn gather(params: &[Tensor], bucket: &[usize]) -> Vec<f32> {
    let n: usize = bucket.iter().map(|&p| params[p].numel()).sum();
    let mut flat = Vec::with_capacity(n + bucket.len());
    let mut has = Vec::with_capacity(bucket.len());
    for &p in bucket {
        params[p].with_grad(|g| {
            has.push(f32::from(g.is_some()));
            match g {
                Some(g) => flat.extend_from_slice(g),
                None => flat.resize(flat.len() + params[p].numel(), 0.0),
            }
        });
    }
    flat.extend(has);
    flat
}

fn scatter(params: &[Tensor], bucket: &[usize], flat: &[f32], scale: f32) {
    let n: usize = bucket.iter().map(|&p| params[p].numel()).sum();
    let mut at = 0;
    for (k, &p) in bucket.iter().enumerate() {
        let len = params[p].numel();
        if flat[n + k] == 0.0 {
            params[p].set_grad(None);
        } else {
            params[p].set_grad(Some(flat[at..at + len].iter().map(|v| v * scale).collect()));
        }
        at += len;
    }
}
