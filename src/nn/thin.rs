//! Hand-written products for thin layers (`min(n_in, n_out) ≤ THIN`): the first and
//! last layer of a field on low-dimensional data (`d = 2`), where a general GEMM runs
//! at a small fraction of its peak. All buffers are row-major; `W` is `n_out × n_in`.
//!
//! Dot products use eight explicit accumulators so that the compiler can vectorise
//! them without reassociating floating-point sums; the gradient loops are also compiled
//! for AVX2 and chosen at run time. The forward product, the one sampling and density
//! evaluation run, has intrinsic kernels on x86-64 (`thin_x86.rs`).

use crate::Real;

/// Layers with `min(n_in, n_out)` up to this use the kernels here.
pub(crate) const THIN: usize = 4;

const LANES: usize = 8;

#[inline(always)]
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let (ac, ar) = a.split_at(a.len() / LANES * LANES);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(LANES).zip(bc.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = T::zero();
    for (&x, &y) in ar.iter().zip(br) {
        s += x * y;
    }
    acc.iter().fold(s, |s, &v| s + v)
}

#[inline(always)]
fn axpy<T: Real>(alpha: T, x: &[T], y: &mut [T]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += alpha * xv;
    }
}

/// Transposes `W` (`n_out × n_in`) into `wt` (`n_in × n_out`).
#[inline(always)]
fn transpose<T: Real>(w: &[T], n_out: usize, n_in: usize, wt: &mut [T]) {
    for j in 0..n_out {
        for i in 0..n_in {
            wt[i * n_out + j] = w[j * n_in + i];
        }
    }
}

