// Pooling: max, average, stochastic and probability-weighted, forward and backward.
//
// x: (N, C, H, W) -> y: (N, C, OH, OW). The N*C planes are independent, so the kernels see
// P = N*C planes of H*W (input) and OH*OW (output) values. Output position (i, j) pools the
// window of rows i*sh - ph .. i*sh - ph + kh - 1 and columns j*sw - pw .. j*sw - pw + kw - 1;
// rows and columns outside the input are padding (-inf for max, 0 for average pooling), which
// can change neither a maximum nor a sum, so the kernels clip each window to the input.
// The caller (cnnlite/functional/pool.py) decides OH and OW, which is where ceil mode lives.
// cnnlite/reference/pool.py has the same computations as plain loops.
//
// Picked elements (max, stochastic) are remembered as a flat index h*W + w into their plane,
// an int: a plane never has 2^31 elements, and half the bytes of a long long are kept for backward.
//
// Every backward here is a gather: one thread per input element adds up what the outputs
// over it contribute (avg_pool2d_backward, probability_weighted_pool2d_backward, and
// max_pool2d_backward, which adds the gy of the outputs that picked its element). So every gx
// element is written by one thread, which adds in a fixed order: the gradients have the same
// bits on every run, where atomicAdd from many threads into one element would add in the
// order they happen to come, and round differently. And no kernel needs a floating-point
// atomicAdd, which for double exists only from sm_60: this file compiles for sm_50 (Maxwell).
#include "common.cuh"

// The rows [*start, *stop) of window i along an axis of `size`, clipped to the input.
__device__ __forceinline__ void input_window(long long i, long long stride, long long padding,
                                             long long kernel, long long size,
                                             long long* start, long long* stop) {
    const long long first = i * stride - padding;
    *start = larger(first, 0);
    *stop = smaller(first + kernel, size);
}

// The windows [*first, *last] along an axis that contain input row h (ph <= kernel/2 and
// h < size, so the padded end of a window never matters for a row of the input).
__device__ __forceinline__ void windows_containing(long long h, long long stride,
                                                   long long padding, long long kernel,
                                                   long long count, long long* first,
                                                   long long* last) {
    const long long shifted = h + padding;  // h in padded coordinates
    *first = shifted < kernel ? 0 : (shifted - kernel) / stride + 1;
    *last = smaller(shifted / stride, count - 1);
}

// --- max pooling ----------------------------------------------------------------------------

// y = the maximum of each window; argmax = where it is (h*W + w). The first maximum in
// row-major order wins a tie; a NaN wins over any number, the first NaN over later ones.
//
// Thread mapping: one thread per output element t in [0, P*OH*OW), plane p = t / (OH*OW),
// position (i, j) in that plane; the thread walks its window. Grid-stride loop over t.
template <typename T>
__global__ void max_pool2d_forward(const T* x, T* y, int* argmax, long long P,
                                   long long H, long long W, long long OH, long long OW,
                                   long long kh, long long kw, long long sh, long long sw,
                                   long long ph, long long pw) {
    for (long long t = first_index(); t < P * OH * OW; t += grid_stride()) {
        const long long p = t / (OH * OW), i = (t / OW) % OH, j = t % OW;
        long long h0, h1, w0, w1;
        input_window(i, sh, ph, kh, H, &h0, &h1);
        input_window(j, sw, pw, kw, W, &w0, &w1);
        const T* plane = x + p * H * W;
        T best = plane[h0 * W + w0];
        long long best_index = h0 * W + w0;
        for (long long h = h0; h < h1; ++h) {
            for (long long w = w0; w < w1; ++w) {
                const T value = plane[h * W + w];
                if (value > best || (value != value && best == best)) {
                    best = value;
                    best_index = h * W + w;
                }
            }
        }
        y[t] = best;
        argmax[t] = int(best_index);
    }
}

// gx[p, h, w] = the sum of gy[p, i, j] over the outputs (i, j) whose pick argmax[p, i, j] is
// h*W + w: each output's gradient goes to the element it picked. Also the backward of
// stochastic pooling and adaptive max pooling, which pick one element per window too.
//
// A gather, not a scatter (atomicAdd into gx at each pick), for two reasons: the additions
// into an element that several overlapping windows picked happen here in one fixed order, so
// the gradient has the same bits on every run; and a floating-point atomicAdd on a double
// exists only from sm_60, which would keep this whole file from compiling for older GPUs.
//
// The three poolings have different windows, and this kernel is given only the picks, so the
// launcher, having read argmax, tells each thread where to look: for input row h,
// rows_reaching[2h] and rows_reaching[2h + 1] are the first and the last output row i that
// picked anything on row h, in any plane and column (first > last where none did);
// columns_reaching the same for input column w. In max pooling these rows are among those
// whose windows contain row h, since a window picks inside itself. The launcher has also
// checked that every pick lies in its plane: a pick outside it would match no thread, and its
// gradient would vanish unnoticed.
//
// Thread mapping: one thread per input element t in [0, P*H*W), plane p = t / (H*W),
// position (h, w); it checks the outputs (i, j) in those ranges in row-major order and adds,
// in T, the gy of those that picked it: the order and type of the CPU kernel, so the gradient
// also has its bits. Every gx element is written once by one thread. Grid-stride loop over t.
template <typename T>
__global__ void max_pool2d_backward(const T* gy, const int* argmax,
                                    const long long* rows_reaching,
                                    const long long* columns_reaching, T* gx, long long P,
                                    long long H, long long W, long long OH, long long OW) {
    for (long long t = first_index(); t < P * H * W; t += grid_stride()) {
        const long long p = t / (H * W), h = (t / W) % H, w = t % W;
        const long long picked = h * W + w;
        T total = 0;
        for (long long i = rows_reaching[2 * h]; i <= rows_reaching[2 * h + 1]; ++i) {
            for (long long j = columns_reaching[2 * w]; j <= columns_reaching[2 * w + 1]; ++j) {
                const long long output = (p * OH + i) * OW + j;
                if (argmax[output] == picked) total += gy[output];
            }
        }
        gx[t] = total;
    }
}

