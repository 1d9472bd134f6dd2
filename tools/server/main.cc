// embsum-server: the EmbSum online scoring service (docs/design.md sections
// 5-7).
//   embsum-server --data_dir=DIR [--listen=0.0.0.0:50051]
//                 [--admin_listen=127.0.0.1:50052]
//                 [--metrics_listen=0.0.0.0:9464]
//   embsum-server --demo      # synthetic model in a temporary data dir
// See docs/server.md for every flag.
#include <cstdint>
#include <optional>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"
#include "common/openblas_core.h"
#include "common/tool_flags.h"
#include "scoring/dtype.h"
#include "server/app.h"
#include "server/log.h"
#include "store/item_catalog.h"
#include "tools/server/demo_model.h"

ABSL_FLAG(std::string, data_dir, "",
          "Data directory written by embsum-ingest.");
ABSL_FLAG(std::string, listen, "0.0.0.0:50051",
          "HOST:PORT of the Ranker service (port 0 picks a free one).");
ABSL_FLAG(std::string, admin_listen, "127.0.0.1:50052",
          "HOST:PORT of the RankerAdmin (write) service; keep it private.");
ABSL_FLAG(std::string, metrics_listen, "0.0.0.0:9464",
          "HOST:PORT of GET /metrics (Prometheus); empty disables it.");
ABSL_FLAG(bool, demo, false,
          "Generate a synthetic model into a temporary data directory and "
          "serve it (ignores --data_dir).");
ABSL_FLAG(std::string, backend, "auto",
          "Scorer: auto (CUDA when a device is usable, else CPU), cpu, cuda.");
ABSL_FLAG(std::string, isa, "auto",
          "CPU scorer kernel family: auto (the fastest, timed on the loaded "
          "model at start-up and on each reload) or one of scalar, avx2, "
          "avx512, avx512bf16, avxvnni, avx512vnni to force it.");
ABSL_FLAG(absl::Duration, dispatch_budget, absl::Milliseconds(300),
          "Time spent per loaded model timing the CPU kernel families on "
          "its item arena (the fastest is kept); 0 = no timing (the pick "
          "made on a synthetic sample before the model loads stays).");
ABSL_FLAG(std::string, ann_gpu, "auto",
          "ANN index for Retrieve on the GPU where FAISS has GPU support: "
          "auto (when a device is present) or off.");
ABSL_FLAG(uint32_t, max_candidates, 10000, "Largest candidate_ids of a Rank.");
ABSL_FLAG(uint32_t, max_retrieve_k, 1000,
          "Largest k (and exclude_item_ids) of a Retrieve.");
ABSL_FLAG(double, retrieve_recall_target, 0.99,
          "After start-up (and reload), in the background, the default "
          "Retrieve path's ANN setting (IVF probes, over-fetch, per-interest "
          "codes and depth) is tuned so that the 1st-percentile sampled "
          "user's recall@10 and @100 against exact reach this and the mean "
          "halfway between this and 1; "
          "0 = no tuning (over-fetch --ann_oversample).");
ABSL_FLAG(uint32_t, retrieve_tune_users, 256,
          "Users the Retrieve tuner draws at random (all when fewer; each "
          "costs one full scan, in the background after start-up and "
          "reload).");
ABSL_FLAG(double, retrieve_tail_target, 0.95,
          "The recall@10 and @100 the Retrieve tuner requires of the "
          "1st-percentile sampled user (at most --retrieve_recall_target; "
          "0 = that target).");
ABSL_FLAG(uint64_t, retrieve_tune_seed, 0,
          "Seed of the Retrieve tuner's user sample; 0 draws one (logged).");
ABSL_FLAG(double, retrieve_shadow_rate, 0.001,
          "Fraction of default Retrieve calls re-answered off the request "
          "path by an exact scan (when a scan slot is free) to record "
          "embsum_retrieve_shadow_recall; 0 = none.");
ABSL_FLAG(uint32_t, retrieve_widen_factor, 4,
          "Adaptive depth: a Retrieve whose top k came mostly from the far "
          "end of its candidate lists searches them this many times deeper "
          "once (embsum_retrieve_widened_total); <= 1 = off.");
