// The .pyrt model file (spec: docs/format.md): a fixed little-endian header, a binary entry table
// and a JSON metadata blob, with every tensor and carried file aligned for mmap and SIMD.
//
// ModelFile maps the file read-only and checks every offset, size and shape product against the
// file before anything is handed out, so a corrupt or hostile file raises a typed pyrt::Error
// (Truncated, Format, Version, Checksum, Io) instead of reading out of bounds. Only the header,
// table and metadata pages are touched when opening; tensor pages are read when used or verified.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pyrt/formats.h"

namespace pyrt {

namespace model_file {
// "\x89PYRT\r\n\x1a": the high byte catches 7-bit transfers, CR LF catches newline translation,
// 0x1a stops `type` on Windows (the same reasoning as PNG's signature).
constexpr uint8_t kMagic[8] = {0x89, 'P', 'Y', 'R', 'T', '\r', '\n', 0x1a};
constexpr uint32_t kByteOrderMark = 0x01020304u;  // stored little-endian: 04 03 02 01
constexpr uint16_t kVersionMajor = 1;              // incompatible layout changes
constexpr uint16_t kVersionMinor = 0;              // compatible additions (readers ignore them)
constexpr uint64_t kHeaderBytes = 128;
constexpr uint64_t kEntryFixedBytes = 48;           // an entry before its shape and name
constexpr uint32_t kMinAlignment = 64;
constexpr uint32_t kMaxAlignment = 1u << 20;
constexpr int kMaxDims = 8;
constexpr uint64_t kMaxEmptyRows = 1u << 20;  // rows of a tensor whose last dimension is 0
constexpr uint64_t kKnownFeatures = 0;  // required-feature bits this reader understands
}  // namespace model_file

enum class EntryKind : uint8_t { tensor = 0, file = 1 };

struct FileEntry {
  std::string name;            // UTF-8, unique within its kind
  EntryKind kind = EntryKind::tensor;
  Format format = Format::f32;  // tensors only
  int block = 1;                // 1 for plain formats
  std::vector<int64_t> shape;   // tensors only; files: {size}
  uint64_t offset = 0;          // absolute, a multiple of the file's alignment
  uint64_t size = 0;            // bytes
  uint32_t crc32 = 0;           // CRC-32 (zlib polynomial) of the bytes
};

// A read-only mapping of a whole file; unmapped when the last owner lets go.
class FileMapping {
 public:
  explicit FileMapping(const std::string& path);  // throws Io / Truncated (empty file)
  ~FileMapping();
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

struct ModelFileInfo {
  uint16_t version_major = 0;
  uint16_t version_minor = 0;
  uint32_t alignment = 0;
  uint64_t file_size = 0;
  std::vector<FileEntry> entries;  // in table order
  uint64_t metadata_offset = 0;
  uint64_t metadata_size = 0;
};

// Validates the structure of a complete file image (header, table, metadata checksum, bounds,
// alignment, overlaps, shapes). Does not read tensor bytes. Throws pyrt::Error.
ModelFileInfo parse_model_file(const uint8_t* data, uint64_t size);

class ModelFile {
 public:
  explicit ModelFile(const std::string& path);
  const std::string& path() const { return path_; }
  const ModelFileInfo& info() const { return info_; }
  std::string_view metadata_json() const;
  const uint8_t* entry_data(size_t i) const;  // inside the mapping; bounds were checked at open
  // Recomputes the CRC-32 of one entry (or all); throws Checksum naming the entry on mismatch.
  void verify_entry(size_t i) const;
  void verify_all() const;
  // Shared so that views handed out (numpy arrays) keep the mapping alive after close.
  const std::shared_ptr<FileMapping>& mapping() const { return mapping_; }

 private:
  std::string path_;
  std::shared_ptr<FileMapping> mapping_;
  ModelFileInfo info_;
};

// CRC-32 with the zlib/PNG polynomial (reflected 0xEDB88320), equal to Python's zlib.crc32.
uint32_t crc32(const void* data, size_t n, uint32_t crc = 0);

}  // namespace pyrt