// --- average pooling ------------------------------------------------------------------------

// The number of elements window (i, j)'s sum is divided by: the window as far as it lies on
// the padded input (count_include_pad), or only its elements inside the input.
__device__ long long avg_divisor(long long i, long long j, long long H, long long W,
                                 long long kh, long long kw, long long sh, long long sw,
                                 long long ph, long long pw, long long count_include_pad) {
    const long long r0 = i * sh - ph, s0 = j * sw - pw;
    if (count_include_pad) {
        const long long rows = smaller(r0 + kh, H + ph) - r0;
        const long long columns = smaller(s0 + kw, W + pw) - s0;
        return rows * columns;
    }
    const long long rows = smaller(r0 + kh, H) - larger(r0, 0);
    const long long columns = smaller(s0 + kw, W) - larger(s0, 0);
    return rows * columns;
}

// y = the sum of each window / its divisor.
//
// Thread mapping: one thread per output element t in [0, P*OH*OW), as in max pooling.
template <typename T>
__global__ void avg_pool2d_forward(const T* x, T* y, long long P, long long H, long long W,
                                   long long OH, long long OW, long long kh, long long kw,
                                   long long sh, long long sw, long long ph, long long pw,
                                   long long count_include_pad) {
    for (long long t = first_index(); t < P * OH * OW; t += grid_stride()) {
        const long long p = t / (OH * OW), i = (t / OW) % OH, j = t % OW;
        long long h0, h1, w0, w1;
        input_window(i, sh, ph, kh, H, &h0, &h1);
        input_window(j, sw, pw, kw, W, &w0, &w1);
        double total = 0;
        for (long long h = h0; h < h1; ++h)
            for (long long w = w0; w < w1; ++w) total += x[(p * H + h) * W + w];
        y[t] = T(total / avg_divisor(i, j, H, W, kh, kw, sh, sw, ph, pw, count_include_pad));
    }
}

// gx[p, h, w] = the sum, over the windows (i, j) that contain (h, w), of gy[p, i, j] / divisor.
//
// Thread mapping: one thread per input element t in [0, P*H*W), as a gather: it finds the
// windows that contain its element and adds their shares, so every gx element is written once
// by one thread (no atomics). Grid-stride loop over t.
template <typename T>
__global__ void avg_pool2d_backward(const T* gy, T* gx, long long P, long long H, long long W,
                                    long long OH, long long OW, long long kh, long long kw,
                                    long long sh, long long sw, long long ph, long long pw,
                                    long long count_include_pad) {
    for (long long t = first_index(); t < P * H * W; t += grid_stride()) {
        const long long p = t / (H * W), h = (t / W) % H, w = t % W;
        long long i0, i1, j0, j1;
        windows_containing(h, sh, ph, kh, OH, &i0, &i1);
        windows_containing(w, sw, pw, kw, OW, &j0, &j1);
        double total = 0;
        for (long long i = i0; i <= i1; ++i)
            for (long long j = j0; j <= j1; ++j)
                total += double(gy[(p * OH + i) * OW + j]) /
                         avg_divisor(i, j, H, W, kh, kw, sh, sw, ph, pw, count_include_pad);
        gx[t] = T(total);
    }
}

// --- stochastic pooling (no padding; windows clipped to the input) --------------------------

