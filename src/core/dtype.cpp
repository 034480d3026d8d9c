#include "core/dtype.h"

namespace kvscope {

bool parse_dtype(std::string_view s, DType* out) {
    if (s == "fp32" || s == "float32" || s == "f32") { *out = DType::F32; return true; }
    if (s == "fp16" || s == "float16" || s == "f16" || s == "half") { *out = DType::F16; return true; }
    if (s == "bf16" || s == "bfloat16") { *out = DType::BF16; return true; }
    if (s == "int8" || s == "i8" || s == "q8") { *out = DType::I8; return true; }
    if (s == "int4" || s == "i4" || s == "q4") { *out = DType::I4; return true; }
    if (s == "int2" || s == "i2" || s == "q2") { *out = DType::I2; return true; }
    if (s == "fp8" || s == "f8" || s == "e4m3") { *out = DType::F8; return true; }
    return false;
}

}  // namespace kvscope
