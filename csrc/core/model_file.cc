// Reader of .pyrt model files (docs/format.md). Everything read from the file is untrusted: each
// field is range-checked with overflow-safe arithmetic before it is used to form a pointer.
#include "pyrt/model_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_set>
#include <utility>

#include "pyrt/errors.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .pyrt reader assumes a little-endian host (the file is little-endian)"
#endif

namespace pyrt {
namespace {

namespace mf = model_file;

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_add_overflow(a, b, out); }

// [offset, offset + size) lies inside a file of `file_size` bytes.
bool region_fits(uint64_t offset, uint64_t size, uint64_t file_size) {
  uint64_t end;
  return !add_overflows(offset, size, &end) && end <= file_size;
}

bool valid_utf8(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = s[i];
    int extra;
    uint32_t cp;
    if (c == 0) return false;  // NUL would truncate names in C APIs
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) extra = 1, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) extra = 2, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) extra = 3, cp = c & 0x07;
    else return false;
    if (i + extra >= n) return false;
    for (int k = 1; k <= extra; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8 (Python would refuse them).
    static const uint32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

struct Header {
  uint16_t version_major, version_minor;
  uint32_t header_bytes, alignment;
  uint64_t required_features, file_size, entry_count;
  uint64_t table_offset, table_bytes, metadata_offset, metadata_bytes;
  uint32_t table_crc, metadata_crc, header_crc;
};

Header read_header(const uint8_t* data, uint64_t size) {
  // A prefix of the magic is a cut-off pyrt file; anything else is not a pyrt file at all.
  const uint64_t magic_seen = std::min<uint64_t>(size, sizeof(mf::kMagic));
  PYRT_CHECK(std::memcmp(data, mf::kMagic, size_t(magic_seen)) == 0, Format,
             "not a pyrt model file (wrong magic bytes)");
  PYRT_CHECK(size >= mf::kHeaderBytes, Truncated, "file is truncated: ", size,
             " bytes, shorter than the ", mf::kHeaderBytes, "-byte header");
  const uint32_t bom = load<uint32_t>(data + 8);
  PYRT_CHECK(bom == mf::kByteOrderMark, Format, "byte-order mark is 0x", std::hex, bom,
             " instead of 0x01020304: the file was not written little-endian or is corrupt");
  Header h{};
  h.version_major = load<uint16_t>(data + 12);
  h.version_minor = load<uint16_t>(data + 14);
  // The version is checked before the header checksum: a future major version may move it.
  PYRT_CHECK(h.version_major <= mf::kVersionMajor, Version, "file format version ", h.version_major, ".",
             h.version_minor, " is newer than this reader supports (", mf::kVersionMajor,
             ".x); upgrade pyrt");
  PYRT_CHECK(h.version_major >= 1, Format, "invalid file format version 0.", h.version_minor);
  h.header_crc = load<uint32_t>(data + 124);
  const uint32_t actual_crc = crc32(data, 124);
  PYRT_CHECK(actual_crc == h.header_crc, Checksum, "header checksum mismatch (stored 0x", std::hex,
             h.header_crc, ", computed 0x", actual_crc, "): the file is corrupt");
  h.header_bytes = load<uint32_t>(data + 16);
  h.alignment = load<uint32_t>(data + 20);
  h.required_features = load<uint64_t>(data + 24);
  h.file_size = load<uint64_t>(data + 32);
  h.entry_count = load<uint64_t>(data + 40);
  h.table_offset = load<uint64_t>(data + 48);
  h.table_bytes = load<uint64_t>(data + 56);
  h.metadata_offset = load<uint64_t>(data + 64);
  h.metadata_bytes = load<uint64_t>(data + 72);
  h.table_crc = load<uint32_t>(data + 80);
  h.metadata_crc = load<uint32_t>(data + 84);
  const uint64_t unknown = h.required_features & ~mf::kKnownFeatures;
  PYRT_CHECK(unknown == 0, Version, "file needs features 0x", std::hex, unknown,
             " that this reader does not know; upgrade pyrt");
  PYRT_CHECK(h.file_size <= size, Truncated, "file is truncated: ", size, " bytes, the header says ",
             h.file_size);
  PYRT_CHECK(h.file_size == size, Format, "file has ", size - h.file_size,
             " unexpected bytes after its stated end (", h.file_size, ")");
  PYRT_CHECK(h.header_bytes >= mf::kHeaderBytes && h.header_bytes <= size, Format, "bad header size ",
             h.header_bytes);
  PYRT_CHECK(h.alignment >= mf::kMinAlignment && h.alignment <= mf::kMaxAlignment &&
                 (h.alignment & (h.alignment - 1)) == 0,
             Format, "bad alignment ", h.alignment, " (a power of two from 64 to 2^20 expected)");
  PYRT_CHECK(region_fits(h.table_offset, h.table_bytes, size), Format, "tensor table [", h.table_offset,
             ", +", h.table_bytes, ") lies outside the file (", size, " bytes)");
  PYRT_CHECK(region_fits(h.metadata_offset, h.metadata_bytes, size), Format, "metadata [",
             h.metadata_offset, ", +", h.metadata_bytes, ") lies outside the file (", size, " bytes)");
  return h;
}

// Bytes of a tensor of `shape` in `format`; throws Format on overflow or on a bad block/shape.
uint64_t tensor_bytes(const std::string& name, Format format, int block, const std::vector<int64_t>& shape) {
  const int64_t K = shape.empty() ? 1 : shape.back();
  uint64_t rows = 1;
  for (size_t d = 0; d + 1 < shape.size(); ++d)
    PYRT_CHECK(!__builtin_mul_overflow(rows, uint64_t(shape[d]), &rows), Format, "tensor '", name,
               "': shape product overflows");
  // Zero-length rows hold no data, but code that walks rows would still loop over them all.
  PYRT_CHECK(K != 0 || rows <= mf::kMaxEmptyRows, Format, "tensor '", name, "' has ", rows,
             " rows of length 0 (at most ", mf::kMaxEmptyRows, " allowed)");
  const FormatTraits& t = format_traits(format);
  PYRT_CHECK(t.blocked ? is_valid_block(block) : block == 1, Format, "tensor '", name, "': block ", block,
             " is invalid for ", t.name);
  PYRT_CHECK(K % block == 0, Format, "tensor '", name, "': last dimension ", K,
             " is not a multiple of the block ", block);
  uint64_t row, total;
  PYRT_CHECK(!__builtin_mul_overflow(uint64_t(K / block), uint64_t(bytes_per_block(format, block)), &row) &&
                 !__builtin_mul_overflow(rows, row, &total),
             Format, "tensor '", name, "': byte size overflows");
  return total;
}

FileEntry read_entry(const uint8_t* p, uint64_t avail, uint64_t index, uint64_t* consumed) {
  PYRT_CHECK(avail >= mf::kEntryFixedBytes, Format, "table entry ", index, " runs past the table");
  const uint32_t entry_bytes = load<uint32_t>(p);
  const uint8_t kind = p[4], format = p[5], ndim = p[6];
  const uint32_t block = load<uint32_t>(p + 8);
  const uint32_t name_bytes = load<uint32_t>(p + 12);
  PYRT_CHECK(ndim <= mf::kMaxDims, Format, "table entry ", index, " has ", int(ndim), " dimensions (max ",
             mf::kMaxDims, ")");
  const uint64_t needed = mf::kEntryFixedBytes + 8ull * ndim + uint64_t(name_bytes);
  PYRT_CHECK(entry_bytes % 8 == 0 && entry_bytes >= needed && entry_bytes <= avail, Format, "table entry ",
             index, " has a bad length ", entry_bytes, " (needs ", needed, ", ", avail, " left in the table)");
  FileEntry e;
  const uint8_t* name = p + mf::kEntryFixedBytes + 8 * ndim;
  PYRT_CHECK(name_bytes > 0 && valid_utf8(name, name_bytes), Format, "table entry ", index,
             " has an empty or invalid UTF-8 name");
  e.name.assign(reinterpret_cast<const char*>(name), name_bytes);
  e.kind = static_cast<EntryKind>(kind);
  e.offset = load<uint64_t>(p + 16);
  e.size = load<uint64_t>(p + 24);
  e.crc32 = load<uint32_t>(p + 32);
  if (e.kind == EntryKind::tensor) {
    PYRT_CHECK(format < kNumFormats, Version, "tensor '", e.name, "' uses format id ", int(format),
               ", unknown to this reader (written by a newer pyrt?)");
    e.format = static_cast<Format>(format);
    e.block = int(std::min<uint32_t>(block, 1u << 30));
    for (int d = 0; d < ndim; ++d) {
      const uint64_t dim = load<uint64_t>(p + mf::kEntryFixedBytes + 8 * d);
      PYRT_CHECK(dim <= uint64_t(INT64_MAX), Format, "tensor '", e.name, "' has a negative dimension");
      e.shape.push_back(int64_t(dim));
    }
    const uint64_t expected = tensor_bytes(e.name, e.format, e.block, e.shape);
    PYRT_CHECK(e.size == expected, Format, "tensor '", e.name, "' has ", e.size, " bytes, its shape and ",
               format_traits(e.format).name, " need ", expected);
  } else {
    e.shape = {int64_t(std::min<uint64_t>(e.size, uint64_t(INT64_MAX)))};
  }
  *consumed = entry_bytes;
  return e;
}

struct Region {
  uint64_t begin, end;
  std::string what;
};

void check_no_overlap(std::vector<Region> regions) {
  regions.erase(std::remove_if(regions.begin(), regions.end(), [](const Region& r) { return r.begin == r.end; }),
                regions.end());
  std::sort(regions.begin(), regions.end(), [](const Region& a, const Region& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < regions.size(); ++i)
    PYRT_CHECK(regions[i].begin >= regions[i - 1].end, Format, regions[i - 1].what, " [", regions[i - 1].begin,
               ", ", regions[i - 1].end, ") overlaps ", regions[i].what, " [", regions[i].begin, ", ",
               regions[i].end, ")");
}

}  // namespace

ModelFileInfo parse_model_file(const uint8_t* data, uint64_t size) {
  PYRT_CHECK(size > 0, Truncated, "file is empty");
  const Header h = read_header(data, size);
  const uint32_t table_crc = crc32(data + h.table_offset, size_t(h.table_bytes));
  PYRT_CHECK(table_crc == h.table_crc, Checksum, "tensor table checksum mismatch: the file is corrupt");
  const uint32_t meta_crc = crc32(data + h.metadata_offset, size_t(h.metadata_bytes));
  PYRT_CHECK(meta_crc == h.metadata_crc, Checksum, "metadata checksum mismatch: the file is corrupt");
  // Each entry takes at least kEntryFixedBytes: bound the count before reserving memory for it.
  PYRT_CHECK(h.entry_count <= h.table_bytes / mf::kEntryFixedBytes, Format, "entry count ", h.entry_count,
             " does not fit a ", h.table_bytes, "-byte table");

  ModelFileInfo info;
  info.version_major = h.version_major;
  info.version_minor = h.version_minor;
  info.alignment = h.alignment;
  info.file_size = h.file_size;
  info.metadata_offset = h.metadata_offset;
  info.metadata_size = h.metadata_bytes;
  info.entries.reserve(size_t(h.entry_count));

  std::vector<Region> regions = {{0, h.header_bytes, "header"},
                                 {h.table_offset, h.table_offset + h.table_bytes, "tensor table"},
                                 {h.metadata_offset, h.metadata_offset + h.metadata_bytes, "metadata"}};
  std::unordered_set<std::string> names[2];
  uint64_t pos = 0;
  for (uint64_t i = 0; i < h.entry_count; ++i) {
    uint64_t consumed = 0;
    FileEntry e = read_entry(data + h.table_offset + pos, h.table_bytes - pos, i, &consumed);
    pos += consumed;
    PYRT_CHECK(e.offset % h.alignment == 0, Format, "entry '", e.name, "' at offset ", e.offset,
               " is not aligned to ", h.alignment, " bytes");
    PYRT_CHECK(region_fits(e.offset, e.size, size), Format, "entry '", e.name, "' [", e.offset, ", +", e.size,
               ") lies outside the file (", size, " bytes)");
    const uint8_t kind = static_cast<uint8_t>(e.kind);
    if (kind < 2)
      PYRT_CHECK(names[kind].insert(e.name).second, Format, "duplicate ", kind == 0 ? "tensor" : "file",
                 " name '", e.name, "'");
    if (e.size > 0) regions.push_back({e.offset, e.offset + e.size, "entry '" + e.name + "'"});
    info.entries.push_back(std::move(e));
  }
  check_no_overlap(std::move(regions));
  return info;
}

FileMapping::FileMapping(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  PYRT_CHECK(fd >= 0, Io, "cannot open '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    PYRT_THROW(Io, "cannot stat '", path, "': ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    PYRT_THROW(Io, "'", path, "' is not a regular file");
  }
  size_ = uint64_t(st.st_size);
  if (size_ == 0) {  // mmap refuses length 0
    ::close(fd);
    PYRT_THROW(Truncated, "'", path, "' is empty");
  }
  void* p = ::mmap(nullptr, size_t(size_), PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file referenced
  PYRT_CHECK(p != MAP_FAILED, Io, "cannot map '", path, "': ", std::strerror(err));
  data_ = static_cast<const uint8_t*>(p);
}

FileMapping::~FileMapping() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_t(size_));
}

