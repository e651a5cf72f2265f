/* A linear layer for a few rows with int8 weights: out = (x · Wᵀ) ⊙ scale + bias.
 *
 * W is [n, k] int8 with one float scale per output row (weight-only int8, as `optimize.WeightOnlyInt8` makes it).
 * A decoding step of one user reads every weight once, so its linears should run at memory speed. torch's
 * weight-only kernel (`_weight_int8pack_mm`) converts every weight to float before it multiplies, three
 * instructions per 16 weights, and tops out near 5 G weights/s on a core: arithmetic, not memory, bounds it
 * (docs/benchmarks.md, "Batch 1 on amx" and "An int8 decoding kernel of our own"). Here the activation rows are quantised to int16 (one scale per row:
 * 15 bits, finer than the bf16 they come in) and the dot products run in integers: AVX512-VNNI's `vpdpwssd`
 * multiplies and adds 32 weights in one instruction; AVX-512 and AVX2 without VNNI take `vpmaddwd` + `vpaddd`.
 *
 * Built by `inference/native.py` for this CPU, with the -m flags of the ISA it picked (the macros below
 * follow them), and called through ctypes; torch's OpenMP runtime runs the threads (same libgomp soname).
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <immintrin.h>

#include "bf16.h"

#if defined(__AVX512BW__)
typedef __m512i vec;
#define LANES 32 /* int16 activations per vector */
#define ZERO() _mm512_setzero_si512()
#define LOAD_X(p) _mm512_loadu_si512((const void *)(p))
#define LOAD_W(p) _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(p)))
#if defined(__AVX512VNNI__)
#define MADD(acc, x, w) _mm512_dpwssd_epi32((acc), (x), (w))
#else
#define MADD(acc, x, w) _mm512_add_epi32((acc), _mm512_madd_epi16((x), (w)))
#endif
static inline int64_t reduce512(__m512i v) {
    __m512i wide = _mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)),
                                    _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1)));
    return _mm512_reduce_add_epi64(wide);
}
#define REDUCE(v) reduce512(v)
#define ROW_CHUNK 4 /* activation rows per pass over the weights: 16 accumulators + 4 weights of 32 registers */
#elif defined(__AVX2__)
typedef __m256i vec;
#define LANES 16
#define ZERO() _mm256_setzero_si256()
#define LOAD_X(p) _mm256_loadu_si256((const __m256i *)(p))
#define LOAD_W(p) _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(p)))
#if defined(__AVXVNNI__)
#define MADD(acc, x, w) _mm256_dpwssd_avx_epi32((acc), (x), (w))
#else
#define MADD(acc, x, w) _mm256_add_epi32((acc), _mm256_madd_epi16((x), (w)))
#endif
static inline int64_t reduce256(__m256i v) {
    __m256i wide = _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(v)),
                                    _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v, 1)));
    __m128i sum = _mm_add_epi64(_mm256_castsi256_si128(wide), _mm256_extracti128_si256(wide, 1));
    return _mm_cvtsi128_si64(sum) + _mm_extract_epi64(sum, 1);
}
#define REDUCE(v) reduce256(v)
#define ROW_CHUNK 2 /* AVX2 has 16 registers: 8 accumulators + 4 weights + 1 activation */
#else
#error "w8a16.c needs AVX2 or AVX-512 (int8_kernel.py builds it only for those)"
#endif

#define BLOCK 4 /* output rows per inner loop: four independent accumulators hide the multiply-add latency */
/* How far ahead of the loads the weights are prefetched. The hardware prefetcher alone left all linears of a
 * GPT-2-medium step at 26-28 ms on two AMX-Xeon cores; 2-8 KB ahead took them to 19-20 ms (18 GB/s, about the
 * machine's copy bandwidth), 1 KB ahead to 21-23 ms. */
#define PREFETCH_BYTES 4096

static inline float load_activation(const void *x, int bf16, int64_t i) {
    return bf16 ? bf16_to_float(((const uint16_t *)x)[i]) : ((const float *)x)[i];
}

/* Dot products of `rows` (1..ROW_CHUNK) int16 activation rows with `outputs` (1..BLOCK) weight rows: int32 lanes,
 * summed in int64 (each lane holds at most k / 8 products, see `qmax`; all of them together could pass
 * INT32_MAX). Each weight vector is widened once and used for every activation row, so a step of four users
 * costs little more than a step of one. Called with constant `rows` and `outputs`, it unrolls into registers. */
