// keel._C: the Python extension module. Thin bindings over keel's C++ libraries; each area
// registers its functions from its own file.
#include <pybind11/pybind11.h>

#include "ckpt_functions.h"
#include "data_functions.h"
#include "embed_functions.h"
#include "infer_functions.h"
#include "keel/common/build_info.h"
#include "keel/common/logging.h"
#include "optim_functions.h"
#include "status_exception.h"
#include "tensor_functions.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "keel's C++ core (tensors cross through DLPack without copies)";
  m.attr("__version__") = keel::build_info::kVersion;
  py::dict info;
  info["version"] = keel::build_info::kVersion;
  info["commit"] = keel::build_info::kGitCommit;
  info["build_type"] = keel::build_info::kBuildType;
  info["with_cuda"] = keel::build_info::kWithCuda;
  m.attr("build_info") = info;
  m.def(
      "set_log_level",
      [](const std::string& level) {
        keel::log::SetLevel(keel::python::ValueOrThrow(keel::log::ParseLevel(level)));
      },
      py::arg("level"), "Sets the level of keel's C++ log (trace, debug, info, warn, error, off).");
  keel::python::BindTensorFunctions(m);
  keel::python::BindCkptFunctions(m);
  keel::python::BindDataFunctions(m);
  keel::python::BindOptimFunctions(m);
  keel::python::BindInferFunctions(m);
  keel::python::BindEmbedFunctions(m);
}
