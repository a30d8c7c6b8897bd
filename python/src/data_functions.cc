// keel._C bindings for dynamic data sharding: the master's shard service through
// keel::data::ShardClient, or the same service in-process (keel::master::DataRegistry) when
// there is no master. Both expose one Python interface (used by keel.data.ElasticSampler):
//   register(name, size, shard_size, epochs, shuffle, seed, stream=False)
//   append(dataset, partition, begin, end, last=False) -> records added (streams)
//   next(dataset, worker) -> None (ask again) | "finished"
//                            | (id, epoch, index, offset, begin, end, partition)
//   report(dataset, grant_id, consumed)
//   save_position(dataset, checkpoint, rank, world_size, {grant_id: consumed}, unconsumed,
//                 timeout_s) -> position
//   restore_position(dataset, round, position)
// where a shard ref is (epoch, index, offset, partition, begin, end) (partition "" and begin,
// end 0 for fixed-size datasets) and a position is (epoch, cursor, [ref], [(partition, offset)]).
#include "data_functions.h"

#include <pybind11/stl.h>

#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "keel/data/permutation.h"
#include "keel/data/shard_client.h"
#include "keel/master/data_registry.h"
#include "keel/rpc/channel.h"
#include "status_exception.h"

namespace keel::python {
namespace py = pybind11;
namespace {

// (epoch, index, offset, partition, begin, end)
using RefTuple = std::tuple<int64_t, uint64_t, uint64_t, std::string, uint64_t, uint64_t>;
using RefList = std::vector<RefTuple>;
using PartitionList = std::vector<std::pair<std::string, uint64_t>>;
using PositionTuple = std::tuple<int64_t, uint64_t, RefList, PartitionList>;

std::vector<data::ShardRef> Refs(const RefList& list) {
  std::vector<data::ShardRef> out;
  out.reserve(list.size());
  for (const auto& [e, i, o, p, b, end] : list) {
    out.push_back({.epoch = e, .index = i, .offset = o, .partition = p, .begin = b, .end = end});
  }
  return out;
}

data::DatasetSpec Spec(const std::string& name, uint64_t size, uint64_t shard_size, int64_t epochs,
                       bool shuffle, uint64_t seed, bool stream) {
  return {.name = name,
          .size = size,
          .shard_size = shard_size,
          .epochs = epochs,
          .shuffle = shuffle,
          .seed = seed,
          .stream = stream};
}

py::object GrantObject(const std::optional<data::Grant>& g, bool finished) {
  if (!g) return finished ? py::object(py::str("finished")) : py::object(py::none());
  return py::make_tuple(g->id, g->shard.epoch, g->shard.index, g->shard.offset, g->begin, g->end,
                        g->shard.partition);
}

PositionTuple ToTuple(const data::Position& p) {
  RefList pending;
  pending.reserve(p.pending.size());
  for (const data::ShardRef& r : p.pending) {
    pending.emplace_back(r.epoch, r.index, r.offset, r.partition, r.begin, r.end);
  }
  PartitionList partitions;
  for (const data::PartitionOffset& o : p.partitions)
    partitions.emplace_back(o.partition, o.offset);
  return {p.epoch, p.cursor, std::move(pending), std::move(partitions)};
}

data::Position FromTuple(const PositionTuple& t) {
  data::Position p{
      .epoch = std::get<0>(t), .cursor = std::get<1>(t), .pending = Refs(std::get<2>(t))};
  for (const auto& [name, offset] : std::get<3>(t)) p.partitions.push_back({name, offset});
  return p;
}

// The master's shard service over gRPC.
class RemoteShards {
 public:
  RemoteShards(const std::string& target, const std::string& token, const std::string& ca,
               const std::string& cert, const std::string& key) {
    channel_ = ValueOrThrow(
        rpc::Channel::Create({.target = target,
                              .token = token,
                              .tls = {.cert_file = cert, .key_file = key, .ca_file = ca}}));
    client_ = std::make_unique<data::ShardClient>(channel_.get());
  }
  void Register(const data::DatasetSpec& spec) {
    py::gil_scoped_release release;
    Status s = client_->Register(spec);
    py::gil_scoped_acquire acquire;
    ThrowIfError(s);
  }
  uint64_t Append(const std::string& dataset, const std::string& partition, uint64_t begin,
                  uint64_t end, bool last) {
    StatusOr<uint64_t> added = [&] {
      py::gil_scoped_release release;
      return client_->Append(dataset, partition, begin, end, last);
    }();
    return ValueOrThrow(std::move(added));
  }
  py::object Next(const std::string& dataset, const std::string& worker) {
    bool finished = false;
    StatusOr<std::optional<data::Grant>> g = [&] {
      py::gil_scoped_release release;
      return client_->Next(dataset, worker, &finished);
    }();
    return GrantObject(ValueOrThrow(std::move(g)), finished);
  }
  void Report(const std::string& dataset, uint64_t id, uint64_t consumed) {
    Status s = [&] {
      py::gil_scoped_release release;
      return client_->Report(dataset, id, consumed);
    }();
    ThrowIfError(s);
  }
  PositionTuple Save(const std::string& dataset, int64_t checkpoint, int rank, int world,
                     const std::map<uint64_t, uint64_t>& consumed, const RefList& unconsumed,
                     double timeout_s) {
    StatusOr<data::Position> p = [&] {
      py::gil_scoped_release release;
      return client_->SavePosition(
          dataset, checkpoint, rank, world, consumed,
          std::chrono::duration_cast<Duration>(std::chrono::duration<double>(timeout_s)),
          Refs(unconsumed));
    }();
    return ToTuple(ValueOrThrow(std::move(p)));
  }
  void Restore(const std::string& dataset, int64_t round, const PositionTuple& position) {
    Status s = [&] {
      py::gil_scoped_release release;
      return client_->RestorePosition(dataset, round, FromTuple(position));
    }();
    ThrowIfError(s);
  }

