// A gRPC callback MessageAllocator that puts a unary call's request and
// response on one protobuf Arena. A 500-candidate Rank then parses its ids
// into arena strings and builds its 500 ScoredItems with bump allocation,
// and the whole call is freed at once instead of string by string
// (docs/server.md "Request-path cost").
//
// Register with the generated SetMessageAllocatorFor_<Method>(&allocator);
// the allocator must outlive the server. Thread-safety: AllocateMessages is
// safe to call concurrently (it shares no state).
#ifndef EMBSUM_SERVER_ARENA_ALLOCATOR_H_
#define EMBSUM_SERVER_ARENA_ALLOCATOR_H_

#include <google/protobuf/arena.h>
#include <grpcpp/support/message_allocator.h>

#include <cstddef>

namespace embsum::server {

template <typename Request, typename Response>
class ArenaMessageAllocator final
    : public grpc::MessageAllocator<Request, Response> {
 public:
  // The holder owns the arena; gRPC calls Release() when the call is done.
  class Holder final : public grpc::MessageHolder<Request, Response> {
   public:
    Holder() : arena_(Options(initial_block_)) {
      this->set_request(
          google::protobuf::Arena::CreateMessage<Request>(&arena_));
      this->set_response(
          google::protobuf::Arena::CreateMessage<Response>(&arena_));
    }
    Holder(const Holder&) = delete;
    Holder& operator=(const Holder&) = delete;

    void Release() override { delete this; }

    const google::protobuf::Arena& arena() const { return arena_; }

   private:
    // A small call (one candidate, an error) fits the inline block and
    // allocates nothing beyond the holder; a 500-candidate Rank (~60 KB)
    // takes a few blocks of up to kMaxBlockBytes.
    static constexpr size_t kInitialBlockBytes = 2048;
    static constexpr size_t kStartBlockBytes = 8 << 10;
    static constexpr size_t kMaxBlockBytes = 64 << 10;

    static google::protobuf::ArenaOptions Options(char* initial_block) {
      google::protobuf::ArenaOptions options;
      options.initial_block = initial_block;
      options.initial_block_size = kInitialBlockBytes;
      options.start_block_size = kStartBlockBytes;
      options.max_block_size = kMaxBlockBytes;
      return options;
    }

    // Declared before arena_: the arena is built on it and destroyed first.
    alignas(std::max_align_t) char initial_block_[kInitialBlockBytes];
    google::protobuf::Arena arena_;
  };

  grpc::MessageHolder<Request, Response>* AllocateMessages() override {
    return new Holder();
  }
};

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_ARENA_ALLOCATOR_H_
