//! aics-nn