 private:
  std::unique_ptr<rpc::Channel> channel_;
  std::unique_ptr<data::ShardClient> client_;
};

// The same service in this process, for training outside keel run (one process).
class LocalShards {
 public:
  void Register(const data::DatasetSpec& spec) { ThrowIfError(registry_.Register(spec)); }
  uint64_t Append(const std::string& dataset, const std::string& partition, uint64_t begin,
                  uint64_t end, bool last) {
    return ValueOrThrow(registry_.Append(dataset, partition, begin, end, last));
  }
  py::object Next(const std::string& dataset, const std::string& worker) {
    bool finished = false;
    auto g = ValueOrThrow(registry_.Next(dataset, worker, Clock::Real()->Now(), &finished));
    return GrantObject(g, finished);
  }
  void Report(const std::string& dataset, uint64_t id, uint64_t consumed) {
    ThrowIfError(registry_.Report(dataset, id, consumed));
  }
  PositionTuple Save(const std::string& dataset, int64_t checkpoint, int rank, int world,
                     const std::map<uint64_t, uint64_t>& consumed, const RefList& unconsumed,
                     double) {
    if (world != 1) {
      ThrowIfError(FailedPreconditionError(
          "the in-process shard service serves one process; run under `keel run` for more"));
    }
    auto p = ValueOrThrow(
        registry_.AddConsumption(dataset, checkpoint, rank, world, consumed, Refs(unconsumed)));
    return ToTuple(*p);  // a world of one: complete at once
  }
  void Restore(const std::string& dataset, int64_t round, const PositionTuple& position) {
    ThrowIfError(registry_.Restore(dataset, round, FromTuple(position)));
  }

 private:
  master::DataRegistry registry_;
};

template <typename T>
py::class_<T> BindService(py::module_& m, const char* name, const char* doc) {
  py::class_<T> c(m, name, doc);
  c.def(
       "register",
       [](T& s, const std::string& name, uint64_t size, uint64_t shard_size, int64_t epochs,
          bool shuffle, uint64_t seed,
          bool stream) { s.Register(Spec(name, size, shard_size, epochs, shuffle, seed, stream)); },
       py::arg("name"), py::arg("size"), py::arg("shard_size"), py::arg("epochs"),
       py::arg("shuffle"), py::arg("seed"), py::arg("stream") = false)
      .def("append", &T::Append, py::arg("dataset"), py::arg("partition"), py::arg("begin"),
           py::arg("end"), py::arg("last") = false)
      .def("next", &T::Next, py::arg("dataset"), py::arg("worker"))
      .def("report", &T::Report, py::arg("dataset"), py::arg("grant_id"), py::arg("consumed"))
      .def("save_position", &T::Save, py::arg("dataset"), py::arg("checkpoint"), py::arg("rank"),
           py::arg("world_size"), py::arg("consumed"), py::arg("unconsumed") = RefList{},
           py::arg("timeout_s") = 600.0)
      .def("restore_position", &T::Restore, py::arg("dataset"), py::arg("round"),
           py::arg("position"));
  return c;
}

}  // namespace

void BindDataFunctions(py::module_& m) {
  py::class_<data::IndexPermutation>(m, "IndexPermutation",
                                     "A seeded bijection of [0, n) (keel/data/permutation.h).")
      .def(py::init<uint64_t, uint64_t, bool>(), py::arg("n"), py::arg("seed"),
           py::arg("shuffle") = true)
      .def("at", &data::IndexPermutation::At, py::arg("i"))
      .def(
          "range",
          [](const data::IndexPermutation& p, uint64_t begin, uint64_t end) {
            if (end > p.size() || begin > end) {
              ThrowIfError(InvalidArgumentError("range outside the permutation"));
            }
            std::vector<uint64_t> out;
            out.reserve(end - begin);
            for (uint64_t i = begin; i < end; ++i) out.push_back(p.At(i));
            return out;
          },
          py::arg("begin"), py::arg("end"), "[at(i) for i in range(begin, end)]");
  BindService<RemoteShards>(m, "RemoteShards", "The master's shard service (gRPC).")
      .def(py::init<const std::string&, const std::string&, const std::string&, const std::string&,
                    const std::string&>(),
           py::arg("target"), py::arg("token"), py::arg("ca") = "", py::arg("cert") = "",
           py::arg("key") = "",
           "TLS when any of ca, cert, key (PEM file paths) is given; cert and key together.");
  BindService<LocalShards>(m, "LocalShards", "The shard service in this process.")
      .def(py::init<>());
}

}  // namespace keel::python
