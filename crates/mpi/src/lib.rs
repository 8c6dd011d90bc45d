//! The MPI engine of [`aics_nn::distributed`]: a [`Communicator`] over `MPI_COMM_WORLD`.
//!
//! Built only with the `mpi` feature (which needs Open MPI's development files and libclang);
//! without it, [`MpiComm::init`] says how to get it, so the default build needs no MPI.
//!
//! MPI is started with `MPI_THREAD_FUNNELED`: the thread that calls [`MpiComm::init`] is the
//! only one that may use it. [`aics_nn::distributed::DistributedDataParallel`] calls it on its
//! communication thread, which then runs every collective.

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
        use mpi::traits::Communicator as _;
        let engine = |msg: String| CommError::Engine { rank: 0, msg };
        let (universe, level) = mpi::initialize_with_threading(mpi::Threading::Funneled)
            .ok_or_else(|| engine("MPI was started already in this process".into()))?;
        if level < mpi::Threading::Funneled {
            return Err(engine(format!(
                "this MPI library offers threading level {level:?}; aics needs Funneled"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(MpiComm {
            world,
            _universe: universe,
            rank,
            size,
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
    fn barrier(&mut self) -> CommResult<()> {
        use mpi::collective::CommunicatorCollectives as _;
        self.world.barrier();
        Ok(())
    }
}
