/* The dynamic int8 linear of the int8 serving path: out = x · Wᵀ with x quantised per row as it comes in.
 *
 * W is int8 with one float scale per output row, packed once (`dynamic_int8.DynamicInt8Linear`) as [n/8][k/4][8][4]:
 * 32 bytes hold four consecutive weights of eight output rows, so one vector multiply-add gives eight int32
 * dot-product lanes that need no horizontal sum. Each activation row is quantised to 0..127 over its own
 * [min, max] (7 bits: `vpmaddubsw` adds two u8 × s8 products into int16, and 2 · 127 · 127 still fits), and
 * out[r, c] = scale[c] · (step[r] · Σ q·w + min[r] · Σ w) + bias[c], the affine map undone exactly.
 *
 * Why our own: torch's dynamic int8 linear (fbgemm) ran all four linears of a GPT-2-medium layer for 16 rows in
 * 2.30 ms on two AVX2 EPYC cores, this kernel in 1.25 ms, and a 1,149-row prompt pass in 108 against 82 ms
 * (docs/benchmarks.md, "A dynamic int8 kernel of our own"); its scales are also finer (per activation row and
 * per weight row, where torch's are per tensor).
 *
 * Built by `inference/native.py` for the ISA the capability probe names; AVX-VNNI and AVX512-VNNI fuse the
 * three instructions of a multiply-add into `vpdpbusd`, with the same results.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <immintrin.h>

#if !defined(__AVX2__)
#error "u8s8.c needs AVX2 (dynamic_int8.py builds it only for CPUs with it)"
#endif

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define DOT(acc, a, w) _mm256_dpbusd_epi32((acc), (a), (w))
#elif defined(__AVXVNNI__)
#define DOT(acc, a, w) _mm256_dpbusd_avx_epi32((acc), (a), (w))
#else
#define DOT(acc, a, w) _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((a), (w)), ones))
#endif

#define LEVELS 127.0f /* activation codes 0..127: see the top of the file */
#define TILE_ROWS 4   /* activation rows per pass: 8 accumulators, 2 weight vectors, 1 activation, 1 scratch */
#define TILE_COLS 16  /* output rows (two blocks of 8) per pass */
/* Activation rows per sweep over the weights: a prompt pass reuses each weight block for these many rows while
 * their codes (128 KB at k = 1024) stay in L2. */
#define SWEEP_ROWS 128

/* Σ over k of codes `a` (rows `rows`, stride `lda`) times the 16 packed output rows at `w`: acc[r][0..1]. Called
 * with a constant `rows`, it unrolls into registers. */
static inline __attribute__((always_inline)) void dot_tile(const uint8_t *a, int64_t lda, int rows,
                                                           const int8_t *w, int64_t k4,
                                                           __m256i acc[TILE_ROWS][2]) {
#if !defined(__AVX512VNNI__) && !defined(__AVXVNNI__)
    const __m256i ones = _mm256_set1_epi16(1);
#endif
    const int8_t *w1 = w + k4 * 8;
    for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int64_t q = 0; q < k4; q += 4) {
        __m256i w0v = _mm256_loadu_si256((const __m256i *)(w + q * 8));
        __m256i w1v = _mm256_loadu_si256((const __m256i *)(w1 + q * 8));
        for (int r = 0; r < rows; r++) {
            int32_t four;
            memcpy(&four, a + r * lda + q, sizeof four);
            __m256i av = _mm256_set1_epi32(four);
            acc[r][0] = DOT(acc[r][0], av, w0v);
            acc[r][1] = DOT(acc[r][1], av, w1v);
        }
    }
}

static void dot_tile_any(const uint8_t *a, int64_t lda, int rows, const int8_t *w, int64_t k4,
                         __m256i acc[TILE_ROWS][2]) {
    switch (rows) {
    case 1: dot_tile(a, lda, 1, w, k4, acc); return;
    case 2: dot_tile(a, lda, 2, w, k4, acc); return;
    case 3: dot_tile(a, lda, 3, w, k4, acc); return;
    default: dot_tile(a, lda, TILE_ROWS, w, k4, acc); return;
    }
}