static inline __attribute__((always_inline)) void dot_block(const int16_t *x, int rows, const int8_t *w,
                                                            int outputs, int64_t k,
                                                            int64_t sums[ROW_CHUNK][BLOCK]) {
    vec acc[ROW_CHUNK][BLOCK];
    for (int r = 0; r < rows; r++)
        for (int q = 0; q < outputs; q++) acc[r][q] = ZERO();
    int64_t j = 0;
    for (; j + LANES <= k; j += LANES) {
        vec wv[BLOCK];
        for (int q = 0; q < outputs; q++) {
            _mm_prefetch((const char *)(w + q * k + j + PREFETCH_BYTES), _MM_HINT_T0);
            wv[q] = LOAD_W(w + q * k + j);
        }
        for (int r = 0; r < rows; r++) {
            vec xv = LOAD_X(x + r * k + j);
            for (int q = 0; q < outputs; q++) acc[r][q] = MADD(acc[r][q], xv, wv[q]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int q = 0; q < outputs; q++) {
            int64_t sum = REDUCE(acc[r][q]);
            for (int64_t t = j; t < k; t++) sum += (int64_t)x[r * k + t] * w[q * k + t];
            sums[r][q] = sum;
        }
}

/* `dot_block` with its sizes as constants where they are the common ones (every block but the last). */
static void dot_block_any(const int16_t *x, int rows, const int8_t *w, int outputs, int64_t k,
                          int64_t sums[ROW_CHUNK][BLOCK]) {
    if (outputs == BLOCK) {
        switch (rows) {
        case 1: dot_block(x, 1, w, BLOCK, k, sums); return;
        case 2: dot_block(x, 2, w, BLOCK, k, sums); return;
#if ROW_CHUNK > 2
        case 3: dot_block(x, 3, w, BLOCK, k, sums); return;
        case 4: dot_block(x, 4, w, BLOCK, k, sums); return;
#endif
        }
    }
    dot_block(x, rows, w, outputs, k, sums);
}

/* out[m, n] = x[m, k] · w[n, k]ᵀ ⊙ scale[n] + bias[n] (bias may be NULL); x and out are bf16 when `bf16`, else
 * float32. Returns 0, or -1 when the scratch buffer cannot be allocated. */
int w8a16_linear(const void *x, int bf16, const int8_t *w, const float *scale, const float *bias, void *out,
                 int64_t m, int64_t n, int64_t k, int threads) {
    int16_t *xq = malloc(sizeof(int16_t) * (size_t)(m * k));
    float *x_scale = malloc(sizeof(float) * (size_t)m);
    if (xq == NULL || x_scale == NULL) {
        free(xq);
        free(x_scale);
        return -1;
    }
    /* The int16 range that cannot overflow an int32 lane: AVX2 adds k / 8 products of |w| <= 127 into each lane
     * (k / 16 with AVX-512); 32767 holds up to k = 4128, and a wider k takes a smaller range (still 14 bits at
     * k = 16384). */
    int64_t per_lane = (k + 7) / 8;
    float qmax = (float)(INT32_MAX / (127 * per_lane));
    if (qmax > 32767.0f) qmax = 32767.0f;
    for (int64_t r = 0; r < m; r++) {
        float amax = 0.0f;
        for (int64_t t = 0; t < k; t++) amax = fmaxf(amax, fabsf(load_activation(x, bf16, r * k + t)));
        float step = amax > 0.0f ? amax / qmax : 1.0f;
        float inverse = 1.0f / step;
        x_scale[r] = step;
        for (int64_t t = 0; t < k; t++)
            xq[r * k + t] = (int16_t)lrintf(load_activation(x, bf16, r * k + t) * inverse);
    }
    int64_t blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < blocks; b++) {
        int64_t first = b * BLOCK;
        int outputs = n - first < BLOCK ? (int)(n - first) : BLOCK;
        for (int64_t r0 = 0; r0 < m; r0 += ROW_CHUNK) {
            int rows = m - r0 < ROW_CHUNK ? (int)(m - r0) : ROW_CHUNK;
            int64_t sums[ROW_CHUNK][BLOCK];
            dot_block_any(xq + r0 * k, rows, w + first * k, outputs, k, sums);
            for (int r = 0; r < rows; r++)
                for (int q = 0; q < outputs; q++) {
                    int64_t i = first + q, row = r0 + r;
                    float value = (float)sums[r][q] * x_scale[row] * scale[i] + (bias != NULL ? bias[i] : 0.0f);
                    if (bf16)
                        ((uint16_t *)out)[row * n + i] = float_to_bf16(value);
                    else
                        ((float *)out)[row * n + i] = value;
                }
        }
    }
    free(xq);
    free(x_scale);
    return 0;
}
