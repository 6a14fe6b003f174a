// .pyrt model files: the mmap reader exposed to pyrt/model.py. Tensor bytes are handed out as
// read-only numpy views of the mapping; each view owns a reference to it, so the mapping outlives
// ModelFile.close() for as long as any view is alive (no dangling pointers, no copies).
#include <pybind11/stl.h>

#include <memory>

#include "bindings/bindings.h"
#include "pyrt/model_file.h"

namespace pyrt::bindings {
namespace {

class PyModelFile {
 public:
  explicit PyModelFile(const std::string& path) {
    py::gil_scoped_release release;
    file_ = std::make_shared<ModelFile>(path);
  }

  // A counted reference: code that releases the GIL keeps the file alive even if another thread
  // calls close() meanwhile.
  std::shared_ptr<const ModelFile> handle() const {
    PYRT_CHECK(file_ != nullptr, Io, "the model file is closed");
    return file_;
  }
  const ModelFile& file() const { return *handle(); }

  void close() { file_.reset(); }

  py::array entry_array(size_t i) const {
    const ModelFile& f = file();
    PYRT_CHECK(i < f.info().entries.size(), Range, "entry index ", i, " out of range");
    auto* owner = new std::shared_ptr<FileMapping>(f.mapping());
    py::capsule base(owner, [](void* p) { delete static_cast<std::shared_ptr<FileMapping>*>(p); });
    const auto n = py::ssize_t(f.info().entries[i].size);
    py::array_t<uint8_t> out({n}, {py::ssize_t(1)}, f.entry_data(i), base);
    py::detail::array_proxy(out.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    return std::move(out);
  }

  py::list entries() const {
    py::list out;
    for (const FileEntry& e : file().info().entries) {
      py::dict d;
      d["name"] = e.name;
      const auto kind = static_cast<int>(e.kind);
      d["kind"] = kind == 0 ? py::str("tensor") : kind == 1 ? py::str("file") : py::str("unknown");
      d["format"] = e.kind == EntryKind::tensor ? format_traits(e.format).name : "";
      d["block"] = e.block;
      d["shape"] = py::tuple(py::cast(e.shape));
      d["offset"] = e.offset;
      d["size"] = e.size;
      d["crc32"] = e.crc32;
      out.append(d);
    }
    return out;
  }

 private:
  std::shared_ptr<const ModelFile> file_;
};

}  // namespace

void register_file(py::module_& m) {
  py::class_<PyModelFile>(m, "ModelFile")
      .def(py::init<const std::string&>(), py::arg("path"))
      .def_property_readonly("path", [](const PyModelFile& f) { return f.file().path(); })
      .def_property_readonly("version", [](const PyModelFile& f) {
        return py::make_tuple(f.file().info().version_major, f.file().info().version_minor);
      })
      .def_property_readonly("alignment", [](const PyModelFile& f) { return f.file().info().alignment; })
      .def_property_readonly("file_size", [](const PyModelFile& f) { return f.file().info().file_size; })
      .def_property_readonly("metadata_json", [](const PyModelFile& f) { return py::bytes(f.file().metadata_json()); })
      .def_property_readonly("entries", &PyModelFile::entries)
      .def_property_readonly("closed", [](const PyModelFile& f) {
        try { f.handle(); } catch (const Error&) { return true; }
        return false;
      })
      .def("entry_array", &PyModelFile::entry_array, py::arg("index"))
      .def("verify_entry", [](const PyModelFile& f, size_t i) {
        const auto file = f.handle();
        py::gil_scoped_release release;
        file->verify_entry(i);
      }, py::arg("index"))
      .def("verify_all", [](const PyModelFile& f) {
        const auto file = f.handle();
        py::gil_scoped_release release;
        file->verify_all();
      })
      .def("close", &PyModelFile::close);
  // Any C-contiguous bytes-like object (PyBUF_SIMPLE refuses strided ones with BufferError).
  m.def("crc32", [](const py::object& data, uint32_t value) {
    Py_buffer view;
    if (PyObject_GetBuffer(data.ptr(), &view, PyBUF_SIMPLE) != 0) throw py::error_already_set();
    uint32_t out;
    {
      py::gil_scoped_release release;
      out = crc32(view.buf, size_t(view.len), value);
    }
    PyBuffer_Release(&view);
    return out;
  }, py::arg("data"), py::arg("value") = 0);
}

}  // namespace pyrt::bindings
