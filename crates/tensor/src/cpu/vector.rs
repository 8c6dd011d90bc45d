//! One vector type's operations behind a trait, so that a kernel is written once and
//! instantiated for AVX-512 (`__m512`, 16 lanes) and AVX2 (`__m256`, 8 lanes) inside
//! `target_feature` functions. Every method is `#[inline(always)]`: it only compiles to the
//! right instructions inlined into such a function.
#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use crate::ops::conv::Activation;

/// Operations on one vector type, inlined into the `target_feature` kernels that use them.
pub(crate) trait Vector: Copy {
    const L: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(v: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// The first `n` (≤ L) lanes from `p`, zeros after.
    unsafe fn load_n(p: *const f32, n: usize) -> Self;
    unsafe fn store_n(self, p: *mut f32, n: usize);
    /// The even and the odd lanes of the 2L values `a` then `b`.
    unsafe fn deinterleave(a: Self, b: Self) -> (Self, Self);
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    /// `self` where `self > 0`, else `0` (NaN gives 0)
    unsafe fn relu(self) -> Self;
    /// `min(relu(self), c)`
    unsafe fn clip(self, c: Self) -> Self;
    /// `self` where `self > 0`, else `other`
    unsafe fn pos_or(self, other: Self) -> Self;
    /// Transpose the L × L matrix whose rows are `r` (`r.len()` must be L).
    unsafe fn transpose(r: &mut [Self]);
}

impl Vector for __m512 {
    const L: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        _mm512_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm512_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> Self {
        _mm512_maskz_loadu_ps(((1u32 << n) - 1) as __mmask16, p)
    }
    #[inline(always)]
    unsafe fn store_n(self, p: *mut f32, n: usize) {
        _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as __mmask16, self)
    }
    #[inline(always)]
    unsafe fn deinterleave(a: Self, b: Self) -> (Self, Self) {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        (
            _mm512_permutex2var_ps(a, even, b),
            _mm512_permutex2var_ps(a, odd, b),
        )
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        _mm512_add_ps(self, b)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        _mm512_mul_ps(self, b)
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        // max(a, b) is b when a is NaN
        _mm512_max_ps(self, _mm512_setzero_ps())
    }
    #[inline(always)]
    unsafe fn clip(self, c: Self) -> Self {
        _mm512_min_ps(self.relu(), c)
    }
    #[inline(always)]
    unsafe fn pos_or(self, other: Self) -> Self {
        let m = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(self, _mm512_setzero_ps());
        _mm512_mask_blend_ps(m, other, self)
    }

    #[inline(always)]
    unsafe fn transpose(r: &mut [Self]) {
        assert_eq!(r.len(), 16);
        // pairs of rows interleaved, then the 4×4 blocks of each 128-bit lane transposed
        let mut t = [_mm512_setzero_ps(); 16];
        for g in 0..4 {
            let i = 4 * g;
            let a = _mm512_unpacklo_ps(r[i], r[i + 1]);
            let b = _mm512_unpackhi_ps(r[i], r[i + 1]);
            let c = _mm512_unpacklo_ps(r[i + 2], r[i + 3]);
            let d = _mm512_unpackhi_ps(r[i + 2], r[i + 3]);
            // lane j of t[i + m] = column 4j + m of rows i..i+4
            t[i] = _mm512_shuffle_ps::<0x44>(a, c);
            t[i + 1] = _mm512_shuffle_ps::<0xEE>(a, c);
            t[i + 2] = _mm512_shuffle_ps::<0x44>(b, d);
            t[i + 3] = _mm512_shuffle_ps::<0xEE>(b, d);
        }
        // the 128-bit lanes moved into place: lanes 0 and 2 of rows 0..8, then 1 and 3
        let mut u = [_mm512_setzero_ps(); 16];
        for h in 0..2 {
            for m in 0..4 {
                let (a, b) = (t[8 * h + m], t[8 * h + 4 + m]);
                u[8 * h + m] = _mm512_shuffle_f32x4::<0x88>(a, b);
                u[8 * h + 4 + m] = _mm512_shuffle_f32x4::<0xDD>(a, b);
            }
        }
        for m in 0..8 {
            r[m] = _mm512_shuffle_f32x4::<0x88>(u[m], u[8 + m]);
            r[8 + m] = _mm512_shuffle_f32x4::<0xDD>(u[m], u[8 + m]);
        }
    }
}

