// Weight-only quantized matrix products for CPU decoding: y[M, N] = x[M, K] @ dequant(W)[N, K]^T, M <= 8.
//
// Decoding one token is a matrix-vector product per layer, bound by how fast the weights stream from
// memory. These kernels read int8 or packed int4 weights once, widen them to fp32 in registers and
// multiply-accumulate against every token row, so the bytes read per token drop 4x (int8) or ~7x (int4).
//
// Layouts (produced by puyu/quant/weight_only.py):
//   int8: qweight int8 [N, K], scales fp32 [N]; w[n, k] = qweight[n, k] * scales[n].
//   int4: qweight uint8 [N, K/2] in blocks of 32 values per 16 bytes: byte j of a block holds value j in its
//         low nibble and value j + 16 in its high nibble; scales fp32 [N, G] and szeros fp32 [N, G]
//         (scale * zero point) per group of `group_size` values along K; w = q * scale - szero.
//   AVX-512 turns nibbles into weights by table look-up (a 16-entry register per row and group, see
//   int4_block_avx512); AVX2 and scalar compute sum_g scale[n,g] * (sum_{k in g} x[k] q[n,k]) - sum_g
//   szero[n,g] * (sum_{k in g} x[k]), one conversion and one FMA per weight.
//
// Instruction sets are chosen at run time (__builtin_cpu_supports): AVX-512F, else AVX2+FMA, else scalar.
// Work is split over output channels with at::parallel_for (one contiguous range per thread; the build needs
// -fopenmp for it to run in parallel at all).

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <cstdint>
#include <string>

namespace {

constexpr int64_t kMaxRows = 8;

// Output rows computed together: each weight vector loaded is used for M x R accumulators.
#ifndef PUYU_ROWS_M1
#define PUYU_ROWS_M1 8
#endif
constexpr int rows_per_block(int m) { return m == 1 ? PUYU_ROWS_M1 : (m <= 2 ? 4 : (m <= 4 ? 2 : 1)); }

// Ask for the cache line at `p` in each of the R rows of the next block (row stride `stride` bytes): rows of
// a few KB are too short for the hardware prefetcher to ramp up, so without this each block waits on DRAM.
// Prefetching past the end of the matrix is harmless (prefetches never fault).
template <int R, typename T>
inline void prefetch_rows(const T* p, int64_t stride) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int r = 0; r < R; ++r) _mm_prefetch(c + r * stride * sizeof(T), _MM_HINT_T0);
}

// ---- scalar reference (any CPU) ---------------------------------------------------------------

void int8_rows_scalar(const float* x, const int8_t* q, const float* scales, float* y, int64_t m_rows, int64_t n_total,
                      int64_t k_total, int64_t n_begin, int64_t n_end) {
  for (int64_t n = n_begin; n < n_end; ++n) {
    const int8_t* row = q + n * k_total;
    for (int64_t m = 0; m < m_rows; ++m) {
      const float* xm = x + m * k_total;
      float acc = 0.f;
      for (int64_t k = 0; k < k_total; ++k) acc += xm[k] * static_cast<float>(row[k]);
      y[m * n_total + n] = acc * scales[n];
    }
  }
}

inline int nibble(const uint8_t* row, int64_t k) {
  const int64_t block = k / 32, j = k % 32;
  const uint8_t byte = row[block * 16 + (j % 16)];
  return j < 16 ? (byte & 0x0F) : (byte >> 4);
}

void int4_rows_scalar(const float* x, const uint8_t* q, const float* scales, const float* szeros, const float* xsums,
                      float* y, int64_t m_rows, int64_t n_total, int64_t k_total, int64_t group_size, int64_t n_begin,
                      int64_t n_end) {
  const int64_t groups = k_total / group_size;
  for (int64_t n = n_begin; n < n_end; ++n) {
    const uint8_t* row = q + n * (k_total / 2);
    for (int64_t m = 0; m < m_rows; ++m) {
      const float* xm = x + m * k_total;
      float acc = 0.f;
      for (int64_t g = 0; g < groups; ++g) {
        float dot = 0.f;
        for (int64_t k = g * group_size; k < (g + 1) * group_size; ++k) dot += xm[k] * static_cast<float>(nibble(row, k));
        acc += dot * scales[n * groups + g] - szeros[n * groups + g] * xsums[m * groups + g];
      }
      y[m * n_total + n] = acc;
    }
  }
}

