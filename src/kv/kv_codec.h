// How one K or V row is encoded: float rows as they are, integer rows as codes with an fp16
// scale per group of channels (and an fp16 minimum when asymmetric). A row is self-contained:
//   [codes: head_dim x bits / 8 bytes][per group: scale (fp16), minimum (fp16, asymmetric only)]
// Codes of 4 and 2 bits are packed little-endian: value i of a row is bits [b*i, b*i + b) of
// the codes read as one little-endian integer.
//   symmetric:  x = scale * c, c signed in [-qmax, qmax] (qmax = 127, 7, 1; int4/int2 store
//               c + 2^(b-1) unsigned), scale = max|x| / qmax;
//   asymmetric: x = min + scale * u, u in [0, 2^b - 1], scale = (max - min) / (2^b - 1).
// The scale and minimum are rounded to fp16 before the codes are chosen, so decoding with the
// stored values gives the nearest grid point: |x - x'| <= scale / 2 per element.
#pragma once

#include <cstdint>
#include <string>

#include "kv/kv_layout.h"

namespace kvscope {

// Per-channel codecs (axis Channel, KIVI's keys) quantize each channel over a block of `group`
// consecutive tokens: the block's rows hold only codes (head_dim x bits / 8 bytes each), and
// the block's scales sit apart, per channel: [scale fp16 x head_dim][minimum fp16 x head_dim]
// (the minima only when asymmetric). Blocks start at the sequence's first token after the
// sinks; a block is encoded once its last token is written, from its rows in fp16.

// Parses --kv-dtype/--k-dtype/--v-dtype values: fp32, fp16, bf16, int8, int4, int2, with
// optional "-gN" (channels per scale: 0 the whole row, else a multiple of 8) or "-cN" (per
// channel over blocks of N tokens, N 8 to 1024 a multiple of 8), and "-sym" or "-asym".
// Defaults: int8 symmetric over the row; int4 and int2 asymmetric in groups of 32.
// Throws a one-line error naming `flag` on anything else.
KvCodec parse_kv_codec(const std::string& s, const std::string& flag);
std::string kv_codec_name(const KvCodec& c);
// One name for both: the codec's when K and V agree, else "k=<K codec>/v=<V codec>".
std::string kv_format_name(const KvFormat& f);
// --kv-dtype (both) with --k-dtype / --v-dtype overriding one side; empty strings are unset,
// and an unset --kv-dtype is fp32. "int4-kivi" (int8, int2 alike) is KIVI's scheme: keys
// per channel in blocks of 32 tokens, values per token in groups of 32 channels, both
// asymmetric. residual and sinks: --kv-residual and --kv-sinks (fp16 rows; they need an
// integer side). Values are never per channel.
KvFormat parse_kv_format(const std::string& kv, const std::string& k, const std::string& v, int residual = 0,
                         int sinks = 0);
// One list entry of --kv-dtypes: "<codec>" for both, "<K codec>/<V codec>", either with
// "+rN" (residual window) and "+sN" (sinks) appended, e.g. int4-kivi+r128+s4.
KvFormat parse_kv_format_spec(const std::string& s, const std::string& flag);
int kv_codec_bits(const KvCodec& c);

// A codec fitted to a head size: the group clamped to head_dim (a group larger than the row
// is the row). Fails with a one-line error when head_dim is not a multiple of the group or
// of 8 for an integer codec.
KvCodec kv_codec_for(const KvCodec& c, int head_dim, const std::string& flag);

// Whole bytes of one encoded row of head_dim values: codes and scales for token axis codecs,
// codes only for channel axis codecs, values for floats.
int64_t kv_row_stride(const KvCodec& c, int head_dim);
// Channel codecs: blocks of scales for n_slots rows, and the bytes of one block's scales.
int64_t kv_channel_blocks(const KvCodec& c, int n_slots);
int64_t kv_channel_meta_bytes(const KvCodec& c, int head_dim);

// Encodes head_dim floats into one row (kv_row_stride bytes). Integer codecs refuse NaN and
// Inf with a one-line error (a non-finite key has no scale); float codecs store them.
void kv_encode_row(const KvCodec& c, int head_dim, const float* x, uint8_t* row);
// Decodes one row into head_dim floats (the scalar reference of what attention reads).
void kv_decode_row(const KvCodec& c, int head_dim, const uint8_t* row, float* x);

// Channel codecs: encodes a block of c.group rows x (head_dim floats, `x_stride` apart) into
// c.group code rows (kv_row_stride bytes each, `row_stride` apart) and one block of scales;
// decodes row r of a block. Non-finite input is refused as by kv_encode_row.
void kv_encode_block(const KvCodec& c, int head_dim, const float* x, int64_t x_stride, uint8_t* rows,
                     int64_t row_stride, uint8_t* meta);
void kv_decode_block_row(const KvCodec& c, int head_dim, const uint8_t* row, const uint8_t* meta, float* x);

}  // namespace kvscope
