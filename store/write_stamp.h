// What a store write records about where it came from, atomically with the
// data it writes (docs/operations.md "Writes through the log").
#ifndef EMBSUM_STORE_WRITE_STAMP_H_
#define EMBSUM_STORE_WRITE_STAMP_H_

#include <cstdint>

namespace embsum::store {

struct WriteStamp {
  // The write log's sequence of the message this write applies; the store
  // keeps the last one as its applied sequence. 0: a local write (no log).
  uint64_t log_sequence = 0;
};

}  // namespace embsum::store

#endif  // EMBSUM_STORE_WRITE_STAMP_H_
