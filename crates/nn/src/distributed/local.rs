//! Ranks as threads of one process, joined by channels: the engine the tests use, and a way to
//! try data-parallel code without MPI.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::{CommError, CommResult, Communicator, RollCall};

/// Makes the members of an in-process group.
pub struct ThreadGroup;

impl ThreadGroup {
    /// `size` communicators, rank `r` at index `r`, to be moved each to its own thread. A
    /// member that is dropped has left the group: its peers' next exchange with it fails.
    pub fn members(size: usize) -> Vec<ThreadComm> {
        let size = size.max(1);
        // channel (from, to) carries what `from` sends to `to`
        let mut senders: Vec<Vec<Option<Sender<Vec<f32>>>>> = (0..size)
            .map(|_| (0..size).map(|_| None).collect())
            .collect();
        let mut receivers: Vec<Vec<Option<Receiver<Vec<f32>>>>> = (0..size)
            .map(|_| (0..size).map(|_| None).collect())
            .collect();
        for from in 0..size {
            for to in 0..size {
                let (tx, rx) = channel();
                senders[from][to] = Some(tx);
                receivers[to][from] = Some(rx);
            }
        }
        // the roll call's own channels: each member hears the others on one
        let (call_tx, call_rx): (Vec<_>, Vec<_>) = (0..size).map(|_| channel::<usize>()).unzip();
        senders
            .into_iter()
            .zip(receivers)
            .zip(call_rx)
            .enumerate()
            .map(|(rank, ((tx, rx), heard))| ThreadComm {
                rank,
                size,
                tx: tx.into_iter().flatten().collect(),
                rx: rx.into_iter().flatten().collect(),
                timeout: None,
                roll_call: Some(ThreadRollCall {
                    rank,
                    others: call_tx.clone(),
                    heard,
                }),
            })
            .collect()
    }
}

/// One member of a [`ThreadGroup`].
pub struct ThreadComm {
    rank: usize,
    size: usize,
    tx: Vec<Sender<Vec<f32>>>,
    rx: Vec<Receiver<Vec<f32>>>,
    timeout: Option<Duration>,
    roll_call: Option<ThreadRollCall>,
}

/// A [`ThreadComm`]'s [`RollCall`].
struct ThreadRollCall {
    rank: usize,
    others: Vec<Sender<usize>>,
    heard: Receiver<usize>,
}

impl RollCall for ThreadRollCall {
    fn silent(&mut self, grace: Duration) -> Vec<usize> {
        for (r, tx) in self.others.iter().enumerate() {
            if r != self.rank {
                // a member that has left cannot answer either: its silence says so
                let _ = tx.send(self.rank);
            }
        }
        let mut heard = vec![false; self.others.len()];
        heard[self.rank] = true;
        let end = Instant::now() + grace;
        while heard.iter().any(|h| !h) {
            let left = end.saturating_duration_since(Instant::now());
            match self.heard.recv_timeout(left) {
                Ok(r) if r < heard.len() => heard[r] = true,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        (0..heard.len()).filter(|&r| !heard[r]).collect()
    }
}

impl ThreadComm {
    /// Gives up on a peer that sends nothing for `timeout` (by default it waits for ever).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl Communicator for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn exchange(
        &mut self,
        send: &[f32],
        to: usize,
        recv: &mut [f32],
        from: usize,
    ) -> CommResult<()> {
        let (rank, size) = (self.rank, self.size);
        if to >= size || from >= size {
            return Err(CommError::Engine {
                rank,
                msg: format!("exchange with rank {to}/{from} in a group of {size}"),
            });
        }
        let lost = |peer| CommError::PeerLost {
            rank,
            peer,
            op: "an exchange".into(),
        };
        self.tx[to].send(send.to_vec()).map_err(|_| lost(to))?;
        let got = match self.timeout {
            Some(t) => self.rx[from].recv_timeout(t).map_err(|e| match e {
                RecvTimeoutError::Timeout => CommError::Timeout {
                    rank,
                    peer: from,
                    seconds: t.as_secs_f64(),
                    op: "an exchange".into(),
                    silent: None,
                },
                RecvTimeoutError::Disconnected => lost(from),
            })?,
            None => self.rx[from].recv().map_err(|_| lost(from))?,
        };
        if got.len() != recv.len() {
            return Err(CommError::out_of_step(rank, from, got.len(), recv.len()));
        }
        recv.copy_from_slice(&got);
        Ok(())
    }

    fn roll_call(&mut self) -> Option<Box<dyn RollCall>> {
        self.roll_call
            .take()
            .map(|r| Box::new(r) as Box<dyn RollCall>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on every member of a group of `n`, each on its own thread.
    fn on_group<R: Send + 'static>(
        n: usize,
        f: impl Fn(ThreadComm) -> R + Send + Sync + Clone + 'static,
    ) -> Vec<R> {
        let handles: Vec<_> = ThreadGroup::members(n)
            .into_iter()
            .map(|c| {
                let f = f.clone();
                std::thread::spawn(move || f(c))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    /// The ring sum equals the sum done in the ring's own order in f64-free f32 arithmetic,
    /// bit for bit on every rank, for buffers shorter and longer than the group.
    #[test]
    fn all_reduce_sums_and_every_rank_gets_the_same_bits() {
        for n in 1..=4 {
            for len in [1usize, 3, 10, 1001] {
                let value =
                    |r: usize, i: usize| ((r * 7919 + i * 104729) % 1000) as f32 * 0.1 - 37.3;
                let out = on_group(n, move |mut c| {
                    let r = c.rank();
                    let mut buf: Vec<f32> = (0..len).map(|i| value(r, i)).collect();
                    c.all_reduce_sum(&mut buf).unwrap();
                    buf
                });
                for o in &out[1..] {
                    let same = o
                        .iter()
                        .zip(&out[0])
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "n {n} len {len}: ranks differ");
                }
                for (i, &got) in out[0].iter().enumerate() {
                    let want: f64 = (0..n).map(|r| value(r, i) as f64).sum();
                    assert!(
                        (got as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "n {n} len {len} [{i}]: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn broadcast_gives_every_rank_the_roots_values() {
        for root in 0..3 {
            let out = on_group(3, move |mut c| {
                let mut buf = vec![c.rank() as f32 + 0.5; 5];
                c.broadcast(&mut buf, root).unwrap();
                c.barrier().unwrap();
                buf
            });
            for o in out {
                assert_eq!(o, vec![root as f32 + 0.5; 5]);
            }
        }
    }

    /// A member that leaves makes its peers' collective fail naming it, and one that stays
    /// silent makes them time out naming it; neither hangs.
    #[test]
    fn a_lost_or_silent_peer_is_named() {
        let mut group = ThreadGroup::members(2);
        let gone = group.pop().unwrap();
        drop(gone);
        let mut c = group.pop().unwrap();
        let err = c.all_reduce_sum(&mut [1.0, 2.0]).unwrap_err();
        assert!(
            matches!(
                err,
                CommError::PeerLost {
                    rank: 0,
                    peer: 1,
                    ..
                }
            ),
            "{err}"
        );

        let mut group = ThreadGroup::members(2);
        let _silent = group.pop().unwrap();
        let mut c = group.pop().unwrap().with_timeout(Duration::from_millis(50));
        let err = c.all_reduce_sum(&mut [1.0, 2.0]).unwrap_err();
        assert!(
            matches!(
                err,
                CommError::Timeout {
                    rank: 0,
                    peer: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("rank 1"), "{err}");
    }
}
