//! aics-nn: the `Module` trait, layers named like PyTorch's, losses, initialisation, optimizers
//! with schedules, and atomic safetensors checkpoints.

// lets `#[derive(Module)]`'s `::aics_nn::` paths resolve inside this crate too
extern crate self as aics_nn;

pub mod checkpoint;
pub mod distributed;
pub mod error;
pub mod fuse;
pub mod init;
pub mod inspect;
pub mod layers;
pub mod loss;
pub mod module;
pub mod optim;

pub use error::{NnError, Result};
pub use inspect::SummaryRow;
pub use layers::*;
pub use module::{
    load_state_dict, num_params, parameters, state_dict, Concat, Fields, Kind, Module, Sequential,
};
pub use optim::{clip_grad_norm, Adam, Lbfgs, LrSchedule, Optimizer, RmsProp, Sgd};

/// The README's library example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExample;