// Pick element k of each window with probability a_k / sum(a) by inverse-CDF sampling with
// the window's uniform number u: walk the window in row-major order and stop at the first
// element where the running sum exceeds u * sum(a). Zeros never move the running sum, so they
// are never picked, unless the whole window is zero: then its first element is the pick. If
// rounding leaves the running sum just below u * sum(a), the last nonzero element is the pick.
//
// Thread mapping: one thread per output element t in [0, P*OH*OW), walking its window twice
// (sum, then the running sum). Grid-stride loop over t.
template <typename T>
__global__ void stochastic_pool2d_sample(const T* x, const double* uniforms, T* y,
                                         int* chosen, long long P, long long H,
                                         long long W, long long OH, long long OW, long long kh,
                                         long long kw, long long sh, long long sw) {
    for (long long t = first_index(); t < P * OH * OW; t += grid_stride()) {
        const long long p = t / (OH * OW), i = (t / OW) % OH, j = t % OW;
        long long h0, h1, w0, w1;
        input_window(i, sh, 0, kh, H, &h0, &h1);
        input_window(j, sw, 0, kw, W, &w0, &w1);
        const T* plane = x + p * H * W;
        double total = 0;
        for (long long h = h0; h < h1; ++h)
            for (long long w = w0; w < w1; ++w) total += plane[h * W + w];
        const double threshold = uniforms[t] * total;
        long long pick = h0 * W + w0;
        double running = 0;
        bool found = false;
        for (long long h = h0; h < h1 && !found; ++h) {
            for (long long w = w0; w < w1 && !found; ++w) {
                const T value = plane[h * W + w];
                if (value > 0) {
                    pick = h * W + w;
                    running += value;
                    found = running > threshold;
                }
            }
        }
        y[t] = plane[pick];
        chosen[t] = int(pick);
    }
}

// The sums S1 = sum(a) and S2 = sum(a^2) of window (i, j) of plane p (no padding).
template <typename T>
__device__ void window_sums(const T* x, long long p, long long i, long long j, long long H,
                            long long W, long long kh, long long kw, long long sh, long long sw,
                            double* sum, double* sum_of_squares) {
    long long h0, h1, w0, w1;
    input_window(i, sh, 0, kh, H, &h0, &h1);
    input_window(j, sw, 0, kw, W, &w0, &w1);
    *sum = 0;
    *sum_of_squares = 0;
    for (long long h = h0; h < h1; ++h) {
        for (long long w = w0; w < w1; ++w) {
            const double value = x[(p * H + h) * W + w];
            *sum += value;
            *sum_of_squares += value * value;
        }
    }
}

// Probability-weighted pooling, the expected value of stochastic pooling (its test-time form):
// y = sum_k p_k a_k = S2 / S1, and y = 0 for an all-zero window.
//
// Thread mapping: one thread per output element t in [0, P*OH*OW). Grid-stride loop over t.
template <typename T>
__global__ void probability_weighted_pool2d_forward(const T* x, T* y, long long P, long long H,
                                                    long long W, long long OH, long long OW,
                                                    long long kh, long long kw, long long sh,
                                                    long long sw) {
    for (long long t = first_index(); t < P * OH * OW; t += grid_stride()) {
        const long long p = t / (OH * OW), i = (t / OW) % OH, j = t % OW;
        double sum, sum_of_squares;
        window_sums(x, p, i, j, H, W, kh, kw, sh, sw, &sum, &sum_of_squares);
        y[t] = T(sum > 0 ? sum_of_squares / sum : 0.0);
    }
}

// First half of the backward: per window, S1 and y = S2 / S1 (both 0 for an all-zero window),
// so that the gather below need not recompute them for every element of every window.
//
// Thread mapping: one thread per output element t in [0, P*OH*OW). Grid-stride loop over t.
template <typename T>
__global__ void probability_weighted_window_statistics(const T* x, double* sums, double* means,
                                                       long long P, long long H, long long W,
                                                       long long OH, long long OW, long long kh,
                                                       long long kw, long long sh,
                                                       long long sw) {
    for (long long t = first_index(); t < P * OH * OW; t += grid_stride()) {
        const long long p = t / (OH * OW), i = (t / OW) % OH, j = t % OW;
        double sum, sum_of_squares;
        window_sums(x, p, i, j, H, W, kh, kw, sh, sw, &sum, &sum_of_squares);
        sums[t] = sum;
        means[t] = sum > 0 ? sum_of_squares / sum : 0.0;
    }
}

// Second half: with dy/da_k = (2 a_k - y) / S1 for a window holding a_k,
// gx[p, h, w] = sum over the windows (i, j) containing (h, w) with S1 > 0 of
//               gy[p, i, j] * (2 x[p, h, w] - y[p, i, j]) / S1[p, i, j].
//
// Thread mapping: one thread per input element t in [0, P*H*W), as a gather over the windows
// that contain it (no atomics). Grid-stride loop over t.
template <typename T>
__global__ void probability_weighted_pool2d_backward(const T* gy, const T* x,
                                                     const double* sums, const double* means,
                                                     T* gx, long long P, long long H,
                                                     long long W, long long OH, long long OW,
                                                     long long kh, long long kw, long long sh,
                                                     long long sw) {
    for (long long t = first_index(); t < P * H * W; t += grid_stride()) {
        const long long p = t / (H * W), h = (t / W) % H, w = t % W;
        long long i0, i1, j0, j1;
        windows_containing(h, sh, 0, kh, OH, &i0, &i1);
        windows_containing(w, sw, 0, kw, OW, &j0, &j1);
        double total = 0;
        for (long long i = i0; i <= i1; ++i) {
            for (long long j = j0; j <= j1; ++j) {
                const long long window = (p * OH + i) * OW + j;
                if (sums[window] > 0)
                    total += gy[window] * (2.0 * x[t] - means[window]) / sums[window];
            }
        }
        gx[t] = T(total);
    }
}
