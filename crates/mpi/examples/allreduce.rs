//! Times the ring all-reduce over MPI for buffers of 4 KB to 100 MB and checks its sums:
//! `mpirun -np 2 target/release/examples/allreduce` (built with `--features mpi`). Rank 0 prints
//! one JSON line per size: the median of the timed runs, the bytes each rank sent, and the
//! effective bandwidth. docs/distributed.md fits its scaling model to these numbers.

use std::time::Instant;

use aics_mpi::MpiComm;
use aics_nn::distributed::Communicator;

fn main() {
    let mut comm = match MpiComm::init() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let (rank, n) = (comm.rank(), comm.size());
    for bytes in [
        4usize << 10,
        64 << 10,
        1 << 20,
        4 << 20,
        25 << 20,
        100 << 20,
    ] {
        let len = bytes / 4;
        let fill = |buf: &mut Vec<f32>| {
            buf.iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = ((i % 1000) as f32) * 0.001 + rank as f32);
        };
        let mut buf = vec![0.0f32; len];
        let reps = (200 << 20) / bytes.max(1);
        let reps = reps.clamp(5, 200);
        let mut times = Vec::with_capacity(reps);
        for r in 0..reps + 2 {
            fill(&mut buf);
            if let Err(e) = comm.barrier() {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
            let t0 = Instant::now();
            if let Err(e) = comm.all_reduce_sum(&mut buf) {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
            if r >= 2 {
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        // every value is n·(i % 1000)·0.001 + 0 + 1 + … + (n − 1)
        let ranks: f32 = (0..n).map(|r| r as f32).sum();
        let bad = buf.iter().enumerate().find(|&(i, &v)| {
            let want = n as f32 * ((i % 1000) as f32) * 0.001 + ranks;
            (v - want).abs() > 1e-4 * want.abs().max(1.0)
        });
        if let Some((i, v)) = bad {
            eprintln!("error: rank {rank}: value {i} is {v} after the all-reduce");
            std::process::exit(1);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let sent = 2.0 * (n - 1) as f64 / n as f64 * bytes as f64;
        if rank == 0 {
            println!(
                "{{\"ranks\":{n},\"bytes\":{bytes},\"runs\":{},\"median_s\":{median:.6e},\"sent_bytes_per_rank\":{sent:.0},\"gb_per_s\":{:.3}}}",
                times.len(),
                sent / median / 1e9
            );
        }
    }
}
