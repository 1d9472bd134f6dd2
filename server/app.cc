#include "server/app.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "metrics/http_server.h"
#include "metrics/metrics.h"
#include "metrics/process_metrics.h"
#include "server/backend.h"
#include "server/log.h"
#include "server/log_applier.h"
#include "server/model_loader.h"
#include "server/runtime_info.h"
#include "server/serving_model.h"
#include "server/write_log.h"
#include "store/data_dir.h"

namespace embsum::server {
namespace {

// Removes a directory tree when destroyed.
class TempDir {
 public:
  static absl::StatusOr<TempDir> Make() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = absl::StrCat(base != nullptr && *base ? base : "/tmp",
                                       "/embsum-demo-XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("cannot create a temporary directory ", pattern));
    }
    return TempDir(pattern);
  }
  TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) {
    other.path_.clear();
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

std::string FirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The Python stubs the build generates next to the binary.
std::string StubsDir() {
  std::error_code error;
  const std::filesystem::path exe =
      std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error && std::filesystem::exists(exe.parent_path() / "python")) {
    return (exe.parent_path() / "python").string();
  }
  return "<build>/tools/server/python";
}

void PrintDemoHint(const std::string& root, int port) {
  const std::string user = FirstLine(root + "/model/users/ids.txt");
  std::string items;
  {
    std::ifstream in(root + "/model/items/ids.txt");
    std::string line;
    for (int i = 0; i < 3 && std::getline(in, line); ++i) {
      absl::StrAppend(&items, i ? "," : "", line);
    }
  }
  const std::string client = absl::StrCat(
      "PYTHONPATH=", StubsDir(),
      " /usr/bin/python3 tools/server/rank_client.py --target=127.0.0.1:",
      port);
  std::printf(
      "\nembsum-server demo is up. Try, from the repository root:\n"
      "  %s rank --user=%s --candidates=%s\n"
      "  %s retrieve --user=%s --k=10\n"
      "  %s info\n"
      "Model artifact (ids, behaviors.tsv): %s/model\n\n",
      client.c_str(), user.c_str(), items.c_str(), client.c_str(), user.c_str(),
      client.c_str(), root.c_str());
  std::fflush(stdout);
}

// Waits for the next signal; 0 when `timeout` (if positive) passes first.
int WaitForSignal(const sigset_t& signals, absl::Duration timeout) {
  while (true) {
    if (timeout <= absl::ZeroDuration()) {
      int signal_number = 0;
      if (sigwait(&signals, &signal_number) == 0) return signal_number;
      continue;
    }
    const timespec wait = absl::ToTimespec(timeout);
    const int signal_number = sigtimedwait(&signals, nullptr, &wait);
    if (signal_number > 0) return signal_number;
    if (errno == EAGAIN) return 0;
  }
}

// Drops the app's reference to a replaced model once the requests still
// using it have finished, so that it closes here and not on a request's
// thread. Requests are bounded by their deadlines; after `patience` the
// last request to finish closes it instead.
void Retire(std::shared_ptr<const ServingModel> model,
            absl::Duration patience) {
  const absl::Time start = absl::Now();
  while (model.use_count() > 1 && absl::Now() - start < patience) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  const std::string waited = absl::FormatDuration(absl::Now() - start);
  const bool closed_here = model.use_count() == 1;
  model.reset();
  LogEvent("info", "model_retired",
           {{"waited", waited}, {"closed_here", closed_here ? "yes" : "no"}});
}

// Reloads on SIGHUP (and, with a positive interval, when a poll finds the
// data directory replaced) until SIGTERM or SIGINT, which it returns.
// dropped_writes (may be null) counts the online writes reloads dropped
// (without a write log).
int ServeUntilStopped(const sigset_t& signals, absl::Duration reload_interval,
                      ModelLoader* loader, Server* server, bool write_log,
                      metrics::Counter* dropped_writes) {
  while (true) {
    const int signal_number = WaitForSignal(signals, reload_interval);
    if (signal_number == SIGTERM || signal_number == SIGINT) {
      return signal_number;
    }
    const bool forced = signal_number == SIGHUP;
    const absl::Time start = absl::Now();
    ModelLoader::Reload reload = loader->ReloadIfChanged(forced);
    const std::string in_service = server->model()->manifest().model_version;
    switch (reload.outcome) {
      case ModelLoader::Outcome::kUnchanged:
        if (forced) {
          LogEvent("info", "reload_unchanged", {{"model_version", in_service}});
        }
        break;
      case ModelLoader::Outcome::kFailed:
        LogEvent("error", "reload_failed",
                 {{"trigger", forced ? "SIGHUP" : "poll"},
                  {"code", absl::StatusCodeToString(reload.status.code())},
                  {"message", std::string(reload.status.message())},
                  {"serving", in_service}});
        break;
      case ModelLoader::Outcome::kReloaded: {
        const std::shared_ptr<const ServingModel> next = reload.model;
        const absl::Duration open_time = absl::Now() - start;
        // Logged once the new model is published (SwapModel also tunes
        // Retrieve for it first): from this line on, calls get it.
        std::shared_ptr<const ServingModel> previous =
            server->SwapModel(std::move(reload.model));
        // Without a write log, the online writes of the replaced model are
        // not in the new directory (the guard refused a same-version
        // directory unless --reload_drops_online_writes). With the log,
        // the new model applies its version's writes from the log instead.
        const uint64_t dropped = write_log
                                     ? 0
                                     : previous->users().online_writes() +
                                           previous->items().online_writes();
        if (dropped_writes != nullptr) {
          dropped_writes->Increment(static_cast<double>(dropped));
        }
        LogEvent(
            dropped > 0 ? "warning" : "info", "reload",
            {{"trigger", forced ? "SIGHUP" : "poll"},
             {"dropped_online_writes", std::to_string(dropped)},
             {"write_log_sequence",
              write_log ? absl::StrCat(
                              "users ", next->users().applied_log_sequence(),
                              ", items ", next->items().applied_log_sequence())
                        : "off"},
             {"model_version", next->manifest().model_version},
             {"previous_model_version", in_service},
             {"generation", std::to_string(next->generation())},
             {"users", std::to_string(next->users().size())},
             {"items", std::to_string(next->items().Current()->size())},
             {"open_time", absl::FormatDuration(open_time)},
             {"swap_time",
              absl::FormatDuration(absl::Now() - start - open_time)}});
        Retire(std::move(previous), absl::Seconds(10));
        break;
      }
    }
  }
}

}  // namespace

