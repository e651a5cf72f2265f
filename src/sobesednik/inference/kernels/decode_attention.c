/* One decoding step's attention: each row's single query against that row's cached keys and values.
 *
 * out[row, head·dim + d] = Σ_t p_t · v[row, head, t, d], p = softmax over the row's valid t of scale · q · k_t.
 *
 * torch's CPU attention kernel (`scaled_dot_product_attention`) is built for many queries; with one query per
 * row it read a 16-user GPT-2-medium cache at a third of the memory bandwidth (1.55 ms per layer where reading
 * the keys and values alone takes 0.6 ms; docs/benchmarks.md, "Attention of a decoding step"), and in bf16 it was
 * slower still. Here each (row, head) streams its keys once and its values once, skips the left padding the mask
 * marks, and accumulates in float32. Keys, values, the query and the output are all float32 or all bf16.
 *
 * Built by `inference/native.py` with the AVX2 + FMA flags (256-bit vectors: the kernel waits on memory, wider
 * ones gain nothing) and called through ctypes; torch's OpenMP runtime runs the threads.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <immintrin.h>

#include "bf16.h"

#define MAX_LENGTH 16384 /* cached tokens per row the scores buffer (on the thread's stack) holds */
#define MAX_DIM 256      /* head width in floats: the output accumulators stay in registers up to this */

static inline __m256 load8(const void *p, int bf16, int64_t i) {
    if (bf16) {
        __m128i bits = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
    }
    return _mm256_loadu_ps((const float *)p + i);
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* e^x of 8 floats: Cephes' expf (range reduction by ln 2, degree-5 polynomial), relative error under 2e-7;
 * arguments clamped to ±88.38, where float32's range ends. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f)), _mm256_set1_ps(88.3762626647949f));
    __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_add_ps(_mm256_fmadd_ps(y, _mm256_mul_ps(x, x), x), _mm256_set1_ps(1.0f));
    __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(exponent));
}

/* One (row, head): `q` [dim], `k` and `v` [length, dim] (token after token), `valid` [length], `out` [dim]. */
static void attend_one(const void *q, const void *k, const void *v, const uint8_t *valid, int64_t length,
                       int64_t dim, float scale, int bf16, void *out) {
    float scores[length + 8]; /* + 8: the exp pass runs in whole vectors */
    __m256 query[MAX_DIM / 8];
    int64_t vectors = dim / 8;
    for (int64_t i = 0; i < vectors; i++) query[i] = _mm256_mul_ps(load8(q, bf16, i * 8), _mm256_set1_ps(scale));
    float best = -INFINITY;
    for (int64_t t = 0; t < length; t++) {
        if (!valid[t]) {
            scores[t] = -INFINITY;
            continue;
        }
        __m256 even = _mm256_setzero_ps(), odd = _mm256_setzero_ps(); /* two chains hide the FMA latency */
        int64_t i = 0;
        for (; i + 1 < vectors; i += 2) {
            even = _mm256_fmadd_ps(query[i], load8(k, bf16, t * dim + i * 8), even);
            odd = _mm256_fmadd_ps(query[i + 1], load8(k, bf16, t * dim + i * 8 + 8), odd);
        }
        if (i < vectors) even = _mm256_fmadd_ps(query[i], load8(k, bf16, t * dim + i * 8), even);
        float score = hsum(_mm256_add_ps(even, odd));
        scores[t] = score;
        best = score > best ? score : best;
    }
    for (int64_t t = length; t < length + 8; t++) scores[t] = -INFINITY;
    __m256 total = _mm256_setzero_ps();
    __m256 top = _mm256_set1_ps(best);
    for (int64_t t = 0; t < length; t += 8) {
        __m256 score = _mm256_loadu_ps(scores + t);
        __m256 p = exp8(_mm256_sub_ps(score, top));
        p = _mm256_and_ps(p, _mm256_cmp_ps(score, _mm256_set1_ps(-INFINITY), _CMP_NEQ_OQ)); /* padding weighs 0 */
        _mm256_storeu_ps(scores + t, p);
        total = _mm256_add_ps(total, p);
    }
    float norm = 1.0f / hsum(total);
    __m256 acc[MAX_DIM / 8];
    for (int64_t i = 0; i < vectors; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t t = 0; t < length; t++) {
        if (!valid[t]) continue;
        __m256 p = _mm256_set1_ps(scores[t]);
        for (int64_t i = 0; i < vectors; i++) acc[i] = _mm256_fmadd_ps(p, load8(v, bf16, t * dim + i * 8), acc[i]);
    }
    for (int64_t i = 0; i < vectors; i++) {
        float lanes[8];
        _mm256_storeu_ps(lanes, _mm256_mul_ps(acc[i], _mm256_set1_ps(norm)));
        for (int j = 0; j < 8; j++) {
            if (bf16)
                ((uint16_t *)out)[i * 8 + j] = float_to_bf16(lanes[j]);
            else
                ((float *)out)[i * 8 + j] = lanes[j];
        }
    }
}

/* q [rows, heads, dim] with strides (q_row, q_head, 1); k and v [rows, heads, length, dim] with strides (kv_row,
 * kv_head, dim, 1); valid [rows, length] (0 over padding); out [rows, heads · dim], contiguous. Strides count
 * elements. Returns 0, or -1 for a length or width past this kernel's limits (the caller keeps torch's). */
int decode_attention(const void *q, int64_t q_row, int64_t q_head, const void *k, const void *v, int64_t kv_row,
                     int64_t kv_head, const uint8_t *valid, void *out, int64_t rows, int64_t heads, int64_t length,
                     int64_t dim, float scale, int bf16, int threads) {
    if (length < 1 || length > MAX_LENGTH || dim % 8 != 0 || dim > MAX_DIM) return -1;
    int64_t size = bf16 ? 2 : 4;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t task = 0; task < rows * heads; task++) {
        int64_t row = task / heads, head = task % heads;
        attend_one((const char *)q + (row * q_row + head * q_head) * size,
                   (const char *)k + (row * kv_row + head * kv_head) * size,
                   (const char *)v + (row * kv_row + head * kv_head) * size, valid + row * length, length, dim,
                   scale, bf16, (char *)out + (row * heads + head) * dim * size);
    }
    return 0;
}
