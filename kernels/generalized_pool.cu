// Learned poolings (Lee, Gallagher and Tu 2016): gated max-average and tree pooling, forward
// and backward.
//
// x: (N, C, H, W) -> y: (N, C, OH, OW). As in pool.cu, the kernels see P = N*C independent
// planes. There is no padding: output position (i, j) pools rows i*sh .. min(i*sh + kh, H) - 1
// and columns j*sw .. min(j*sw + kw, W) - 1 (a ceil-mode last window is clipped by the edge).
// The masks gate, leaf1, leaf2 are (kh, kw) arrays shared by all planes; element (h, w) of
// window (i, j) is weighted by mask entry (h - i*sh, w - j*sw), and a clipped window uses the
// mask's top-left part. With z = gate . x_R and s = sigmoid(z):
//
//   gated  y = s max(x_R) + (1 - s) mean(x_R)          (argmax: where the max is, h*W + w)
//   tree   y = s (leaf1 . x_R) + (1 - s) (leaf2 . x_R)
//
// cnnlite/reference/generalized_pool.py has the same computations, and their derivatives, as
// plain loops.
//
// The backward of each op takes three launches (gated pooling one more, see 1.):
//   1. per window (one thread each): the coefficients that multiply each mask entry in dy/dx,
//      e.g. g s (1 - s) (m - a) for the gate of gated pooling, stored as rows of a
//      (rows, P*OH*OW) double array. Gated pooling also stores g s, the share of the window's
//      maximum, which the launcher hands to max_pool2d_backward of kernels/pool.cu: that
//      gathers, for each element, the shares of the windows whose argmax it is;
//   2. per input element (one thread each): gx, gathered from the windows that contain it;
//   3. per mask entry: dL/dmask[p, q] = sum over all windows of coefficient * x at (p, q) in
//      the window. Every window of every plane adds into the same kh*kw numbers, so this is a
//      reduction, done as batch_norm_grad_statistics does for its per-channel weight: blocks
//      sum their share in shared memory (block_sum), one partial sum per block, and the
//      launcher adds up the partials.
// So every gx element and every partial sum is written by one thread, which adds in a fixed
// order: the gradients have the same bits on every run. With atomicAdd, threads adding into
// one address would add in the order they happen to come and round differently each time (and
// tens of thousands of them adding into nine mask entries would wait on each other); and a
// floating-point atomicAdd on a double exists only from sm_60, so this file would not compile
// for sm_50 (Maxwell). The only atomicAdd left counts bad argmax values, on an unsigned long
// long, which every GPU has.
#include "common.cuh"

// [*start, *stop): the rows of window i along an axis of `size`, clipped to the input.
__device__ __forceinline__ void clipped_window(long long i, long long stride, long long kernel,
                                               long long size, long long* start,
                                               long long* stop) {
    *start = i * stride;
    *stop = smaller(i * stride + kernel, size);
}

// [*first, *last]: the windows along an axis (of `count`) whose rows include input row h.
// The windows start at multiples of the stride, so window i contains h when
// i*stride <= h < i*stride + kernel; h < size, so clipping never removes h from a window.
__device__ __forceinline__ void windows_over(long long h, long long stride, long long kernel,
                                             long long count, long long* first,
                                             long long* last) {
    *first = h < kernel ? 0 : (h - kernel) / stride + 1;
    *last = smaller(h / stride, count - 1);
}

// sigmoid(z) = 1 / (1 + e^-z), written as (1 + tanh(z/2)) / 2 as the reference loops do: no
// overflow of e^-z for a large negative z. In the kernel's type T.
template <typename T>
__device__ __forceinline__ T gate_of(double z) {
    return T(0.5) * (T(1) + tanh_of(T(0.5) * T(z)));
}

// --- gated max-average pooling --------------------------------------------------------------

