// Conversions between the shard service's C++ types (keel/data/shard_queue.h) and their wire
// form in keel.proto, shared by the master and ShardClient.
#pragma once

#include "keel/data/shard_queue.h"
#include "keel/rpc/keel.pb.h"

namespace keel::data {

void ToProto(const DatasetSpec& spec, rpc::DatasetSpec* out);
DatasetSpec FromProto(const rpc::DatasetSpec& spec);
void ToProto(const ShardRef& ref, rpc::PendingShard* out);
ShardRef FromProto(const rpc::PendingShard& ref);
void ToProto(const Position& position, rpc::DataPosition* out);
Position FromProto(const rpc::DataPosition& position);
void ToProto(const Grant& grant, rpc::ShardGrant* out);
Grant FromProto(const rpc::ShardGrant& grant, const std::string& worker);

}  // namespace keel::data
