// im2col and col2im: the copies that turn a convolution into one matrix product.
//
// The column layout is the one of cnnlite/reference/conv.py, where the loops are spelled out:
//
//   x:   (N, C, H, W)
//   col: (C*kh*kw, N*OH*OW),  row r = (c*kh + i)*kw + j,  column q = (n*OH + oh)*OW + ow
//   col[r, q] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw], or 0 where that is padding.
//
// (sh, sw) is the stride, (ph, pw) the zero padding, (dh, dw) the dilation. Groups need nothing
// here: the rows of one group are contiguous in col, and conv2d multiplies group by group.
#include "common.cuh"

// im2col: col[r, q] = x[n, c, h, w] (0 in the padding).
//
// Thread mapping: one thread per entry of col. Work item t is entry (r, q) with
// r = t / (N*OH*OW) and q = t % (N*OH*OW), so neighbouring threads write neighbouring columns
// of one row (coalesced stores) and read x with a step of sw. Grid-stride loop over
// t in [0, C*kh*kw * N*OH*OW).
template <typename T>
__global__ void im2col(const T* x, T* col, long long N, long long C, long long H, long long W,
                       long long kh, long long kw, long long sh, long long sw, long long ph,
                       long long pw, long long dh, long long dw, long long OH, long long OW) {
    const long long columns = N * OH * OW;
    const long long count = C * kh * kw * columns;
    for (long long t = first_index(); t < count; t += grid_stride()) {
        const long long r = t / columns, q = t % columns;
        const long long c = r / (kh * kw), i = (r / kw) % kh, j = r % kw;
        const long long n = q / (OH * OW), oh = (q / OW) % OH, ow = q % OW;
        const long long h = oh * sh - ph + i * dh;
        const long long w = ow * sw - pw + j * dw;
        const bool inside = 0 <= h && h < H && 0 <= w && w < W;
        col[t] = inside ? x[((n * C + c) * H + h) * W + w] : T(0);
    }
}

// col2im: x[n, c, h, w] = the sum of every col entry that im2col copied from x[n, c, h, w].
//
// Thread mapping: one thread per input pixel, as a gather. Work item t in [0, N*C*H*W) is
// pixel (n, c, h, w); its thread visits the kh*kw kernel offsets (i, j) and, for each, the one
// output position (oh, ow) whose window puts offset (i, j) on this pixel, if there is one:
// oh*sh - ph + i*dh = h, i.e. oh = (h + ph - i*dh) / sh when that divides evenly and lies in
// [0, OH). Each pixel is written by its own thread only, so no atomic adds are needed and the
// sum is in the same order on every run. Grid-stride loop over t.
template <typename T>
__global__ void col2im(const T* col, T* x, long long N, long long C, long long H, long long W,
                       long long kh, long long kw, long long sh, long long sw, long long ph,
                       long long pw, long long dh, long long dw, long long OH, long long OW) {
    const long long columns = N * OH * OW;
    const long long count = N * C * H * W;
    for (long long t = first_index(); t < count; t += grid_stride()) {
        const long long n = t / (C * H * W), c = (t / (H * W)) % C;
        const long long h = (t / W) % H, w = t % W;
        double total = 0;
        for (long long i = 0; i < kh; ++i) {
            const long long h_shifted = h + ph - i * dh;  // = oh * sh for the window that reads h
            if (h_shifted < 0 || h_shifted % sh != 0) continue;
            const long long oh = h_shifted / sh;
            if (oh >= OH) continue;
            for (long long j = 0; j < kw; ++j) {
                const long long w_shifted = w + pw - j * dw;
                if (w_shifted < 0 || w_shifted % sw != 0) continue;
                const long long ow = w_shifted / sw;
                if (ow >= OW) continue;
                const long long r = (c * kh + i) * kw + j;
                total += col[r * columns + (n * OH + oh) * OW + ow];
            }
        }
        x[t] = T(total);
    }
}