// y = s max(x_R) + (1 - s) mean(x_R); argmax = where the maximum is (h*W + w). The first
// maximum in row-major order wins a tie; a NaN wins over any number, the first NaN over later
// ones (as in max_pool2d_forward).
//
// Thread mapping: one thread per output element t in [0, P*OH*OW), plane p = t / (OH*OW),
// position (i, j) in that plane; the thread walks its window once, gathering the gate's sum,
// the window's sum and its maximum. Grid-stride loop over t.
template <typename T>
__global__ void gated_max_ave_pool2d_forward(const T* x, const T* gate, T* y, int* argmax,
                                             long long P, long long H, long long W,
                                             long long OH, long long OW, long long kh,
                                             long long kw, long long sh, long long sw) {
    for (long long t = first_index(); t < P * OH * OW; t += grid_stride()) {
        const long long p = t / (OH * OW), i = (t / OW) % OH, j = t % OW;
        long long h0, h1, w0, w1;
        clipped_window(i, sh, kh, H, &h0, &h1);
        clipped_window(j, sw, kw, W, &w0, &w1);
        const T* plane = x + p * H * W;
        T best = plane[h0 * W + w0];
        long long best_index = h0 * W + w0;
        double z = 0, total = 0;
        for (long long h = h0; h < h1; ++h) {
            for (long long w = w0; w < w1; ++w) {
                const T value = plane[h * W + w];
                z += double(gate[(h - h0) * kw + (w - w0)]) * value;
                total += value;
                if (value > best || (value != value && best == best)) {
                    best = value;
                    best_index = h * W + w;
                }
            }
        }
        const T s = gate_of<T>(z);
        y[t] = T(s * best + (1 - s) * (total / ((h1 - h0) * (w1 - w0))));
        argmax[t] = int(best_index);
    }
}

// Backward, launch 1. With g = gy[t], m = x at argmax[t], a = mean(x_R), |R| = the window's
// number of elements, dy/dx[h, w] = s [at the max] + (1 - s) / |R| + s (1 - s) (m - a) gate[p, q]:
//
//   coefficients[0, t] = g s (1 - s) (m - a)    the gate's coefficient (row 0: the mask's)
//   coefficients[1, t] = g (1 - s) / |R|        every element's share of the mean
//   maxima[t]          = g s                    the maximum's share, in T
//
// The maximum's share goes to the element at argmax[t], which (from the caller) may lie
// anywhere in the plane, not only in the window: the launcher sends it there with
// max_pool2d_backward (kernels/pool.cu), a gather from the windows that picked each element.
// An argmax outside the plane would read outside x: it is skipped, its window's coefficients
// and share set to 0, and counted in *outside, which the launcher reads and reports.
//
// Thread mapping: one thread per window t in [0, P*OH*OW), walking its window once.
// Grid-stride loop over t.
template <typename T>
__global__ void gated_max_ave_window_coefficients(const T* gy, const T* x, const T* gate,
                                                  const int* argmax, double* coefficients,
                                                  T* maxima, unsigned long long* outside,
                                                  long long P, long long H, long long W,
                                                  long long OH, long long OW, long long kh,
                                                  long long kw, long long sh, long long sw) {
    const long long windows = P * OH * OW;
    for (long long t = first_index(); t < windows; t += grid_stride()) {
        const long long p = t / (OH * OW), i = (t / OW) % OH, j = t % OW;
        const long long where = argmax[t];
        if (where < 0 || where >= H * W) {
            coefficients[t] = coefficients[windows + t] = 0;
            maxima[t] = 0;
            atomicAdd(outside, 1ULL);
            continue;
        }
        long long h0, h1, w0, w1;
        clipped_window(i, sh, kh, H, &h0, &h1);
        clipped_window(j, sw, kw, W, &w0, &w1);
        const T* plane = x + p * H * W;
        double z = 0, total = 0;
        for (long long h = h0; h < h1; ++h) {
            for (long long w = w0; w < w1; ++w) {
                z += double(gate[(h - h0) * kw + (w - w0)]) * plane[h * W + w];
                total += plane[h * W + w];
            }
        }
        const double s = gate_of<T>(z), g = gy[t], area = double((h1 - h0) * (w1 - w0));
        coefficients[t] = g * s * (1 - s) * (plane[where] - total / area);
        coefficients[windows + t] = g * (1 - s) / area;
        maxima[t] = T(g * s);
    }
}