ModelFile::ModelFile(const std::string& path) : path_(path), mapping_(std::make_shared<FileMapping>(path)) {
  try {
    info_ = parse_model_file(mapping_->data(), mapping_->size());
  } catch (const Error& e) {
    throw Error(e.kind(), "'" + path + "': " + e.what());
  }
}

std::string_view ModelFile::metadata_json() const {
  return {reinterpret_cast<const char*>(mapping_->data() + info_.metadata_offset), size_t(info_.metadata_size)};
}

const uint8_t* ModelFile::entry_data(size_t i) const {
  PYRT_CHECK(i < info_.entries.size(), Range, "entry index ", i, " out of range");
  return mapping_->data() + info_.entries[i].offset;
}

void ModelFile::verify_entry(size_t i) const {
  const FileEntry& e = info_.entries.at(i);
  const uint32_t actual = crc32(entry_data(i), size_t(e.size));
  PYRT_CHECK(actual == e.crc32, Checksum, "'", path_, "': checksum mismatch in ",
             e.kind == EntryKind::file ? "file '" : "tensor '", e.name, "' (stored 0x", std::hex, e.crc32,
             ", computed 0x", actual, "): the file is corrupt");
}

void ModelFile::verify_all() const {
  for (size_t i = 0; i < info_.entries.size(); ++i) verify_entry(i);
}

}  // namespace pyrt
