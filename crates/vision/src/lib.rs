//! aics-vision
