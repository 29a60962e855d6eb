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
//
// Both kernels are templates over the type Index of their index arithmetic as well as over T.
// Turning a work item into (r, q) or (n, c, h, w) takes up to ten divisions and remainders per
// item; a 32-bit one is a few instructions on the GPU, a 64-bit one a call to a software
// routine of 60 to 90 (benchmarks/results_gpu_compile.md). So the launcher
// (cnnlite/cuda/conv.py, index_type) picks Index = int whenever every size, index and
// intermediate value of the call fits in 32 bits (VGG-16's largest column matrix does up to a
// batch of 74), and long long, the convention of common.cuh, otherwise. The grid-stride
// counter t stays long long: near the top of the int range, t + grid_stride() would overflow.
#include "common.cuh"

// im2col: col[r, q] = x[n, c, h, w] (0 in the padding).
//
// Thread mapping: one thread per entry of col. Work item t is entry (r, q) with
// r = t / (N*OH*OW) and q = t % (N*OH*OW), so neighbouring threads write neighbouring columns
// of one row (coalesced stores) and read x with a step of sw. Grid-stride loop over
// t in [0, C*kh*kw * N*OH*OW). x is read only inside the image: x may be empty (H = 0 with
// padding), when every entry of col is padding.
template <typename T, typename Index>
__global__ void im2col(const T* x, T* col, Index N, Index C, Index H, Index W, Index kh,
                       Index kw, Index sh, Index sw, Index ph, Index pw, Index dh, Index dw,
                       Index OH, Index OW) {
    const Index columns = N * OH * OW;
    const Index count = C * kh * kw * columns;
    for (long long t = first_index(); t < count; t += grid_stride()) {
        const Index item = Index(t);  // exact: t < count
        const Index r = item / columns, q = item % columns;
        const Index c = r / (kh * kw), i = (r / kw) % kh, j = r % kw;
        const Index n = q / (OH * OW), oh = (q / OW) % OH, ow = q % OW;
        const Index h = oh * sh - ph + i * dh;
        const Index w = ow * sw - pw + j * dw;
        const bool inside = 0 <= h && h < H && 0 <= w && w < W;
        col[item] = inside ? x[((n * C + c) * H + h) * W + w] : T(0);
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
template <typename T, typename Index>
__global__ void col2im(const T* col, T* x, Index N, Index C, Index H, Index W, Index kh,
                       Index kw, Index sh, Index sw, Index ph, Index pw, Index dh, Index dw,
                       Index OH, Index OW) {
    const Index columns = N * OH * OW;
    const Index count = N * C * H * W;
    for (long long t = first_index(); t < count; t += grid_stride()) {
        const Index item = Index(t);  // exact: t < count
        const Index n = item / (C * H * W), c = (item / (H * W)) % C;
        const Index h = (item / W) % H, w = item % W;
        double total = 0;
        for (Index i = 0; i < kh; ++i) {
            const Index h_shifted = h + ph - i * dh;  // = oh * sh for the window that reads h
            if (h_shifted < 0 || h_shifted % sh != 0) continue;
            const Index oh = h_shifted / sh;
            if (oh >= OH) continue;
            for (Index j = 0; j < kw; ++j) {
                const Index w_shifted = w + pw - j * dw;
                if (w_shifted < 0 || w_shifted % sw != 0) continue;
                const Index ow = w_shifted / sw;
                if (ow >= OW) continue;
                const Index r = (c * kh + i) * kw + j;
                total += col[r * columns + (n * OH + oh) * OW + ow];
            }
        }
        x[item] = T(total);
    }
}
