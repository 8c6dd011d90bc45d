//! Data-parallel training: a small communicator trait (all-reduce, broadcast, barrier), the
//! ring algorithms over it, an in-process group of threads, and [`DistributedDataParallel`],
//! which keeps the replicas of a model equal by averaging their gradients in buckets while
//! backward is still running.
//!
//! An engine joins by implementing [`Communicator::exchange`] (send to one rank while receiving
//! from another: one step of a ring) and, if it has a faster one, [`Communicator::broadcast`].
//! The MPI engine lives in the `aics-mpi` crate; [`ThreadGroup`] runs ranks as threads of one
//! process, for tests and for trying the code without MPI.
//!
//! **Reproducible sums.** [`Communicator::all_reduce_sum`] is a ring reduce-scatter followed by
//! a ring all-gather. Chunk `c` of the buffer is summed in the fixed order ranks `c`, `c + 1`,
//! …, `c + N − 1`, and every rank ends with the same bits, so a run is bit-reproducible for a
//! given number of ranks, whatever the engine's own reduction order would have been.

mod ddp;
mod local;
mod sync_bn;

pub use ddp::{CommHandle, DdpOptions, DistributedDataParallel};
pub use local::{ThreadComm, ThreadGroup};
pub use sync_bn::{layer_batch_norm, SyncBatchNorm};

use std::time::Duration;

use thiserror::Error;

/// What went wrong in a collective, naming the rank.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CommError {
    /// A peer is gone (its end of the connection closed).
    #[error("rank {rank}: rank {peer} left the group during {op}")]
    PeerLost {
        rank: usize,
        peer: usize,
        op: String,
    },
    /// Nothing came back within the timeout. `peer` is the rank this one receives from on the
    /// ring; `silent`, where the engine could hold a roll call ([`RollCall`]), the ranks that
    /// did not answer it.
    #[error("rank {rank}: no answer from the group within {seconds} s during {op}{}", timeout_cause(*.peer, .silent.as_deref()))]
    Timeout {
        rank: usize,
        peer: usize,
        seconds: f64,
        op: String,
        silent: Option<Vec<usize>>,
    },
    /// Anything else the engine reports.
    #[error("rank {rank}: {msg}")]
    Engine { rank: usize, msg: String },
}

pub type CommResult<T> = std::result::Result<T, CommError>;

/// The end of a timeout's message: who is at fault, as far as this rank can tell.
fn timeout_cause(peer: usize, silent: Option<&[usize]>) -> String {
    match silent {
        None => format!(" (rank {peer} may have died or hung)"),
        Some([]) => format!(
            "; every rank answered a roll call (rank {peer} is slow, or the ranks are out of step)"
        ),
        Some([one]) => format!("; rank {one} did not answer a roll call: it hung or died"),
        Some(many) => {
            let list: Vec<String> = many.iter().map(|r| r.to_string()).collect();
            format!(
                "; ranks {} did not answer a roll call: they hung or died",
                list.join(", ")
            )
        }
    }
}

/// After a collective timed out, which ranks are still there. A ring's rank that waits in vain
/// knows only the rank it receives from, which may itself be waiting on another; so every rank
/// that times out announces itself to all the others on a channel of its own, and the ranks it
/// does not hear from within a grace period are the ones at fault.
pub trait RollCall: Send {
    /// The other ranks not heard from within `grace`, in order.
    fn silent(&mut self, grace: Duration) -> Vec<usize>;
}

impl CommError {
    /// An exchange that brought `got` values where `want` were expected: the ranks are not
    /// running the same collectives.
    pub fn out_of_step(rank: usize, from: usize, got: usize, want: usize) -> Self {
        CommError::Engine {
            rank,
            msg: format!(
                "rank {from} sent {got} values where {want} were expected (the ranks are out of step)"
            ),
        }
    }
}

/// A group of `size` processes (or threads) that this one is rank `rank` of.
pub trait Communicator {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;