// Backward, launch 2: gx[p, h, w] += the sum, over the windows (i, j) containing (h, w), of
// coefficients[1] + coefficients[0] * gate[h - i*sh, w - j*sw] (gx holds the maxima's shares
// already, from max_pool2d_backward).
//
// Thread mapping: one thread per input element t in [0, P*H*W), as a gather over the windows
// that contain it: every gx element is read and written by one thread (no atomics).
// Grid-stride loop over t.
template <typename T>
__global__ void gated_max_ave_pool2d_backward(const T* gate, const double* coefficients, T* gx,
                                              long long P, long long H, long long W,
                                              long long OH, long long OW, long long kh,
                                              long long kw, long long sh, long long sw) {
    const long long windows = P * OH * OW;
    for (long long t = first_index(); t < P * H * W; t += grid_stride()) {
        const long long p = t / (H * W), h = (t / W) % H, w = t % W;
        long long i0, i1, j0, j1;
        windows_over(h, sh, kh, OH, &i0, &i1);
        windows_over(w, sw, kw, OW, &j0, &j1);
        double total = 0;
        for (long long i = i0; i <= i1; ++i) {
            for (long long j = j0; j <= j1; ++j) {
                const long long q = (p * OH + i) * OW + j;
                const double weight = gate[(h - i * sh) * kw + (w - j * sw)];
                total += coefficients[windows + q] + coefficients[q] * weight;
            }
        }
        gx[t] += T(total);
    }
}

// --- tree pooling ---------------------------------------------------------------------------

// y = s l + (1 - s) r with l = leaf1 . x_R, r = leaf2 . x_R, s = sigmoid(gate . x_R).
//
// Thread mapping: one thread per output element t in [0, P*OH*OW), walking its window once for
// all three masks. Grid-stride loop over t.
template <typename T>
__global__ void tree_pool2d_forward(const T* x, const T* leaf1, const T* leaf2, const T* gate,
                                    T* y, long long P, long long H, long long W, long long OH,
                                    long long OW, long long kh, long long kw, long long sh,
                                    long long sw) {
    for (long long t = first_index(); t < P * OH * OW; t += grid_stride()) {
        const long long p = t / (OH * OW), i = (t / OW) % OH, j = t % OW;
        long long h0, h1, w0, w1;
        clipped_window(i, sh, kh, H, &h0, &h1);
        clipped_window(j, sw, kw, W, &w0, &w1);
        double z = 0, left = 0, right = 0;
        for (long long h = h0; h < h1; ++h) {
            for (long long w = w0; w < w1; ++w) {
                const long long entry = (h - h0) * kw + (w - w0);
                const double value = x[(p * H + h) * W + w];
                z += gate[entry] * value;
                left += leaf1[entry] * value;
                right += leaf2[entry] * value;
            }
        }
        const double s = gate_of<T>(z);
        y[t] = T(s * left + (1 - s) * right);
    }
}

// Backward, launch 1. With g = gy[t], dy/dx[h, w] = s leaf1[p, q] + (1 - s) leaf2[p, q]
// + s (1 - s) (l - r) gate[p, q], one coefficient per mask, in the masks' order:
//
//   coefficients[0, t] = g s                    leaf1's
//   coefficients[1, t] = g (1 - s)              leaf2's
//   coefficients[2, t] = g s (1 - s) (l - r)    the gate's
//
// Thread mapping: one thread per window t in [0, P*OH*OW), walking its window once.
// Grid-stride loop over t.
template <typename T>
__global__ void tree_window_coefficients(const T* gy, const T* x, const T* leaf1,
                                         const T* leaf2, const T* gate, double* coefficients,
                                         long long P, long long H, long long W, long long OH,
                                         long long OW, long long kh, long long kw,
                                         long long sh, long long sw) {
    const long long windows = P * OH * OW;
    for (long long t = first_index(); t < windows; t += grid_stride()) {
        const long long p = t / (OH * OW), i = (t / OW) % OH, j = t % OW;
        long long h0, h1, w0, w1;
        clipped_window(i, sh, kh, H, &h0, &h1);
        clipped_window(j, sw, kw, W, &w0, &w1);
        double z = 0, left = 0, right = 0;
        for (long long h = h0; h < h1; ++h) {
            for (long long w = w0; w < w1; ++w) {
                const long long entry = (h - h0) * kw + (w - w0);
                const double value = x[(p * H + h) * W + w];
                z += gate[entry] * value;
                left += leaf1[entry] * value;
                right += leaf2[entry] * value;
            }
        }
        const double s = gate_of<T>(z), g = gy[t];
        coefficients[t] = g * s;
        coefficients[windows + t] = g * (1 - s);
        coefficients[2 * windows + t] = g * s * (1 - s) * (left - right);
    }
}