// ---- AVX2 + FMA -------------------------------------------------------------------------------

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int M, int R>
__attribute__((target("avx2,fma"))) void int8_block_avx2(const float* x, const int8_t* q, const float* scales,
                                                         float* y, int64_t n_total, int64_t k_total, int64_t n) {
  __m256 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= k_total; k += 8) {
    __m256 xv[M];
    for (int m = 0; m < M; ++m) xv[m] = _mm256_loadu_ps(x + m * k_total + k);
    if ((k & 63) == 0) prefetch_rows<R>(q + (n + R) * k_total + k, k_total);
    for (int r = 0; r < R; ++r) {
      const __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + (n + r) * k_total + k));
      const __m256 w = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(raw));
      for (int m = 0; m < M; ++m) acc[m][r] = _mm256_fmadd_ps(w, xv[m], acc[m][r]);
    }
  }
  for (int m = 0; m < M; ++m) {
    for (int r = 0; r < R; ++r) {
      float sum = hsum256(acc[m][r]);
      const int8_t* row = q + (n + r) * k_total;
      for (int64_t t = k; t < k_total; ++t) sum += x[m * k_total + t] * static_cast<float>(row[t]);
      y[m * n_total + n + r] = sum * scales[n + r];
    }
  }
}

template <int M, int R>
__attribute__((target("avx2,fma"))) void int4_block_avx2(const float* x, const uint8_t* q, const float* scales,
                                                         const float* szeros, const float* xsums, float* y,
                                                         int64_t n_total, int64_t k_total, int64_t group_size,
                                                         int64_t n) {
  const int64_t groups = k_total / group_size;
  const int64_t row_bytes = k_total / 2;
  const __m128i low_mask = _mm_set1_epi8(0x0F);
  __m256 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m256 dot[M][R];
    for (int m = 0; m < M; ++m)
      for (int r = 0; r < R; ++r) dot[m][r] = _mm256_setzero_ps();
    for (int64_t k = g * group_size; k < (g + 1) * group_size; k += 32) {
      __m256 xv[M][4];
      for (int m = 0; m < M; ++m)
        for (int c = 0; c < 4; ++c) xv[m][c] = _mm256_loadu_ps(x + m * k_total + k + 8 * c);
      if ((k & 127) == 0) prefetch_rows<R>(q + (n + R) * row_bytes + k / 2, row_bytes);
      for (int r = 0; r < R; ++r) {
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + (n + r) * row_bytes + k / 2));
        const __m128i lo = _mm_and_si128(raw, low_mask);
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low_mask);
        const __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
        const __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
        const __m256 w2 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
        const __m256 w3 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
        for (int m = 0; m < M; ++m) {
          __m256 d = _mm256_fmadd_ps(w0, xv[m][0], dot[m][r]);
          d = _mm256_fmadd_ps(w1, xv[m][1], d);
          d = _mm256_fmadd_ps(w2, xv[m][2], d);
          dot[m][r] = _mm256_fmadd_ps(w3, xv[m][3], d);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m256 s = _mm256_set1_ps(scales[(n + r) * groups + g]);
      for (int m = 0; m < M; ++m) acc[m][r] = _mm256_fmadd_ps(dot[m][r], s, acc[m][r]);
    }
  }
  for (int m = 0; m < M; ++m) {
    for (int r = 0; r < R; ++r) {
      float correction = 0.f;
      for (int64_t g = 0; g < groups; ++g) correction += szeros[(n + r) * groups + g] * xsums[m * groups + g];
      y[m * n_total + n + r] = hsum256(acc[m][r]) - correction;
    }
  }
}

// ---- AVX-512F ---------------------------------------------------------------------------------

