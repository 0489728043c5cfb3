#include <plexus/protocol/wire.hpp>

namespace plexus::wire {

const Batch* verify_batch(const void* data, std::size_t size, const VerifyLimits& limits) {
  if (data == nullptr || size < 8 || size > FLATBUFFERS_MAX_BUFFER_SIZE) {
    return nullptr;
  }
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  if (!BatchBufferHasIdentifier(bytes)) return nullptr;
  flatbuffers::Verifier verifier(bytes, size, limits.max_depth, limits.max_tables);
  if (!VerifyBatchBuffer(verifier)) return nullptr;
  return GetBatch(bytes);
}

std::string_view OutBatch::finish() {
  if (!finished_) {
    auto vec = fbb_.CreateVector(messages_);
    fbb_.Finish(CreateBatch(fbb_, vec), BatchIdentifier());
    finished_ = true;
  }
  return {reinterpret_cast<const char*>(fbb_.GetBufferPointer()), fbb_.GetSize()};
}

void OutBatch::reset() {
  fbb_.Clear();
  messages_.clear();
  finished_ = false;
}

flatbuffers::Offset<Error> OutBatch::error(const ErrorInfo& e) {
  auto type = str(e.type);
  auto message = str(e.message);
  auto traceback = str(e.traceback);
  auto worker = str(e.worker);
  return CreateError(fbb_, static_cast<ErrorKind>(e.kind), type, message, traceback, worker);
}

std::vector<std::string> strings(
    const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* v) {
  std::vector<std::string> out;
  if (!v) return out;
  out.reserve(v->size());
  for (const auto* s : *v) out.emplace_back(view(s));
  return out;
}

ErrorInfo to_error_info(const Error* e) {
  ErrorInfo info;
  if (!e) {
    info.kind = plexus::ErrorKind::scheduler_error;
    info.message = "error without details";
    return info;
  }
  auto kind = static_cast<std::uint8_t>(e->kind());
  info.kind = kind <= static_cast<std::uint8_t>(plexus::ErrorKind::scheduler_error)
                  ? static_cast<plexus::ErrorKind>(kind)
                  : plexus::ErrorKind::scheduler_error;
  info.type = view(e->type());
  info.message = view(e->message());
  info.traceback = view(e->traceback());
  info.worker = view(e->worker());
  return info;
}

}  // namespace plexus::wire
