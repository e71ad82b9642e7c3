/* Generic attention kernel in fp32 for any head_dim up to
 * FGI_GENERIC_MAX_HEAD_DIM and any alignment (e.g. stories260K's head_dim 8
 * with unaligned strides): the correctness fallback of cuda/attention/attention.cu.
 * Conventions: cuda/attention/attention_kernels.cuh.
 *
 * Design: a warp per query row; lane l scores key j0 + l of each 32-key
 * chunk (dot product against the scaled q in shared memory), the chunk's
 * max/sum come from warp shuffles, and the probabilities go through shared
 * memory so that lane-strided head dims accumulate P.V coalesced. The
 * output accumulator lives in shared memory (each lane owns its dims), so
 * head_dim is a runtime value. Only warp barriers: warps leave freely. */
#include "attention_kernels.cuh"
#include "dtype.cuh"

namespace {

constexpr int kWarps = FGI_ATTENTION_THREADS / 32;

__global__ void __launch_bounds__(FGI_ATTENTION_THREADS) generic_attention_kernel(const fgi_attention_problem p)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int D = p.head_dim;
    float *q_s = fgi_attention_smem() + warp * (2 * D + 32); /* (D) */
    float *o_s = q_s + D;                                                          /* (D) */
    float *p_s = o_s + D;                                                          /* (32) */
    const long long rows = (long long)p.n_q_head * p.q_len;
    const long long row = (long long)blockIdx.x * kWarps + warp;
    if (row >= rows) return;
    const int h = (int)(row / p.q_len), i = (int)(row % p.q_len);
    const int split = (int)blockIdx.y;
    const float *q = p.q + h * p.q_head_stride + i * p.q_row_stride;
    const float *k_head = p.k + (h / p.group) * p.kv_head_stride;
    const float *v_head = p.v + (h / p.group) * p.kv_head_stride;

    for (int d = lane; d < D; d += 32) {
        q_s[d] = fgi_load1(q + d) * p.q_scale;
        o_s[d] = 0.0f;
    }
    __syncwarp();

    const int split_begin = split * p.keys_per_split;
    const int key_begin = max(split_begin, fgi_window_first_key(p.window, i, p.shift));
    const int key_end = min(split_begin + min(p.keys_per_split, p.kv_len - split_begin),
                            i + p.shift + 1);
    fgi_softmax_state st = fgi_softmax_init(); /* sum: the whole row's */
    for (int j0 = key_begin; j0 < key_end; j0 += 32) {
        const int j = j0 + lane;
        float s[1] = {-INFINITY}; /* this lane's key of the chunk */
        if (j < key_end) {
            const float *k_row = k_head + (long long)j * D;
            float dot = 0.0f;
            for (int d = 0; d < D; d++) dot = fmaf(q_s[d], fgi_load1(k_row + d), dot);
            s[0] = dot;
        }
        const float alpha = fgi_softmax_update<32, 1, true>(st, s);
        p_s[lane] = s[0];
        __syncwarp();
        const int n = min(32, key_end - j0);
        for (int d = lane; d < D; d += 32) {
            const float *v_col = v_head + (long long)j0 * D + d;
            float acc = o_s[d] * alpha;
            for (int t = 0; t < n; t++)
                acc = fmaf(p_s[t], fgi_load1(v_col + (long long)t * D), acc);
            o_s[d] = acc;
        }
        __syncwarp(); /* p_s is rewritten by the next chunk */
    }

    if (p.n_splits == 1) {
        const float inv = fgi_softmax_inv_sum(st);
        float *dst = p.out + h * p.out_head_stride + i * p.out_row_stride;
        for (int d = lane; d < D; d += 32) fgi_store1(dst + d, o_s[d] * inv);
        if (lane == 0 && p.lse != nullptr) p.lse[row] = fgi_softmax_lse(st);
    } else {
        const long long part = fgi_part_row(p, split, h, i);
        for (int d = lane; d < D; d += 32) fgi_store1(p.part_o + part * D + d, o_s[d]);
        if (lane == 0) {
            p.part_m[part] = st.max;
            p.part_l[part] = st.sum;
        }
    }
}

} // namespace

long long fgi_generic_blocks(const fgi_attention_problem &p)
{
    return ((long long)p.n_q_head * p.q_len + kWarps - 1) / kWarps;
}

fg_status fgi_launch_generic(const char *fn, const fgi_attention_problem &p, cudaStream_t stream)
{
    if (p.head_dim > FGI_GENERIC_MAX_HEAD_DIM)
        return fgi_fail(FG_ERR_UNSUPPORTED, "%s: head_dim %d is above the supported %d", fn,
                       p.head_dim, FGI_GENERIC_MAX_HEAD_DIM);
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)fgi_generic_blocks(p), (unsigned)p.n_splits, 1);
    cfg.blockDim = dim3(FGI_ATTENTION_THREADS, 1, 1);
    cfg.dynamicSmemBytes = sizeof(float) * (size_t)kWarps * (2 * p.head_dim + 32);
    cfg.stream = stream;
    void (*kernel)(fgi_attention_problem) = generic_attention_kernel;
    FGI_CUDA_TRY(fn, cudaLaunchKernelEx(&cfg, kernel, p));
    FGI_CUDA_LAUNCHED(fn, "generic_attention_kernel");
    return FG_OK;
}