template <int M, int R>
__attribute__((target("avx512f"))) void int8_block_avx512(const float* x, const int8_t* q, const float* scales,
                                                          float* y, int64_t n_total, int64_t k_total, int64_t n) {
  __m512 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= k_total; k += 16) {
    __m512 xv[M];
    for (int m = 0; m < M; ++m) xv[m] = _mm512_loadu_ps(x + m * k_total + k);
    if ((k & 63) == 0) prefetch_rows<R>(q + (n + R) * k_total + k, k_total);
    for (int r = 0; r < R; ++r) {
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + (n + r) * k_total + k));
      const __m512 w = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw));
      for (int m = 0; m < M; ++m) acc[m][r] = _mm512_fmadd_ps(w, xv[m], acc[m][r]);
    }
  }
  for (int m = 0; m < M; ++m) {
    for (int r = 0; r < R; ++r) {
      float sum = _mm512_reduce_add_ps(acc[m][r]);
      const int8_t* row = q + (n + r) * k_total;
      for (int64_t t = k; t < k_total; ++t) sum += x[m * k_total + t] * static_cast<float>(row[t]);
      y[m * n_total + n + r] = sum * scales[n + r];
    }
  }
}

// int4 by table look-up: per row and group, the 16 possible weights (q - z) * s fill one register, and
// vpermps (which reads only the low 4 bits of each index lane) turns nibbles straight into weights. That is
// one shift and one permute per 16 weights instead of mask, widen and convert, and the scale and zero point
// need no further work.
template <int M, int R>
__attribute__((target("avx512f"))) void int4_block_avx512(const float* x, const uint8_t* q, const float* scales,
                                                          const float* szeros, const float* /*xsums*/, float* y,
                                                          int64_t n_total, int64_t k_total, int64_t group_size,
                                                          int64_t n) {
  const int64_t groups = k_total / group_size;
  const int64_t row_bytes = k_total / 2;
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512 table[R];
    for (int r = 0; r < R; ++r) {
      const int64_t i = (n + r) * groups + g;
      table[r] = _mm512_fmsub_ps(iota, _mm512_set1_ps(scales[i]), _mm512_set1_ps(szeros[i]));
    }
    for (int64_t k = g * group_size; k < (g + 1) * group_size; k += 32) {
      __m512 x0[M], x1[M];
      for (int m = 0; m < M; ++m) {
        x0[m] = _mm512_loadu_ps(x + m * k_total + k);
        x1[m] = _mm512_loadu_ps(x + m * k_total + k + 16);
      }
      if ((k & 127) == 0) prefetch_rows<R>(q + (n + R) * row_bytes + k / 2, row_bytes);
      for (int r = 0; r < R; ++r) {
        const __m512i raw = _mm512_cvtepu8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + (n + r) * row_bytes + k / 2)));
        const __m512 lo = _mm512_permutexvar_ps(raw, table[r]);
        const __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(raw, 4), table[r]);
        for (int m = 0; m < M; ++m) acc[m][r] = _mm512_fmadd_ps(hi, x1[m], _mm512_fmadd_ps(lo, x0[m], acc[m][r]));
      }
    }
  }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) y[m * n_total + n + r] = _mm512_reduce_add_ps(acc[m][r]);
}

// ---- dispatch ---------------------------------------------------------------------------------

enum class Isa { kScalar, kAvx2, kAvx512 };

Isa detect_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
  return Isa::kScalar;
}

Isa& active_isa() {
  static Isa isa = detect_isa();
  return isa;
}

// Rows [n_begin, n_end) of the int8 product for M token rows: blocks of R rows, then single rows.
template <int M>
void int8_rows(Isa isa, const float* x, const int8_t* q, const float* s, float* y, int64_t n_total, int64_t k_total,
               int64_t n_begin, int64_t n_end) {
  constexpr int R = rows_per_block(M);
  int64_t n = n_begin;
  if (isa == Isa::kAvx512) {
    for (; n + R <= n_end; n += R) int8_block_avx512<M, R>(x, q, s, y, n_total, k_total, n);
    for (; n < n_end; ++n) int8_block_avx512<M, 1>(x, q, s, y, n_total, k_total, n);
  } else if (isa == Isa::kAvx2) {
    for (; n + R <= n_end; n += R) int8_block_avx2<M, R>(x, q, s, y, n_total, k_total, n);
    for (; n < n_end; ++n) int8_block_avx2<M, 1>(x, q, s, y, n_total, k_total, n);
  } else {
    int8_rows_scalar(x, q, s, y, M, n_total, k_total, n_begin, n_end);
  }
}

