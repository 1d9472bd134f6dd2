// The model a server answers from: one opened data directory (manifest, user
// store, item catalogue), published as a unit so that a hot reload swaps all
// of it at once. A request takes the current model once, at its start, and
// keeps it (a shared_ptr) until it finishes: a request never mixes two
// models, and a replaced model is closed when its last request lets go.
#ifndef EMBSUM_SERVER_SERVING_MODEL_H_
#define EMBSUM_SERVER_SERVING_MODEL_H_

#include <unistd.h>

#include <cstdint>
#include <memory>
#include <utility>

#include "common/published.h"
#include "store/data_dir.h"
#include "store/item_catalog.h"
#include "store/manifest.h"
#include "store/user_store.h"

namespace embsum::server {

// Immutable handle on an open data directory. Thread-safe (the stores are).
class ServingModel {
 public:
  // generation: 1 for the model served at start-up, +1 per reload.
  // dir_fd: a descriptor of the directory `dir` was opened through, closed
  // after `dir` (-1: none).
  ServingModel(std::unique_ptr<store::DataDir> dir, uint64_t generation,
               int dir_fd = -1)
      : dir_fd_(dir_fd), dir_(std::move(dir)), generation_(generation) {}
  ~ServingModel() {
    dir_.reset();
    if (dir_fd_ >= 0) ::close(dir_fd_);
  }
  ServingModel(const ServingModel&) = delete;
  ServingModel& operator=(const ServingModel&) = delete;

  const store::ModelManifest& manifest() const { return dir_->manifest(); }
  const store::ShardSpec& shard() const { return dir_->shard(); }
  // The stores are thread-safe; writes through them are what the admin
  // RPCs do.
  store::UserStore& users() const { return dir_->users(); }
  store::ItemCatalog& items() const { return dir_->items(); }
  uint64_t generation() const { return generation_; }

 private:
  int dir_fd_;
  std::unique_ptr<store::DataDir> dir_;
  uint64_t generation_;
};

// The current model. Thread-safe: Current() and Publish() may race freely.
// Published<T> (common/published.h) is the one way the code base publishes
// a shared snapshot (the item catalogue uses it too); it says why a mutex
// rather than std::atomic<std::shared_ptr>. Readers share the lock and hold
// it for one reference-count increment.
class ModelSlot {
 public:
  explicit ModelSlot(std::shared_ptr<const ServingModel> initial)
      : current_(std::move(initial)) {}

  std::shared_ptr<const ServingModel> Current() const {
    return current_.Load();
  }
  // Returns the model it replaces (requests in flight may still hold it).
  std::shared_ptr<const ServingModel> Publish(
      std::shared_ptr<const ServingModel> next) {
    return current_.Exchange(std::move(next));
  }

 private:
  Published<ServingModel> current_;
};

}  // namespace embsum::server

#endif  // EMBSUM_SERVER_SERVING_MODEL_H_
