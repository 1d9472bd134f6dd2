#include "tools/server/demo_model.h"

#include "common/status_macros.h"
#include "datagen/synthetic_model.h"
#include "server/log.h"
#include "store/data_dir.h"

namespace embsum::server {

absl::Status BuildDemoModel(const DemoShape& shape, const std::string& root,
                            std::string* data_dir) {
  datagen::SyntheticModelOptions model;
  model.out_dir = root + "/model";
  model.users = shape.users;
  model.items = shape.items;
  model.dim = shape.dim;
  model.user_codes = shape.user_codes;
  model.item_codes = shape.item_codes;
  model.seed = shape.seed;
  model.model_version = "demo-1";
  LogEvent("info", "demo_generate",
           {{"dir", model.out_dir},
            {"users", std::to_string(shape.users)},
            {"items", std::to_string(shape.items)},
            {"dim", std::to_string(shape.dim)},
            {"user_codes", std::to_string(shape.user_codes)},
            {"item_codes", std::to_string(shape.item_codes)}});
  RETURN_IF_ERROR(datagen::GenerateSyntheticModel(model));
  store::IngestOptions ingest;
  ingest.model_dir = model.out_dir;
  ingest.data_dir = root + "/data";
  RETURN_IF_ERROR(store::Ingest(ingest));
  *data_dir = ingest.data_dir;
  return absl::OkStatus();
}

}  // namespace embsum::server