/* Row `r` of x as codes: 0..127 over [lo, lo + 127·step]; the k4 - k padding codes are 0. */
static void quantize_row(const float *x, int64_t k, int64_t k4, uint8_t *codes, float *lo_out, float *step_out) {
    __m256 lo8 = _mm256_set1_ps(INFINITY), hi8 = _mm256_set1_ps(-INFINITY);
    int64_t t = 0;
    for (; t + 8 <= k; t += 8) {
        __m256 v = _mm256_loadu_ps(x + t);
        lo8 = _mm256_min_ps(lo8, v);
        hi8 = _mm256_max_ps(hi8, v);
    }
    float lanes_lo[8], lanes_hi[8];
    _mm256_storeu_ps(lanes_lo, lo8);
    _mm256_storeu_ps(lanes_hi, hi8);
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < 8; i++) {
        lo = fminf(lo, lanes_lo[i]);
        hi = fmaxf(hi, lanes_hi[i]);
    }
    for (int64_t j = t; j < k; j++) {
        lo = fminf(lo, x[j]);
        hi = fmaxf(hi, x[j]);
    }
    float step = hi > lo ? (hi - lo) / LEVELS : 1.0f;
    float inverse = 1.0f / step;
    *lo_out = lo;
    *step_out = step;
    /* (x - lo) / step + 0.5, truncated: round half up on values >= 0 */
    __m256 lo_v = _mm256_set1_ps(lo), inv_v = _mm256_set1_ps(inverse), half = _mm256_set1_ps(0.5f);
    __m256 top = _mm256_set1_ps(LEVELS);
    for (t = 0; t + 8 <= k; t += 8) {
        __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + t), lo_v), inv_v), half);
        __m256i q = _mm256_cvttps_epi32(_mm256_min_ps(v, top));
        __m128i q16 = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
        _mm_storel_epi64((__m128i *)(codes + t), _mm_packus_epi16(q16, q16));
    }
    for (; t < k; t++) {
        float v = fminf((x[t] - lo) * inverse + 0.5f, LEVELS);
        codes[t] = (uint8_t)v;
    }
    for (; t < k4; t++) codes[t] = 0;
}

/* acc (rows × 16 int32) → float out[r, first..first+16) with the scales, the zero-point term and the bias;
 * `columns` (< 16 at the last block) of them are written. scale, w_sum and bias are padded to whole blocks. */
static void store_tile(__m256i acc[TILE_ROWS][2], int rows, const float *lo, const float *step,
                       const float *scale, const float *w_sum, const float *bias, float *out, int64_t n,
                       int64_t first, int columns) {
    for (int r = 0; r < rows; r++) {
        float *row = out + r * n + first;
        float whole[TILE_COLS];
        float *target = columns == TILE_COLS ? row : whole;
        for (int h = 0; h < 2; h++) {
            int64_t c = first + 8 * h;
            __m256 value = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][h]), _mm256_set1_ps(step[r]));
            value = _mm256_add_ps(value, _mm256_mul_ps(_mm256_set1_ps(lo[r]), _mm256_loadu_ps(w_sum + c)));
            value = _mm256_mul_ps(value, _mm256_loadu_ps(scale + c));
            if (bias != NULL) value = _mm256_add_ps(value, _mm256_loadu_ps(bias + c));
            _mm256_storeu_ps(target + 8 * h, value);
        }
        if (target == whole) memcpy(row, whole, sizeof(float) * (size_t)columns);
    }
}

/* out[m, n] = x[m, k] · Wᵀ ⊙ scale + bias (bias may be NULL), W packed as above for n rounded up to 16 and k
 * to 4; scale, w_sum (Σ over k of each packed row) and bias hold that many floats. Returns 0, or -1 when the
 * scratch for the activation codes cannot be allocated. */
int u8s8_linear(const float *x, const int8_t *packed, const float *scale, const float *w_sum, const float *bias,
                float *out, int64_t m, int64_t n, int64_t k, int threads) {
    int64_t k4 = (k + 3) / 4 * 4, blocks = (n + TILE_COLS - 1) / TILE_COLS;
    uint8_t *codes = malloc((size_t)(m * k4) + 2 * sizeof(float) * (size_t)m);
    if (codes == NULL) return -1;
    float *lo = (float *)(codes + m * k4), *step = lo + m; /* m * k4 is a multiple of 4: aligned for floats */
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (int64_t r = 0; r < m; r++) quantize_row(x + r * k, k, k4, codes + r * k4, lo + r, step + r);
        for (int64_t sweep = 0; sweep < m; sweep += SWEEP_ROWS) {
            int64_t end = sweep + SWEEP_ROWS < m ? sweep + SWEEP_ROWS : m;
#pragma omp for schedule(static)
            for (int64_t b = 0; b < blocks; b++) {
                int64_t first = b * TILE_COLS;
                int columns = n - first < TILE_COLS ? (int)(n - first) : TILE_COLS;
                for (int64_t r0 = sweep; r0 < end; r0 += TILE_ROWS) {
                    int rows = end - r0 < TILE_ROWS ? (int)(end - r0) : TILE_ROWS;
                    __m256i acc[TILE_ROWS][2];
                    dot_tile_any(codes + r0 * k4, k4, rows, packed + first * k4, k4, acc);
                    store_tile(acc, rows, lo + r0, step + r0, scale, w_sum, bias, out + r0 * n, n, first,
                               columns);
                }
            }
        }
    }
    free(codes);
    return 0;
}
