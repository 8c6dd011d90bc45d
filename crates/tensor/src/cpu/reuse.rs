//! Buffers that ops give back when the data they kept across a call is let go of (the im2col
//! columns a training forward keeps for the weight gradient, dropped after the backward pass),
//! for the next call to take instead of allocating and zero-filling as much again: a training
//! step unfolds the same shapes every step. The pool is bounded in buffers and bytes; what it
//! hands out holds stale values, always initialised, for the caller to overwrite.

use std::any::Any;
use std::sync::Mutex;

use crate::dtype::Float;

/// At most this many buffers are held.
const MAX_BUFFERS: usize = 64;
/// At most this many bytes are held, all buffers together.
const MAX_BYTES: usize = 256 << 20;

struct Pool {
    bufs: Vec<(usize, Box<dyn Any + Send>)>,
    bytes: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    bufs: Vec::new(),
    bytes: 0,
});

/// A vector of `n` elements: the smallest given-back one of this type that holds as many (its
/// old values kept, cut to length), or zeros.
pub(crate) fn take<T: Float>(n: usize) -> Vec<T> {
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let mut best: Option<(usize, usize)> = None;
    for (i, (_, b)) in pool.bufs.iter().enumerate() {
        if let Some(v) = b.downcast_ref::<Vec<T>>() {
            if v.len() >= n && best.is_none_or(|(_, len)| v.len() < len) {
                best = Some((i, v.len()));
            }
        }
    }
    if let Some((i, _)) = best {
        let (bytes, b) = pool.bufs.swap_remove(i);
        pool.bytes -= bytes;
        drop(pool);
        if let Ok(v) = b.downcast::<Vec<T>>() {
            let mut v = *v;
            v.truncate(n);
            return v;
        }
    } else {
        drop(pool);
    }
    vec![T::zero(); n]
}

/// Give `v` back for a later [`take`] (dropped instead when the pool is full).
pub(crate) fn give<T: Float>(v: Vec<T>) {
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if v.is_empty() {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    if pool.bufs.len() < MAX_BUFFERS && pool.bytes + bytes <= MAX_BYTES {
        pool.bytes += bytes;
        pool.bufs.push((bytes, Box::new(v)));
    }
}

#[cfg(test)]
mod tests {
    /// A buffer given back is taken again (the smallest that fits, cut to length); a request
    /// nothing fits gets zeros.
    #[test]
    fn buffers_come_back_cut_to_length() {
        // (a length no other test gives back)
        super::give(vec![7.0f64; 1_000_003]);
        super::give(vec![5.0f64; 1_000_009]);
        let v = super::take::<f64>(1_000_001);
        assert_eq!(v.len(), 1_000_001);
        assert!(v.iter().all(|&x| x == 7.0), "the smaller buffer that fits");
        let w = super::take::<f64>(1_000_005);
        assert!(w.len() == 1_000_005 && w.iter().all(|&x| x == 5.0));
        let z = super::take::<f64>(3_000_000);
        assert!(z.len() == 3_000_000 && z.iter().all(|&x| x == 0.0));
    }
}