int RunApp(const AppOptions& options) {
  // Every thread started from here on inherits the mask: SIGTERM, SIGINT
  // and SIGHUP are only ever taken by the signal loop below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto fail = [](const absl::Status& s) {
    LogEvent("error", "start_failed",
             {{"code", absl::StatusCodeToString(s.code())},
              {"message", std::string(s.message())}});
    return 1;
  };

  std::optional<TempDir> demo_dir;
  std::string data_dir = options.data_dir;
  if (options.demo) {
    absl::StatusOr<TempDir> dir = TempDir::Make();
    if (!dir.ok()) return fail(dir.status());
    demo_dir.emplace(*std::move(dir));
    if (!options.build_demo) {
      return fail(absl::FailedPreconditionError(
          "--demo: this binary has no demo model builder"));
    }
    if (absl::Status s = options.build_demo(demo_dir->path(), &data_dir);
        !s.ok()) {
      return fail(s);
    }
  } else if (data_dir.empty()) {
    return fail(absl::InvalidArgumentError(
        "--data_dir is required (or --demo for a synthetic model)"));
  }

  // The scorer outlives the data directory: the item catalogue's listener
  // points at it.
  absl::StatusOr<BackendChoice> backend =
      MakeScorer(options.backend, options.server.workers, options.isa);
  if (!backend.ok()) return fail(backend.status());
  std::unique_ptr<scoring::Scorer> scorer = std::move(backend->scorer);

  metrics::Registry registry;
  metrics::RegisterProcessMetrics(&registry);

  store::DataDirOptions data_options;
  data_options.items.dtype = options.item_dtype;
  data_options.items.ann.gpu = options.ann_gpu;
  data_options.items.ann.code_index = options.ann_code_index;
  data_options.items.ann.gpu_log = [](std::string_view level,
                                      std::string_view message) {
    LogEvent(std::string(level), "ann_gpu",
             {{"message", std::string(message)}});
  };
  ModelLoader loader(data_dir, data_options, scorer.get(), &registry,
                     options.dispatch);
  metrics::Counter& dropped_writes =
      registry
          .AddCounter("embsum_reload_dropped_writes_total",
                      "Online writes (records) of replaced models that the "
                      "new data directory does not hold (no write log)")
          .WithLabels({});
  absl::StatusOr<std::shared_ptr<const ServingModel>> model = loader.Load();
  if (!model.ok()) return fail(model.status());
  const ServingModel& dir = **model;

  // The index build at load may use every core; serving does not.
  LimitBlasThreads(options.blas_threads);
  const BlasInfo blas = GetBlasInfo();
  ServerOptions server_options = options.server;
  if (scorer->backend() == "cpu") {
    server_options.scorer_threads =
        options.server.workers > 0
            ? options.server.workers
            : static_cast<int>(
                  std::max(1u, std::thread::hardware_concurrency()));
  }
  if (!server_options.core.log) {
    server_options.core.log = [](const std::string& line) {
      LogEvent("info", "retrieve_tuning", {{"message", line}});
    };
  }
  std::unique_ptr<WriteLog> write_log;
  if (options.write_log.has_value()) {
    absl::StatusOr<std::unique_ptr<WriteLog>> log =
        WriteLog::Connect(*options.write_log);
    if (!log.ok()) return fail(log.status());
    write_log = *std::move(log);
    server_options.admin.write_log = write_log.get();
    // SERVING once caught up with the log (below).
    server_options.start_serving = false;
  }
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Start(server_options, *model, scorer.get(), &registry);
  if (!server.ok()) return fail(server.status());
  std::unique_ptr<LogApplier> applier;
  if (write_log != nullptr) {
    Server* s = server->get();
    LogApplierOptions applier_options;
    applier_options.serving_lag_messages = options.write_log_serving_lag;
    applier_options.on_caught_up = [s] { s->SetServing(true); };
    applier = std::make_unique<LogApplier>(
        applier_options, write_log.get(), s->core(), [s] { return s->model(); },
        &registry);
  } else if (!options.reload_drops_online_writes) {
    Server* s = server->get();
    loader.SetGuard([s](const store::DataDir& next) -> absl::Status {
      const std::shared_ptr<const ServingModel> current = s->model();
      const uint64_t online =
          current->users().online_writes() + current->items().online_writes();
      if (online == 0 ||
          next.manifest().model_version != current->manifest().model_version) {
        return absl::OkStatus();
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "refused: the model in service (version '",
          current->manifest().model_version, "') holds ", online,
          " online writes that the new directory of the same version lacks "
          "and a reload would drop; give the new artifact its own "
          "model_version, run with a write log (--write_log), or pass "
          "--reload_drops_online_writes"));
    });
  }
  std::unique_ptr<metrics::MetricsHttpServer> metrics_server;
  if (!options.metrics_listen.empty()) {
    absl::StatusOr<std::unique_ptr<metrics::MetricsHttpServer>> m =
        metrics::MetricsHttpServer::Start({.listen = options.metrics_listen},
                                          &registry);
    if (!m.ok()) return fail(m.status());
    metrics_server = *std::move(m);
  }

  const scoring::KernelInfo kernel = scorer->kernel_info(options.item_dtype);
  const std::string host =
      options.server.listen.substr(0, options.server.listen.rfind(':'));
  const std::string admin_host = options.server.admin_listen.substr(
      0, options.server.admin_listen.rfind(':'));
  LogEvent(
      "info", "start",
      {{"model_version", dir.manifest().model_version},
       {"users", std::to_string(dir.users().size())},
       {"items", std::to_string(dir.items().Current()->size())},
       {"dim", std::to_string(dir.manifest().dim)},
       {"user_codes", std::to_string(dir.manifest().user_codes)},
       {"item_codes", std::to_string(dir.manifest().item_codes)},
       {"item_dtype", std::string(scoring::DTypeName(options.item_dtype))},
       {"user_dtype",
        std::string(scoring::DTypeName(dir.users().user_dtype()))},
       {"backend", std::string(scorer->backend())},
       {"backend_reason", backend->reason},
       {"scorer_kernel", kernel.kernel},
       {"scorer_kernel_gflops", absl::StrCat(kernel.measured_gflops)},
       {"scorer_kernel_forced", kernel.forced ? "yes" : "no"},
       {"scorer_families", FamilyTimesText(kernel)},
       {"listen", absl::StrCat(host, ":", (*server)->port())},
       {"admin_listen", absl::StrCat(admin_host, ":", (*server)->admin_port())},
       {"metrics_listen",
        metrics_server == nullptr
            ? "off"
            : absl::StrCat(options.metrics_listen.substr(
                               0, options.metrics_listen.rfind(':')),
                           ":", metrics_server->port())},
       {"tls",
        options.server.tls.cert_file.empty()
            ? "off"
            : (options.server.tls.client_ca_file.empty() ? "tls" : "mtls")},
       {"workers", std::to_string((*server)->workers())},
       {"scorer_threads", std::to_string(server_options.scorer_threads)},
       {"blas_core", blas.core},
       {"blas_threads", std::to_string(blas.threads)},
       {"queue_size", std::to_string(options.server.queue_size)},
       {"reload_interval", options.reload_interval > absl::ZeroDuration()
                               ? absl::FormatDuration(options.reload_interval)
                               : "SIGHUP only"},
       {"data_dir", data_dir}});
  model->reset();  // the server holds the model in service
  if (demo_dir.has_value()) PrintDemoHint(demo_dir->path(), (*server)->port());

  const int signal_number =
      ServeUntilStopped(signals, options.reload_interval, &loader,
                        server->get(), write_log != nullptr, &dropped_writes);
  LogEvent("info", "shutdown_begin",
           {{"signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"},
            {"delay", absl::FormatDuration(options.shutdown_delay)},
            {"grace", absl::FormatDuration(options.shutdown_grace)}});
  // No more log writes applied (and no late SERVING) from here on.
  applier.reset();
  (*server)->SetServing(false);
  if (options.shutdown_delay > absl::ZeroDuration()) {
    absl::SleepFor(options.shutdown_delay);
  }
  (*server)->Shutdown(options.shutdown_grace);
  server->reset();
  if (write_log != nullptr) {
    write_log.reset();
    CloseWriteLogLibrary();
  }
  metrics_server.reset();
  LogEvent("info", "shutdown_done", {});
  return 0;
}

}  // namespace embsum::server