// Backward, launch 2: gx[p, h, w] = the sum, over the windows (i, j) containing (h, w), of
// the three coefficients times their masks' entries at (h - i*sh, w - j*sw).
//
// Thread mapping: one thread per input element t in [0, P*H*W), as a gather over the windows
// that contain it (no atomics). Grid-stride loop over t.
template <typename T>
__global__ void tree_pool2d_backward(const T* leaf1, const T* leaf2, const T* gate,
                                     const double* coefficients, T* gx, long long P,
                                     long long H, long long W, long long OH, long long OW,
                                     long long kh, long long kw, long long sh, long long sw) {
    const long long windows = P * OH * OW;
    for (long long t = first_index(); t < P * H * W; t += grid_stride()) {
        const long long p = t / (H * W), h = (t / W) % H, w = t % W;
        long long i0, i1, j0, j1;
        windows_over(h, sh, kh, OH, &i0, &i1);
        windows_over(w, sw, kw, OW, &j0, &j1);
        double total = 0;
        for (long long i = i0; i <= i1; ++i) {
            for (long long j = j0; j <= j1; ++j) {
                const long long q = (p * OH + i) * OW + j;
                const long long entry = (h - i * sh) * kw + (w - j * sw);
                total += coefficients[q] * leaf1[entry] +
                         coefficients[windows + q] * leaf2[entry] +
                         coefficients[2 * windows + q] * gate[entry];
            }
        }
        gx[t] = T(total);
    }
}

// --- the masks' gradients, for both poolings ------------------------------------------------

// Backward, launch 3: dL/dmask_m[u, v] = the sum over all windows t whose (clipped) window
// has an element at (u, v) of coefficients[m, t] * x[p, i*sh + u, j*sw + v], for the masks
// m = 0 .. masks - 1 (rows 0 .. masks - 1 of launch 1's coefficients).
//
// The windows are split into `chunks` interleaved shares (chunk k: the windows t with
// t % chunks == k), so that a large input gives many blocks, and a small one few.
// partials[k, m, u, v] is chunk k's sum; the launcher adds the chunks up.
//
// Thread mapping: block b handles the sums b, b + gridDim.x, ... of the chunks * masks * kh*kw
// sums (grid-stride over sums); within it, thread k handles the windows
// chunk + chunks * (k + blockDim.x * r), r = 0, 1, ..., of its chunk, then block_sum adds the
// threads' partial sums. Every thread of a block runs the same number of block_sums.
template <typename T>
__global__ void window_mask_gradients(const T* x, const double* coefficients, double* partials,
                                      long long masks, long long chunks, long long P,
                                      long long H, long long W, long long OH, long long OW,
                                      long long kh, long long kw, long long sh, long long sw) {
    const long long windows = P * OH * OW, per_chunk = masks * kh * kw;
    for (long long b = blockIdx.x; b < chunks * per_chunk; b += gridDim.x) {
        const long long chunk = b / per_chunk, m = (b / (kh * kw)) % masks;
        const long long u = (b / kw) % kh, v = b % kw;
        double sum = 0;
        for (long long t = chunk + chunks * threadIdx.x; t < windows;
             t += chunks * blockDim.x) {
            const long long p = t / (OH * OW), h = ((t / OW) % OH) * sh + u,
                            w = (t % OW) * sw + v;
            if (h < H && w < W) sum += coefficients[m * windows + t] * x[(p * H + h) * W + w];
        }
        sum = block_sum(sum);
        if (threadIdx.x == 0) partials[b] = sum;
    }
}