template <int M>
void int4_rows(Isa isa, const float* x, const uint8_t* q, const float* s, const float* sz, const float* xs, float* y,
               int64_t n_total, int64_t k_total, int64_t gs, int64_t n_begin, int64_t n_end) {
  constexpr int R = rows_per_block(M);
  int64_t n = n_begin;
  if (isa == Isa::kAvx512) {
    for (; n + R <= n_end; n += R) int4_block_avx512<M, R>(x, q, s, sz, xs, y, n_total, k_total, gs, n);
    for (; n < n_end; ++n) int4_block_avx512<M, 1>(x, q, s, sz, xs, y, n_total, k_total, gs, n);
  } else if (isa == Isa::kAvx2) {
    for (; n + R <= n_end; n += R) int4_block_avx2<M, R>(x, q, s, sz, xs, y, n_total, k_total, gs, n);
    for (; n < n_end; ++n) int4_block_avx2<M, 1>(x, q, s, sz, xs, y, n_total, k_total, gs, n);
  } else {
    int4_rows_scalar(x, q, s, sz, xs, y, M, n_total, k_total, gs, n_begin, n_end);
  }
}

// Output channels per parallel task: enough work to amortise the task, small enough to balance threads.
constexpr int64_t kGrain = 16;

void check_x(const torch::Tensor& x, int64_t k_total) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat32, "x must be a float32 CPU tensor");
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), "x must be a contiguous [M, K] matrix");
  TORCH_CHECK(x.size(0) >= 1 && x.size(0) <= kMaxRows, "x must have 1 to 8 rows");
  TORCH_CHECK(x.size(1) == k_total, "x has ", x.size(1), " columns, the weight ", k_total);
}

}  // namespace

torch::Tensor int8_matmul(const torch::Tensor& x, const torch::Tensor& qweight, const torch::Tensor& scales) {
  TORCH_CHECK(qweight.scalar_type() == torch::kInt8 && qweight.dim() == 2 && qweight.is_contiguous(),
              "qweight must be a contiguous int8 [N, K] matrix");
  const int64_t n_total = qweight.size(0), k_total = qweight.size(1);
  TORCH_CHECK(scales.scalar_type() == torch::kFloat32 && scales.numel() == n_total && scales.is_contiguous(),
              "scales must be float32 [N]");
  check_x(x, k_total);
  const int64_t m_rows = x.size(0);
  auto y = torch::empty({m_rows, n_total}, x.options());
  const float* xp = x.data_ptr<float>();
  const int8_t* qp = qweight.data_ptr<int8_t>();
  const float* sp = scales.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const Isa isa = active_isa();
  at::parallel_for(0, n_total, kGrain, [&](int64_t begin, int64_t end) {
    switch (m_rows) {
      case 1: int8_rows<1>(isa, xp, qp, sp, yp, n_total, k_total, begin, end); break;
      case 2: int8_rows<2>(isa, xp, qp, sp, yp, n_total, k_total, begin, end); break;
      case 3: int8_rows<3>(isa, xp, qp, sp, yp, n_total, k_total, begin, end); break;
      case 4: int8_rows<4>(isa, xp, qp, sp, yp, n_total, k_total, begin, end); break;
      case 5: int8_rows<5>(isa, xp, qp, sp, yp, n_total, k_total, begin, end); break;
      case 6: int8_rows<6>(isa, xp, qp, sp, yp, n_total, k_total, begin, end); break;
      case 7: int8_rows<7>(isa, xp, qp, sp, yp, n_total, k_total, begin, end); break;
      default: int8_rows<8>(isa, xp, qp, sp, yp, n_total, k_total, begin, end); break;
    }
  });
  return y;
}

