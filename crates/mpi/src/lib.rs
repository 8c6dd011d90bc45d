//! The MPI engine of [`aics_nn::distributed`]: a [`Communicator`] over `MPI_COMM_WORLD`.
//!
//! Built only with the `mpi` feature (which needs Open MPI's development files and libclang);
//! without it, [`MpiComm::init`] says how to get it, so the default build needs no MPI.
//!
//! [`aics_nn::distributed::DistributedDataParallel`] calls [`MpiComm::init`] on its
//! communication thread, which then runs every collective. MPI is asked for
//! `MPI_THREAD_MULTIPLE`, so that after a collective timed out another thread can hold a roll
//! call ([`RollCall`]) on a communicator of its own while the collective is still blocked; where
//! the library offers only `MPI_THREAD_FUNNELED`, training runs as well, and a timeout names the
//! rank this one receives from on the ring instead.

#[cfg(feature = "mpi")]
use std::time::Duration;

#[cfg(feature = "mpi")]
use aics_nn::distributed::RollCall;
use aics_nn::distributed::{CommError, CommResult, Communicator};

/// Whether this build has the MPI engine.
pub const AVAILABLE: bool = cfg!(feature = "mpi");

/// `MPI_COMM_WORLD` of this process.
pub struct MpiComm {
    #[cfg(feature = "mpi")]
    world: mpi::topology::SimpleCommunicator,
    // dropped last: finalizes MPI
    #[cfg(feature = "mpi")]
    _universe: mpi::environment::Universe,
    rank: usize,
    size: usize,
    #[cfg(feature = "mpi")]
    roll_call: Option<MpiRollCall>,
}

/// A roll call over a duplicate of `MPI_COMM_WORLD`: this rank's number sent to every other
/// rank, and theirs awaited until the grace period ends.
#[cfg(feature = "mpi")]
struct MpiRollCall {
    comm: mpi::ffi::MPI_Comm,
    rank: usize,
    size: usize,
}

// SAFETY: one is made only when MPI runs at MPI_THREAD_MULTIPLE, under which any thread may call
// MPI, and its communicator is its own duplicate, which nothing else uses.
#[cfg(feature = "mpi")]
unsafe impl Send for MpiRollCall {}

