// The wire protocol around the generated FlatBuffers code (core/protocol/plexus.fbs): building
// batches for one peer, and verifying every received buffer before anything reads it.
//
// Thread safety: a OutBatch belongs to one thread; verify_batch is a pure function.
#pragma once

#include <plexus/common/errors.hpp>
#include <plexus/wire/plexus_generated.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace plexus::wire {

/// Bumped on every incompatible change of plexus.fbs.
inline constexpr std::uint32_t kProtocolVersion = 2;

struct VerifyLimits {
  std::uint32_t max_depth = 64;
  std::uint32_t max_tables = 1000000;
};

/// Checks a received buffer with flatbuffers::Verifier (identifier, bounds, depth, table count)
/// and returns its Batch, or nullptr if it fails. Nothing may read an unverified buffer.
const Batch* verify_batch(const void* data, std::size_t size, const VerifyLimits& limits);

/// Accumulates the messages for one peer during one event-loop turn; finish() yields one buffer.
class OutBatch {
 public:
  OutBatch() : fbb_(1024) {}
  flatbuffers::FlatBufferBuilder& fbb() { return fbb_; }
  template <class T>
  void add(flatbuffers::Offset<T> msg) {
    messages_.push_back(CreateEnvelope(fbb_, MsgTraits<T>::enum_value, msg.Union()));
  }
  bool empty() const { return messages_.empty(); }
  std::size_t size() const { return messages_.size(); }
  /// Finishes the batch; the bytes stay valid until the next add() or reset().
  std::string_view finish();
  void reset();

  flatbuffers::Offset<flatbuffers::String> str(std::string_view s) {
    return fbb_.CreateString(s.data(), s.size());
  }
  /// A vector of strings from any range of things that convert to std::string_view.
  template <class Range>
  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>> strs(
      const Range& items) {
    scratch_.clear();  // reused: string lists are built per task on hot paths
    for (const auto& s : items) scratch_.push_back(str(s));
    return fbb_.CreateVector(scratch_);
  }
  flatbuffers::Offset<flatbuffers::Vector<std::uint8_t>> bytes(std::string_view s) {
    return fbb_.CreateVector(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  }
  flatbuffers::Offset<Error> error(const ErrorInfo& e);

 private:
  flatbuffers::FlatBufferBuilder fbb_;
  std::vector<flatbuffers::Offset<Envelope>> messages_;
  std::vector<flatbuffers::Offset<flatbuffers::String>> scratch_;  // strs()
  bool finished_ = false;
};

inline std::string_view view(const flatbuffers::String* s) {
  return s ? std::string_view(s->data(), s->size()) : std::string_view();
}
inline std::string_view view(const flatbuffers::Vector<std::uint8_t>* v) {
  return v ? std::string_view(reinterpret_cast<const char*>(v->data()), v->size())
           : std::string_view();
}
std::vector<std::string> strings(const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* v);
/// Appends views of the strings in `v` (valid while the message is) to `out`.
inline void append_views(const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* v,
                         std::vector<std::string_view>& out) {
  if (!v) return;
  for (const auto* s : *v) out.push_back(view(s));
}
ErrorInfo to_error_info(const Error* e);

}  // namespace plexus::wire