torch::Tensor int4_matmul(const torch::Tensor& x, const torch::Tensor& qweight, const torch::Tensor& scales,
                          const torch::Tensor& szeros, int64_t group_size) {
  TORCH_CHECK(qweight.scalar_type() == torch::kUInt8 && qweight.dim() == 2 && qweight.is_contiguous(),
              "qweight must be a contiguous uint8 [N, K/2] matrix");
  const int64_t n_total = qweight.size(0), k_total = qweight.size(1) * 2;
  TORCH_CHECK(group_size % 32 == 0 && k_total % group_size == 0, "group_size must be a multiple of 32 dividing K");
  const int64_t groups = k_total / group_size;
  for (const auto* t : {&scales, &szeros}) {
    TORCH_CHECK(t->scalar_type() == torch::kFloat32 && t->is_contiguous() && t->numel() == n_total * groups,
                "scales and szeros must be contiguous float32 [N, K / group_size]");
  }
  check_x(x, k_total);
  const int64_t m_rows = x.size(0);
  const Isa isa = active_isa();
  // Per-group sums of x: the zero-point term of every output channel (the AVX-512 look-up needs none).
  torch::Tensor xsums;
  if (isa != Isa::kAvx512) xsums = x.view({m_rows, groups, group_size}).sum(-1).contiguous();
  auto y = torch::empty({m_rows, n_total}, x.options());
  const float* xp = x.data_ptr<float>();
  const uint8_t* qp = qweight.data_ptr<uint8_t>();
  const float* sp = scales.data_ptr<float>();
  const float* zp = szeros.data_ptr<float>();
  const float* xsp = xsums.defined() ? xsums.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, n_total, kGrain, [&](int64_t begin, int64_t end) {
    switch (m_rows) {
      case 1: int4_rows<1>(isa, xp, qp, sp, zp, xsp, yp, n_total, k_total, group_size, begin, end); break;
      case 2: int4_rows<2>(isa, xp, qp, sp, zp, xsp, yp, n_total, k_total, group_size, begin, end); break;
      case 3: int4_rows<3>(isa, xp, qp, sp, zp, xsp, yp, n_total, k_total, group_size, begin, end); break;
      case 4: int4_rows<4>(isa, xp, qp, sp, zp, xsp, yp, n_total, k_total, group_size, begin, end); break;
      case 5: int4_rows<5>(isa, xp, qp, sp, zp, xsp, yp, n_total, k_total, group_size, begin, end); break;
      case 6: int4_rows<6>(isa, xp, qp, sp, zp, xsp, yp, n_total, k_total, group_size, begin, end); break;
      case 7: int4_rows<7>(isa, xp, qp, sp, zp, xsp, yp, n_total, k_total, group_size, begin, end); break;
      default: int4_rows<8>(isa, xp, qp, sp, zp, xsp, yp, n_total, k_total, group_size, begin, end); break;
    }
  });
  return y;
}

std::string isa_name() {
  switch (active_isa()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "scalar";
  }
}

// Force an instruction set ("avx512", "avx2", "scalar") for tests; returns the one now active.
std::string set_isa(const std::string& name) {
  const Isa best = detect_isa();
  if (name == "scalar") {
    active_isa() = Isa::kScalar;
  } else if (name == "avx2") {
    TORCH_CHECK(best != Isa::kScalar, "this CPU has no AVX2+FMA");
    active_isa() = Isa::kAvx2;
  } else if (name == "avx512") {
    TORCH_CHECK(best == Isa::kAvx512, "this CPU has no AVX-512F");
    active_isa() = Isa::kAvx512;
  } else {
    TORCH_CHECK(name == "auto", "unknown instruction set ", name);
    active_isa() = best;
  }
  return isa_name();
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("int8_matmul", &int8_matmul, "x[M,K] @ (int8 W[N,K] * scales[N])^T for M <= 8");
  m.def("int4_matmul", &int4_matmul, "x[M,K] @ dequant(int4 W[N,K/2], scales, szeros)^T for M <= 8");
  m.def("isa", &isa_name, "the instruction set in use");
  m.def("set_isa", &set_isa, "force avx512 / avx2 / scalar / auto");
}