ABSL_FLAG(std::string, ann_code_index, "int8",
          "Storage of the per-interest ANN index over every CPE row, searched "
          "with each user code: int8, fp16, fp32 or off.");
ABSL_FLAG(uint32_t, max_concurrent_retrieve_scans, 1,
          "Full-catalogue Retrieve scans (exact=true, or fallbacks) running "
          "at once; more get RESOURCE_EXHAUSTED, so they cannot starve Rank "
          "(0 = unlimited). Scans of at most --max_candidates rows are not "
          "counted.");
ABSL_FLAG(std::string, item_dtype, "fp32",
          "Storage of the item arena: fp32, fp16, bf16 or int8 (16-bit "
          "halves memory and bandwidth, rel. error <= 2e-2; int8 quarters "
          "them, per-row scales, rel. error <= 5e-2; CPU backend only).");
ABSL_FLAG(std::string, tls_cert, "", "PEM server certificate (enables TLS).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle; when set, clients must present a certificate it "
          "signed (mutual TLS).");
ABSL_FLAG(int, workers, 0, "Scoring threads (0 = number of cores).");
ABSL_FLAG(uint32_t, queue_size, 128,
          "Ranker calls that may wait for a worker; beyond it calls get "
          "RESOURCE_EXHAUSTED at once.");
ABSL_FLAG(absl::Duration, max_queue_wait, absl::Milliseconds(200),
          "Ranker calls that waited, or by the queue's recent pace would "
          "wait, longer than this for a worker get RESOURCE_EXHAUSTED: "
          "bounds latency under overload (0 = only --queue_size bounds it).");
ABSL_FLAG(uint32_t, admin_queue_size, 16,
          "Admin calls that may wait for the writer thread.");
ABSL_FLAG(int32_t, max_receive_bytes, 16 << 20,
          "Largest request message in bytes.");
ABSL_FLAG(uint64_t, max_upsert_bytes, uint64_t{256} << 20,
          "Largest total size of one upsert stream (it is applied "
          "atomically, so it is held in memory).");
ABSL_FLAG(uint32_t, ann_oversample, 4,
          "Without tuning (--retrieve_recall_target=0), Retrieve reranks "
          "k * this many ANN candidates exactly.");
ABSL_FLAG(absl::Duration, shutdown_delay, absl::ZeroDuration(),
          "After SIGTERM, keep serving this long while health reports "
          "NOT_SERVING (lets load balancers drain), e.g. 5s.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(30),
          "Then wait this long for calls in flight before cancelling them.");
ABSL_FLAG(absl::Duration, reload_interval, absl::ZeroDuration(),
          "Also check --data_dir this often and reload it when it was "
          "replaced (embsum-ingest --force); 0 = only on SIGHUP.");
ABSL_FLAG(uint64_t, demo_users, 1000, "--demo: users.");
ABSL_FLAG(uint64_t, demo_items, 5000, "--demo: items.");
ABSL_FLAG(uint32_t, demo_dim, 64, "--demo: embedding size d.");
ABSL_FLAG(uint32_t, demo_user_codes, 8, "--demo: user codes m.");
ABSL_FLAG(uint32_t, demo_item_codes, 4, "--demo: item codes n.");
ABSL_FLAG(uint64_t, demo_seed, 1, "--demo: random seed.");

ABSL_FLAG(std::string, write_log, "",
          "NATS servers of the write log, nats://HOST:PORT,...: admin writes "
          "go through a JetStream stream and every server applies it "
          "(docs/operations.md). Empty: writes are applied locally.");
ABSL_FLAG(std::string, write_log_stream, "EMBSUM",
          "The write log's JetStream stream (and subject prefix).");
ABSL_FLAG(int32_t, write_log_replicas, 3,
          "Replicas of the stream when this server creates it (1 for a "
          "single NATS node).");
ABSL_FLAG(absl::Duration, write_log_timeout, absl::Seconds(5),
          "How long a write waits for the log's ack before UNAVAILABLE.");