#[cfg(feature = "mpi")]
impl RollCall for MpiRollCall {
    fn silent(&mut self, grace: Duration) -> Vec<usize> {
        use mpi::ffi;
        const TAG: i32 = 0x0a1c;
        let end = std::time::Instant::now() + grace;
        // MPI holds the buffers until the requests end, and those of a hung rank never do:
        // they are leaked (a process stops after its roll call)
        let me: &'static i32 = Box::leak(Box::new(self.rank as i32));
        let got: &'static mut [i32] = Box::leak(vec![-1; self.size].into_boxed_slice());
        let at = got.as_mut_ptr();
        let mut pending = Vec::new();
        for r in (0..self.size).filter(|&r| r != self.rank) {
            // SAFETY: MPI is initialized at MPI_THREAD_MULTIPLE and `comm` is valid; the
            // buffers live for ever; the send's request is freed at once (it completes in the
            // background), the receive's is tested below.
            unsafe {
                let mut send = ffi::RSMPI_REQUEST_NULL;
                let me_ptr: *const i32 = me;
                ffi::MPI_Isend(
                    me_ptr.cast(),
                    1,
                    ffi::RSMPI_INT32_T,
                    r as i32,
                    TAG,
                    self.comm,
                    &mut send,
                );
                ffi::MPI_Request_free(&mut send);
                let mut recv = ffi::RSMPI_REQUEST_NULL;
                ffi::MPI_Irecv(
                    at.add(r).cast(),
                    1,
                    ffi::RSMPI_INT32_T,
                    r as i32,
                    TAG,
                    self.comm,
                    &mut recv,
                );
                pending.push((r, recv));
            }
        }
        loop {
            pending.retain_mut(|(_, req)| {
                let mut done = 0;
                // SAFETY: a live request of this roll call, tested from this thread alone.
                unsafe { ffi::MPI_Test(req, &mut done, ffi::RSMPI_STATUS_IGNORE) };
                done == 0
            });
            if pending.is_empty() || std::time::Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        pending.into_iter().map(|(r, _)| r).collect()
    }
}

/// Whether this process was started by `mpirun` (Open MPI, MPICH or a PMI launcher), so that a
/// caller can tell a group of one started by hand from a rank of a larger group.
pub fn launched_by_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

impl MpiComm {
    /// Starts MPI (once per process) and returns the world communicator.
    #[cfg(feature = "mpi")]
    pub fn init() -> CommResult<Self> {
        use mpi::raw::AsRaw as _;
        use mpi::traits::Communicator as _;
        let engine = |msg: String| CommError::Engine { rank: 0, msg };
        let (universe, level) = mpi::initialize_with_threading(mpi::Threading::Multiple)
            .ok_or_else(|| engine("MPI was started already in this process".into()))?;
        if level < mpi::Threading::Funneled {
            return Err(engine(format!(
                "this MPI library offers threading level {level:?}; aics needs Funneled"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let roll_call = (level == mpi::Threading::Multiple).then(|| {
            // SAFETY: a collective call on every rank, as `init` is; the duplicate is the
            // roll call's alone and is never freed (it lives as long as MPI does).
            let mut comm = unsafe { mpi::ffi::RSMPI_COMM_NULL };
            unsafe { mpi::ffi::MPI_Comm_dup(world.as_raw(), &mut comm) };
            MpiRollCall { comm, rank, size }
        });
        Ok(MpiComm {
            world,
            _universe: universe,
            rank,
            size,
            roll_call,
        })
    }

    /// Without the `mpi` feature: an error that says how to build with it.
    #[cfg(not(feature = "mpi"))]
    pub fn init() -> CommResult<Self> {
        Err(CommError::Engine {
            rank: 0,
            msg: "this aics was built without MPI; install Open MPI (apt-get install libopenmpi-dev openmpi-bin libclang-dev) and build with `cargo build --release -p aics-cli --features mpi`".into(),
        })
    }
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    #[cfg(feature = "mpi")]
    fn exchange(
        &mut self,
        send: &[f32],
        to: usize,
        recv: &mut [f32],
        from: usize,
    ) -> CommResult<()> {
        use mpi::traits::Communicator as _;
        let (dest, source) = (
            self.world.process_at_rank(to as i32),
            self.world.process_at_rank(from as i32),
        );
        let status = mpi::point_to_point::send_receive_into(send, &dest, recv, &source);
        let got = status.count(<f32 as mpi::traits::Equivalence>::equivalent_datatype()) as usize;
        if got != recv.len() {
            return Err(CommError::out_of_step(self.rank, from, got, recv.len()));
        }
        Ok(())
    }

    #[cfg(not(feature = "mpi"))]
    fn exchange(&mut self, _: &[f32], _: usize, _: &mut [f32], _: usize) -> CommResult<()> {
        // no MpiComm can be made without the feature; this answers as `init` does
        Err(CommError::Engine {
            rank: self.rank,
            msg: "this aics was built without MPI".into(),
        })
    }

    /// MPI's own broadcast: no arithmetic, so nothing to keep in order.
    #[cfg(feature = "mpi")]
    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> CommResult<()> {
        use mpi::traits::{Communicator as _, Root as _};
        self.world.process_at_rank(root as i32).broadcast_into(buf);
        Ok(())
    }

    #[cfg(feature = "mpi")]
    fn roll_call(&mut self) -> Option<Box<dyn RollCall>> {
        self.roll_call
            .take()
            .map(|r| Box::new(r) as Box<dyn RollCall>)
    }

    #[cfg(feature = "mpi")]
    fn barrier(&mut self) -> CommResult<()> {
        use mpi::collective::CommunicatorCollectives as _;
        self.world.barrier();
        Ok(())
    }
}