impl Vector for __m256 {
    const L: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        _mm256_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm256_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> Self {
        _mm256_maskload_ps(p, mask256(n))
    }
    #[inline(always)]
    unsafe fn store_n(self, p: *mut f32, n: usize) {
        _mm256_maskstore_ps(p, mask256(n), self)
    }
    #[inline(always)]
    unsafe fn deinterleave(a: Self, b: Self) -> (Self, Self) {
        // within each 128-bit half, then the 64-bit quarters put in order
        let e = _mm256_shuffle_ps::<0x88>(a, b);
        let o = _mm256_shuffle_ps::<0xDD>(a, b);
        (
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(e))),
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(o))),
        )
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        _mm256_add_ps(self, b)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        _mm256_mul_ps(self, b)
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        _mm256_max_ps(self, _mm256_setzero_ps())
    }
    #[inline(always)]
    unsafe fn clip(self, c: Self) -> Self {
        _mm256_min_ps(self.relu(), c)
    }
    #[inline(always)]
    unsafe fn pos_or(self, other: Self) -> Self {
        let m = _mm256_cmp_ps::<_CMP_GT_OQ>(self, _mm256_setzero_ps());
        _mm256_blendv_ps(other, self, m)
    }

    #[inline(always)]
    unsafe fn transpose(r: &mut [Self]) {
        assert_eq!(r.len(), 8);
        let mut t = [_mm256_setzero_ps(); 8];
        for g in 0..2 {
            let i = 4 * g;
            let a = _mm256_unpacklo_ps(r[i], r[i + 1]);
            let b = _mm256_unpackhi_ps(r[i], r[i + 1]);
            let c = _mm256_unpacklo_ps(r[i + 2], r[i + 3]);
            let d = _mm256_unpackhi_ps(r[i + 2], r[i + 3]);
            t[i] = _mm256_shuffle_ps::<0x44>(a, c);
            t[i + 1] = _mm256_shuffle_ps::<0xEE>(a, c);
            t[i + 2] = _mm256_shuffle_ps::<0x44>(b, d);
            t[i + 3] = _mm256_shuffle_ps::<0xEE>(b, d);
        }
        for m in 0..4 {
            r[m] = _mm256_permute2f128_ps::<0x20>(t[m], t[4 + m]);
            r[4 + m] = _mm256_permute2f128_ps::<0x31>(t[m], t[4 + m]);
        }
    }
}

/// Lanes `0..n` set.
#[inline(always)]
pub(crate) unsafe fn mask256(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// An activation with its constants splatted once for a kernel's output pass.
#[derive(Clone, Copy)]
pub(crate) struct ActConsts<V> {
    act: Activation,
    six: V,
    slope: V,
}

impl<V: Vector> ActConsts<V> {
    #[inline(always)]
    pub(crate) unsafe fn new(act: Activation) -> Self {
        let slope = match act {
            Activation::LeakyRelu(s) => s as f32,
            _ => 0.0,
        };
        ActConsts {
            act,
            six: V::splat(6.0),
            slope: V::splat(slope),
        }
    }
}

/// One vector of the output pass: `act(v + bias + residual)` stored at `dst` (`n` lanes).
#[inline(always)]
pub(crate) unsafe fn finish<V: Vector>(
    v: V,
    bias: Option<f32>,
    a: &ActConsts<V>,
    dst: *mut f32,
    res: Option<*const f32>,
    n: usize,
) {
    let mut v = v;
    if let Some(b) = bias {
        v = v.add(V::splat(b));
    }
    if let Some(rp) = res {
        v = v.add(if n == V::L {
            V::load(rp)
        } else {
            V::load_n(rp, n)
        });
    }
    v = match a.act {
        Activation::Identity => v,
        Activation::Relu => v.relu(),
        Activation::Relu6 => v.clip(a.six),
        Activation::LeakyRelu(_) => v.pos_or(v.mul(a.slope)),
    };
    if n == V::L {
        v.store(dst)
    } else {
        v.store_n(dst, n)
    }
}