macro_rules! dispatch_avx2 {
    ($(#[$doc:meta])* fn $name:ident / $avx:ident / $imp:ident ( $($arg:ident : $ty:ty),* )) => {
        $(#[$doc])*
        pub(crate) fn $name<T: Real>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if crate::nn::has_avx2() {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                unsafe { $avx::<T>($($arg),*) };
                return;
            }
            $imp::<T>($($arg),*);
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx<T: Real>($($arg: $ty),*) {
            $imp::<T>($($arg),*);
        }
    };
}

/// `h = x Wᵀ` (`rows × n_out`), overwriting `h`: on the kernels of
/// [`thin_x86`](crate::nn::thin_x86) when the CPU has AVX2 and FMA (AVX-512F: the
/// 512-bit build), otherwise on the loops below.
pub(crate) fn forward<T: Real>(x: &[T], w: &[T], n_in: usize, n_out: usize, wt: &mut [T], h: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if crate::nn::has_avx2() {
        use crate::nn::gemm::{cast, cast_mut};
        use crate::nn::gemm_x86::{F32x16, F32x8, F64x4, F64x8};
        use crate::nn::thin_x86::forward as fwd;
        let wide = crate::nn::has_avx512();
        // SAFETY: the CPU has AVX2 and FMA, and AVX-512F when `wide` (checked above).
        let done = unsafe {
            if let (Some(x), Some(w), Some(wt), Some(h)) = (cast::<T, f32>(x), cast(w), cast_mut(wt), cast_mut(h)) {
                if wide {
                    fwd::<F32x16>(x, w, n_in, n_out, wt, h)
                } else {
                    fwd::<F32x8>(x, w, n_in, n_out, wt, h)
                }
            } else if let (Some(x), Some(w), Some(wt), Some(h)) =
                (cast::<T, f64>(x), cast(w), cast_mut(wt), cast_mut(h))
            {
                if wide {
                    fwd::<F64x8>(x, w, n_in, n_out, wt, h)
                } else {
                    fwd::<F64x4>(x, w, n_in, n_out, wt, h)
                }
            } else {
                false
            }
        };
        if done {
            return;
        }
    }
    forward_impl(x, w, n_in, n_out, wt, h);
}

#[inline(always)]
fn forward_impl<T: Real>(x: &[T], w: &[T], n_in: usize, n_out: usize, wt: &mut [T], h: &mut [T]) {
    if n_out <= THIN {
        for (hr, xr) in h.chunks_exact_mut(n_out).zip(x.chunks_exact(n_in)) {
            for (hv, wr) in hr.iter_mut().zip(w.chunks_exact(n_in)) {
                *hv = dot(xr, wr);
            }
        }
    } else {
        let wt = &mut wt[..n_in * n_out];
        transpose(w, n_out, n_in, wt);
        let (wt0, wt_rest) = wt.split_at(n_out);
        for (hr, xr) in h.chunks_exact_mut(n_out).zip(x.chunks_exact(n_in)) {
            // The first input's products overwrite `h`, the others add to them.
            let x0 = xr[0];
            for (hv, &wv) in hr.iter_mut().zip(wt0) {
                *hv = x0 * wv;
            }
            for (&xv, wtr) in xr[1..].iter().zip(wt_rest.chunks_exact(n_out)) {
                axpy(xv, wtr, hr);
            }
        }
    }
}

dispatch_avx2! {
    /// `gw += uᵀ x` (`n_out × n_in`) over all rows of `u` (`rows × n_out`) and `x`.
    fn weight_grad / weight_grad_avx2 / weight_grad_impl(
        u: &[T], x: &[T], n_in: usize, n_out: usize, scratch: &mut [T], gw: &mut [T]
    )
}

#[inline(always)]
fn weight_grad_impl<T: Real>(u: &[T], x: &[T], n_in: usize, n_out: usize, scratch: &mut [T], gw: &mut [T]) {
    if n_out <= THIN {
        for (ur, xr) in u.chunks_exact(n_out).zip(x.chunks_exact(n_in)) {
            for (&uv, gwr) in ur.iter().zip(gw.chunks_exact_mut(n_in)) {
                axpy(uv, xr, gwr);
            }
        }
    } else {
        // Accumulate the transpose (n_in × n_out) so the inner loop runs over n_out.
        let acc = &mut scratch[..n_in * n_out];
        acc.fill(T::zero());
        for (ur, xr) in u.chunks_exact(n_out).zip(x.chunks_exact(n_in)) {
            for (&xv, accr) in xr.iter().zip(acc.chunks_exact_mut(n_out)) {
                axpy(xv, ur, accr);
            }
        }
        for j in 0..n_out {
            for i in 0..n_in {
                gw[j * n_in + i] += acc[i * n_out + j];
            }
        }
    }
}

dispatch_avx2! {
    /// `gx = u W` (`rows × n_in`), overwriting `gx`.
    fn input_grad / input_grad_avx2 / input_grad_impl(
        u: &[T], w: &[T], n_in: usize, n_out: usize, wt: &mut [T], gx: &mut [T]
    )
}

#[inline(always)]
fn input_grad_impl<T: Real>(u: &[T], w: &[T], n_in: usize, n_out: usize, wt: &mut [T], gx: &mut [T]) {
    if n_out <= THIN {
        for (gr, ur) in gx.chunks_exact_mut(n_in).zip(u.chunks_exact(n_out)) {
            gr.fill(T::zero());
            for (&uv, wr) in ur.iter().zip(w.chunks_exact(n_in)) {
                axpy(uv, wr, gr);
            }
        }
    } else {
        let wt = &mut wt[..n_in * n_out];
        transpose(w, n_out, n_in, wt);
        for (gr, ur) in gx.chunks_exact_mut(n_in).zip(u.chunks_exact(n_out)) {
            for (gv, wtr) in gr.iter_mut().zip(wt.chunks_exact(n_out)) {
                *gv = dot(ur, wtr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The portable loops of `forward` (x86-64 runs `thin_x86`, tested there) against a
    /// plain triple loop in `f64`, for every narrow and wide width up to [`THIN`], with
    /// row lengths that leave a scalar tail, and for the general path.
    #[test]
    fn portable_forward_matches_plain_product() {
        let rows = 5;
        let mut shapes = vec![(6, 6)];
        for t in 1..=THIN {
            for wide in [64, 13, 8, 5] {
                shapes.push((wide, t));
                shapes.push((t, wide));
            }
        }
        for (n_in, n_out) in shapes {
            let x: Vec<f64> = (0..rows * n_in).map(|i| ((i * 37) % 23) as f64 / 7.0 - 1.5).collect();
            let w: Vec<f64> = (0..n_out * n_in).map(|i| ((i * 53) % 29) as f64 / 11.0 - 1.2).collect();
            let (mut wt, mut h) = (vec![f64::NAN; n_in * n_out], vec![f64::NAN; rows * n_out]);
            forward_impl(&x, &w, n_in, n_out, &mut wt, &mut h);
            for r in 0..rows {
                for j in 0..n_out {
                    let want: f64 = (0..n_in).map(|i| x[r * n_in + i] * w[j * n_in + i]).sum();
                    let got = h[r * n_out + j];
                    assert!(
                        (got - want).abs() <= 1e-13 * (1.0 + want.abs()),
                        "{n_in}→{n_out} [{r},{j}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