    /// Sends `send` to rank `to` while receiving `recv.len()` values from rank `from` (MPI's
    /// `Sendrecv`). Both ends of every exchange must be posted, so a ring of them cannot
    /// deadlock.
    fn exchange(
        &mut self,
        send: &[f32],
        to: usize,
        recv: &mut [f32],
        from: usize,
    ) -> CommResult<()>;

    /// Replaces `buf` on every rank by the sum of all ranks' `buf`, bit-identical on every rank
    /// and summed in an order fixed by the number of ranks.
    fn all_reduce_sum(&mut self, buf: &mut [f32]) -> CommResult<()> {
        ring_all_reduce(self, buf)
    }

    /// Replaces `buf` on every rank by rank `root`'s.
    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> CommResult<()> {
        sum_broadcast(self, buf, root)
    }

    /// Returns once every rank has called it.
    fn barrier(&mut self) -> CommResult<()> {
        let mut one = [1.0f32];
        self.all_reduce_sum(&mut one)
    }

    /// A roll call for this group ([`RollCall`]), made once at start on the thread that runs
    /// the collectives, and used from another while one of them is blocked; None where the
    /// engine cannot run one beside a blocked collective.
    fn roll_call(&mut self) -> Option<Box<dyn RollCall>> {
        None
    }
}

/// The chunk boundaries of a buffer of `len` values split over `n` ranks.
fn chunk(len: usize, n: usize, c: usize) -> std::ops::Range<usize> {
    let (base, extra) = (len / n, len % n);
    let start = c * base + c.min(extra);
    start..start + base + usize::from(c < extra)
}

/// Ring all-reduce: N − 1 steps of reduce-scatter (after which rank `r` holds the whole sum of
/// chunk `r + 1`), then N − 1 steps of all-gather. Each rank sends and receives 2 (N − 1) / N
/// of the buffer.
pub fn ring_all_reduce<C: Communicator + ?Sized>(comm: &mut C, buf: &mut [f32]) -> CommResult<()> {
    let (n, r) = (comm.size(), comm.rank());
    if n <= 1 || buf.is_empty() {
        return Ok(());
    }
    let (next, prev) = ((r + 1) % n, (r + n - 1) % n);
    let mut recv = vec![0.0f32; chunk(buf.len(), n, 0).len()];
    // reduce-scatter: at step s rank r sends chunk r − s and adds chunk r − s − 1 into its own
    for s in 0..n - 1 {
        let send_c = chunk(buf.len(), n, (r + n - s) % n);
        let recv_c = chunk(buf.len(), n, (r + 2 * n - s - 1) % n);
        let send: Vec<f32> = buf[send_c].to_vec();
        let got = &mut recv[..recv_c.len()];
        comm.exchange(&send, next, got, prev)?;
        // the running sum arrives from the ranks before; this rank's part is added last
        for (b, g) in buf[recv_c].iter_mut().zip(got.iter()) {
            *b += *g;
        }
    }
    // all-gather: at step s rank r sends chunk r + 1 − s and takes chunk r − s
    for s in 0..n - 1 {
        let send_c = chunk(buf.len(), n, (r + 1 + n - s) % n);
        let recv_c = chunk(buf.len(), n, (r + n - s) % n);
        let send: Vec<f32> = buf[send_c].to_vec();
        let got = &mut recv[..recv_c.len()];
        comm.exchange(&send, next, got, prev)?;
        buf[recv_c].copy_from_slice(got);
    }
    Ok(())
}

/// Broadcast as an all-reduce to which only `root` brings values (the others bring zeros):
/// `x + 0` is `x` exactly, so every rank ends with the root's bits (a −0 may come back as +0).
/// Twice the traffic of a pipeline, for an engine that has nothing better.
pub fn sum_broadcast<C: Communicator + ?Sized>(
    comm: &mut C,
    buf: &mut [f32],
    root: usize,
) -> CommResult<()> {
    if comm.rank() != root {
        buf.fill(0.0);
    }
    ring_all_reduce(comm, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_buffer_in_order() {
        for len in [0, 1, 5, 7, 64] {
            for n in 1..5 {
                let mut next = 0;
                for c in 0..n {
                    let r = chunk(len, n, c);
                    assert_eq!(r.start, next);
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }
}
