//! Layers, one file per family. Each holds its parameters as tensors named like PyTorch's.

pub mod activation;
pub mod conv;
pub mod linear;
pub mod misc;
pub mod norm;
pub mod pool;
pub mod recurrent;

pub use activation::{
    Hardsigmoid, Hardswish, LeakyReLU, LogSoftmax, PReLU, ReLU, ReLU6, Sigmoid, Softmax, Tanh,
};
pub use conv::{Conv2d, ConvTranspose2d};
pub use linear::Linear;
pub use misc::{Dropout, Embedding, Flatten, Identity, ReflectionPad2d, Upsample};
pub use norm::{BatchNorm, FrozenBatchNorm2d, InstanceNorm2d, LocalResponseNorm};
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, LPPool2d, MaxPool2d};
pub use recurrent::{
    onnx_gate_perm, reorder_blocks, Recurrent, RecurrentCell, RecurrentConfig, RecurrentState,
    ONNX_PEEPHOLE_PERM,
};