ABSL_FLAG(uint64_t, write_log_max_message_bytes, 0,
          "Largest write log message; larger calls are published as parts "
          "and a commit (0: the NATS server's max_payload).");
ABSL_FLAG(uint64_t, write_log_serving_lag, 0,
          "At start-up, the server reports SERVING once it is at most this "
          "many log messages behind.");
ABSL_FLAG(bool, reload_drops_online_writes, false,
          "Without a write log: allow a reload to a directory of the same "
          "model version although the one in service holds online writes "
          "(they are dropped; counted in the reload line).");

int main(int argc, char** argv) {
  // First, before any thread: FAISS's BLAS on this CPU's widest kernels.
  embsum::MaybeReexecForOpenBlas(argv);
  embsum::ShowOwnFlagsInHelp();
  absl::SetProgramUsageMessage(
      "EmbSum online scoring service.\n"
      "  embsum-server --data_dir=DIR [--listen=HOST:PORT] "
      "[--admin_listen=HOST:PORT] [--metrics_listen=HOST:PORT]\n"
      "  embsum-server --demo");
  absl::ParseCommandLine(argc, argv);

  embsum::server::AppOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.demo = absl::GetFlag(FLAGS_demo);
  const embsum::server::DemoShape demo_shape = {
      .users = absl::GetFlag(FLAGS_demo_users),
      .items = absl::GetFlag(FLAGS_demo_items),
      .dim = absl::GetFlag(FLAGS_demo_dim),
      .user_codes = absl::GetFlag(FLAGS_demo_user_codes),
      .item_codes = absl::GetFlag(FLAGS_demo_item_codes),
      .seed = absl::GetFlag(FLAGS_demo_seed)};
  options.build_demo = [demo_shape](const std::string& root,
                                    std::string* data_dir) {
    return embsum::server::BuildDemoModel(demo_shape, root, data_dir);
  };
  options.backend = absl::GetFlag(FLAGS_backend);
  options.isa = absl::GetFlag(FLAGS_isa);
  options.dispatch.budget = absl::GetFlag(FLAGS_dispatch_budget);
  if (options.dispatch.budget < absl::ZeroDuration()) {
    embsum::server::LogEvent(
        "error", "start_failed",
        {{"message", "--dispatch_budget must not be negative"}});
    return 1;
  }
  const std::string dtype = absl::GetFlag(FLAGS_item_dtype);
  const std::optional<embsum::scoring::DType> parsed =
      embsum::scoring::ParseDType(dtype);
  if (!parsed.has_value()) {
    embsum::server::LogEvent(
        "error", "start_failed",
        {{"message",
          "--item_dtype='" + dtype + "': want fp32, fp16, bf16 or int8"}});
    return 1;
  }
  options.item_dtype = *parsed;
  const std::string ann_gpu = absl::GetFlag(FLAGS_ann_gpu);
  const std::optional<embsum::store::AnnOptions::Gpu> parsed_ann_gpu =
      embsum::store::ParseAnnGpu(ann_gpu);
  if (!parsed_ann_gpu.has_value()) {
    embsum::server::LogEvent(
        "error", "start_failed",
        {{"message", "--ann_gpu='" + ann_gpu + "': want auto or off"}});
    return 1;
  }
  options.ann_gpu = *parsed_ann_gpu;
  const std::string code_index = absl::GetFlag(FLAGS_ann_code_index);
  const std::optional<embsum::store::AnnOptions::CodeIndex> parsed_code_index =
      embsum::store::ParseAnnCodeIndex(code_index);
  if (!parsed_code_index.has_value()) {
    embsum::server::LogEvent(
        "error", "start_failed",
        {{"message", "--ann_code_index='" + code_index +
                         "': want int8, fp16, fp32 or off"}});
    return 1;
  }
  options.ann_code_index = *parsed_code_index;
  const double shadow_rate = absl::GetFlag(FLAGS_retrieve_shadow_rate);
  if (!(shadow_rate >= 0 && shadow_rate <= 1)) {
    embsum::server::LogEvent(
        "error", "start_failed",
        {{"message", "--retrieve_shadow_rate=" + std::to_string(shadow_rate) +
                         ": want 0..1"}});
    return 1;
  }
  const double recall_target = absl::GetFlag(FLAGS_retrieve_recall_target);
  if (!(recall_target >= 0 && recall_target <= 1)) {
    embsum::server::LogEvent("error", "start_failed",
                             {{"message", "--retrieve_recall_target=" +
                                              std::to_string(recall_target) +
                                              ": want 0 (no tuning) to 1"}});
    return 1;
  }
  if (absl::GetFlag(FLAGS_max_retrieve_k) == 0) {
    embsum::server::LogEvent(
        "error", "start_failed",
        {{"message", "--max_retrieve_k=0: want at least 1"}});
    return 1;
  }
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.shutdown_delay = absl::GetFlag(FLAGS_shutdown_delay);
  options.reload_interval = absl::GetFlag(FLAGS_reload_interval);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);

  if (!absl::GetFlag(FLAGS_write_log).empty()) {
    absl::StatusOr<std::vector<std::string>> servers =
        embsum::server::ParseWriteLogServers(absl::GetFlag(FLAGS_write_log));
    if (!servers.ok()) {
      embsum::server::LogEvent(
          "error", "start_failed",
          {{"message", std::string(servers.status().message())}});
      return 1;
    }
    embsum::server::WriteLogOptions log;
    log.servers = *std::move(servers);
    log.stream = absl::GetFlag(FLAGS_write_log_stream);
    log.replicas = absl::GetFlag(FLAGS_write_log_replicas);
    log.publish_timeout = absl::GetFlag(FLAGS_write_log_timeout);
    log.max_message_bytes = absl::GetFlag(FLAGS_write_log_max_message_bytes);
    options.write_log = std::move(log);
    options.write_log_serving_lag = absl::GetFlag(FLAGS_write_log_serving_lag);
  }
  options.reload_drops_online_writes =
      absl::GetFlag(FLAGS_reload_drops_online_writes);

  embsum::server::ServerOptions& server = options.server;
  server.listen = absl::GetFlag(FLAGS_listen);
  server.admin_listen = absl::GetFlag(FLAGS_admin_listen);
  server.tls = {.cert_file = absl::GetFlag(FLAGS_tls_cert),
                .key_file = absl::GetFlag(FLAGS_tls_key),
                .client_ca_file = absl::GetFlag(FLAGS_tls_client_ca)};
  server.workers = absl::GetFlag(FLAGS_workers);
  server.queue_size = absl::GetFlag(FLAGS_queue_size);
  server.max_queue_wait = absl::GetFlag(FLAGS_max_queue_wait);
  server.admin_queue_size = absl::GetFlag(FLAGS_admin_queue_size);
  server.max_receive_bytes = absl::GetFlag(FLAGS_max_receive_bytes);
  server.admin.max_upsert_bytes = absl::GetFlag(FLAGS_max_upsert_bytes);
  server.core.max_candidates = absl::GetFlag(FLAGS_max_candidates);
  server.core.ann_oversample = absl::GetFlag(FLAGS_ann_oversample);
  server.core.max_retrieve_k = absl::GetFlag(FLAGS_max_retrieve_k);
  server.core.retrieve_recall_target =
      absl::GetFlag(FLAGS_retrieve_recall_target);
  server.core.retrieve_tune_users = absl::GetFlag(FLAGS_retrieve_tune_users);
  server.core.retrieve_tune_seed = absl::GetFlag(FLAGS_retrieve_tune_seed);
  server.core.retrieve_tail_target = absl::GetFlag(FLAGS_retrieve_tail_target);
  server.core.retrieve_shadow_rate = shadow_rate;
  server.core.retrieve_widen_factor =
      absl::GetFlag(FLAGS_retrieve_widen_factor);
  server.core.max_concurrent_scans =
      absl::GetFlag(FLAGS_max_concurrent_retrieve_scans);
  return embsum::server::RunApp(options);
}
